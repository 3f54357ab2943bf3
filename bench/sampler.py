"""Run as: python bench/sampler.py [--files N] [--repeat R] [--seed S]

Functions found per second at one commit of a generated polyglot repository (Go, TypeScript,
Python, Java, Rust, C++, Ruby: N files, default 5,000, each a copy of a tests/languages sample
with its constants changed so every blob differs), by the function sampler (`functions_at`: one
`git ls-tree`, one `git cat-file --batch`, one tree-sitter query per file, files parsed by a
pool of processes, one per CPU) against a plain loop measured in the same run: walk the work
tree, read each file, parse it and visit every node from Python, one file at a time, naming and
spanning the definitions by the same rules. Then the next commit (1% of the files changed), as
the stage meets it, with both methods warm alike: each has seen the commit before and parses
only contents it has not parsed (the sampler keyed by blob sha, the plain loop by the file's
bytes); both still list and read every file.
Goals: >= 3x the plain loop; a whole 5,000-file commit in <= 10 s on 2 cores.
Each timed run measures both methods in turn (order rotated), so machine load hits both alike.
Exits 1 when the two methods find different functions (file, name, first and last line).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import time
from argparse import ArgumentParser
from collections import Counter
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
            mark = "#" if kind == "sample.rb" else "//"  # a last line: every blob differs
            (folder / f"f{i}.{MIX[kind]}").write_text(f"{text}\n{mark} file {i}\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "gen"]):
        subprocess.run(["git", "-C", str(root), *args], check=True, env=ENV)
    out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True)
    return out.stdout.decode().strip()


#: a function found: (file, qualified name, first line, last line)
Fn = tuple[str, str, int, int]


def plain_loop(root: Path, seen: dict[tuple[str, bytes], list[tuple[str, int, int]]]) -> list[Fn]:
    """The obvious way: walk the work tree and read each file; parse and visit every node of
    contents not in `seen` from Python, describing each definition by the same rules as the
    sampler (syntax.definition). `seen` keeps each (language, contents)'s functions."""
    cat = catalog()
    by_ext = cat.by_extension()
    found: list[Fn] = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in sorted(names):
            key = by_ext.get(Path(name).suffix)
            if key is None:
                continue
            path = Path(folder) / name
            source = path.read_bytes()
            if (key, source) not in seen:
                seen[key, source] = functions_of(source, name, key)
            found += [(path.relative_to(root).as_posix(), *f) for f in seen[key, source]]
    return found


def functions_of(source: bytes, name: str, key: str) -> list[tuple[str, int, int]]:
    """(qualified name, first line, last line) of each function of one file."""
    if key == "python":
        return [(f.qualname, f.line_start, f.line_end) for f in python_functions(source, name)]
    cat = catalog()
    lang = cat.languages[key]
    tree = parser(lang.grammar).parse(source)
    prefix = package(tree.root_node, lang)
    found, stack = [], [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type in lang.functions or node.type in lang.bindings:
            f = definition(node, lang, cat, prefix + enclosing(node, lang))
            found += [(f.qualname, f.line_start, f.line_end)] if f else []
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

        def sampled(at: str) -> list[Fn]:
            functions = functions_at(root, at, sampler)[0]
            return [(f.file, f.qualname, f.line_start, f.line_end) for f in functions]

        def cold() -> list[Fn]:
            clear_cache()  # a first commit: nothing parsed before
            return sampled(commit)

        best = measure({"sampler": cold, "plain loop": lambda: plain_loop(root, {})}, args.repeat)
        differ = [report(f"{args.files} files at one commit, best of {args.repeat}", best)]
        seen: dict[tuple[str, bytes], list[tuple[str, int, int]]] = {}
        plain_loop(root, seen)  # what each method has seen: the commit before
        sampled(commit)
        changed = next_commit(root, args.files // 100)
        warm = {"sampler": lambda: sampled(changed), "plain loop": lambda: plain_loop(root, seen)}
        title = f"the next commit ({args.files // 100} files changed)"
        differ.append(report(title, measure(warm, 1)))
    sys.exit("\n".join(d for d in differ if d) or None)


Best = dict[str, tuple[float, list[Fn]]]


def measure(methods: dict[str, Callable[[], list[Fn]]], repeat: int) -> Best:
    """Best (seconds, functions found) of each method, order rotated between repeats."""
    best: Best = {}
    for r in range(repeat):
        for name in list(methods)[r % 2 :] + list(methods)[: r % 2]:
            start = time.perf_counter()
            found = methods[name]()
            elapsed = time.perf_counter() - start
            if name not in best or elapsed < best[name][0]:
                best[name] = (elapsed, found)
    return best


def report(title: str, best: Best) -> str | None:
    """Prints the table; returns how the methods' functions differ, or None."""
    plain = len(best["plain loop"][1]) / best["plain loop"][0]
    print(f"{title}, {os.cpu_count()} cpus")
    print(f"{'method':<12} {'functions':>10} {'seconds':>8} {'functions/s':>12} {'ratio':>6}")
    for name, (elapsed, found) in best.items():
        rate = len(found) / elapsed
        print(f"{name:<12} {len(found):>10} {elapsed:>8.2f} {rate:>12.0f} {rate / plain:>6.2f}")
    ours, theirs = Counter(best["sampler"][1]), Counter(best["plain loop"][1])
    if ours == theirs:
        return None
    only_ours, only_theirs = sorted((ours - theirs).elements()), sorted((theirs - ours).elements())
    return (
        f"{title}: the methods disagree: {len(only_ours)} functions found only by the sampler "
        f"(e.g. {only_ours[:2]}), {len(only_theirs)} only by the plain loop "
        f"(e.g. {only_theirs[:2]})"
    )


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
