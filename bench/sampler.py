"""Run as: python bench/sampler.py [--files N] [--repeat R] [--seed S]

Functions found per second at one commit of a generated polyglot repository (Go, TypeScript,
Python, Java, Rust, C++, Ruby: N files, default 5,000, each a copy of a tests/languages sample
with its constants changed so every blob differs), by the function sampler (`functions_at`: one
`git ls-tree`, one `git cat-file --batch`, one tree-sitter query per file, files parsed by a
pool of processes, one per CPU) against a plain loop measured in the same run: walk the work
tree, read each file, parse it and visit every node from Python, one file at a time, naming and
spanning the definitions by the same rules (the same functions are found: the counts match).
Then the next commit (1% of the files changed), as the stage meets it: blobs it parsed at the
commit before are not parsed again (the plain loop parses everything again).
Goals: >= 3x the plain loop; a whole 5,000-file commit in <= 10 s on 2 cores.
Each timed run measures both methods in turn (order rotated), so machine load hits both alike.
"""

from __future__ import annotations

import os
import random
import subprocess
import tempfile
import time
from argparse import ArgumentParser
from collections.abc import Callable
from pathlib import Path

from trajlake.config import SamplerConfig
from trajlake.consumers.function_sampler import functions_at
from trajlake.consumers.functions import clear_cache
from trajlake.consumers.languages import catalog
from trajlake.consumers.python_syntax import python_functions
from trajlake.consumers.syntax import definition, enclosing, package, parser

ENV = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x",
       "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@x"}  # fmt: skip
SAMPLES = Path(__file__).resolve().parent.parent / "tests" / "languages"
MIX = {"sample.go": "go", "sample.ts": "ts", "Sample.java": "java", "sample.rs": "rs",
       "sample.cpp": "cpp", "sample.rb": "rb"}  # fmt: skip
PYTHON = """def mean_{i}(xs):
    total = sum(xs) + {i}
    return total / len(xs)


class Store{i}:
    def put(self, key, value):
        self.items[key] = value + {i}
        return len(self.items)
"""


def generate(root: Path, files: int, seed: int) -> str:
    """A repository of `files` files in one commit; returns its sha."""
    rng = random.Random(seed)
    texts = {name: (SAMPLES / name).read_text() for name in MIX}
    for i in range(files):
        kind = rng.choice([*MIX, "py"])
        folder = root / f"pkg{i % 97}" / f"mod{i % 13}"
        folder.mkdir(parents=True, exist_ok=True)
        if kind == "py":
            (folder / f"m{i}.py").write_text(PYTHON.format(i=i))
        else:
            text = texts[kind].replace("42", str(i)).replace("2", str(i % 7 + 2))
            (folder / f"f{i}.{MIX[kind]}").write_text(text)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "gen"]):
        subprocess.run(["git", "-C", str(root), *args], check=True, env=ENV)
    out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True)
    return out.stdout.decode().strip()


def plain_loop(root: Path) -> int:
    """The obvious way: walk the work tree; read, parse and visit each file's every node from
    Python, describing each definition by the same rules as the sampler (syntax.definition)."""
    cat = catalog()
    by_ext = cat.by_extension()
    found = 0
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in sorted(names):
            key = by_ext.get(Path(name).suffix)
            if key is None:
                continue
            source = (Path(folder) / name).read_bytes()
            if key == "python":
                found += len(python_functions(source, name))
                continue
            lang = cat.languages[key]
            tree = parser(lang.grammar).parse(source)
            prefix = package(tree.root_node, lang)
            stack = [tree.root_node]
            while stack:
                node = stack.pop()
                if node.type in lang.functions or node.type in lang.bindings:
                    outer = prefix + enclosing(node, lang)
                    found += definition(node, lang, cat, outer) is not None
                stack.extend(node.children)
    return found


def main() -> None:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sampler = SamplerConfig(skip_trivial=False)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repo"
        root.mkdir()
        commit = generate(root, args.files, args.seed)

        def cold() -> int:
            clear_cache()  # a first commit: nothing parsed before
            return len(functions_at(root, commit, sampler)[0])

        best = measure({"sampler": cold, "plain loop": lambda: plain_loop(root)}, args.repeat)
        report(f"{args.files} files at one commit, best of {args.repeat}", best)
        changed = next_commit(root, args.files // 100)
        functions_at(root, commit, sampler)  # what the stage has seen: the commit before
        warm = {
            "sampler": lambda: len(functions_at(root, changed, sampler)[0]),
            "plain loop": lambda: plain_loop(root),
        }
        report(f"the next commit ({args.files // 100} files changed)", measure(warm, 1))


def measure(methods: dict[str, Callable[[], int]], repeat: int) -> dict[str, tuple[float, int]]:
    """Best (seconds, functions) of each method, order rotated between repeats."""
    best: dict[str, tuple[float, int]] = {}
    for r in range(repeat):
        for name in list(methods)[r % 2 :] + list(methods)[: r % 2]:
            start = time.perf_counter()
            count = methods[name]()
            elapsed = time.perf_counter() - start
            if name not in best or elapsed < best[name][0]:
                best[name] = (elapsed, count)
    return best


def report(title: str, best: dict[str, tuple[float, int]]) -> None:
    plain = best["plain loop"][1] / best["plain loop"][0]
    print(f"{title}, {os.cpu_count()} cpus")
    print(f"{'method':<12} {'functions':>10} {'seconds':>8} {'functions/s':>12} {'ratio':>6}")
    for name, (elapsed, count) in best.items():
        rate = count / elapsed
        print(f"{name:<12} {count:>10} {elapsed:>8.2f} {rate:>12.0f} {rate / plain:>6.2f}")


def next_commit(root: Path, files: int) -> str:
    """A commit that adds a function to `files` of the Python files; returns its sha."""
    for path in sorted(root.rglob("m*.py"))[:files]:
        path.write_text(path.read_text() + "\n\ndef added(x):\n    return x * 2 + 1\n")
    for args in (["add", "-A"], ["commit", "-q", "-m", "next"]):
        subprocess.run(["git", "-C", str(root), *args], check=True, env=ENV)
    out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True)
    return out.stdout.decode().strip()


if __name__ == "__main__":
    main()
