"""Run as: python bench/verifier.py [--pairs N] [--lines L] [--repeat R] [--seed S]

P1/P2 pairs per second through `trajlake.consumers.verifier.recall` (hunk-aware parse of both
patches, multiset match), against a naive reference measured on the same pairs in this run:
split the patch into lines, keep those starting with '+' or '-' but not '+++'/'---', then for
each P1 line scan the P2 list and remove the first match (`list.remove`).
Goal: identical r on every pair. Speed is reported, no longer a goal: since issue 17 patches
are read with unidiff, ~13x slower than the naive reference (which misreads '--'/'++' lines)
and still over a thousand pairs per second, far above the rate rollouts arrive.

Also printed, to read the ratio against: the share of the naive time spent matching (the rest
is its line-by-line parse), and a floor that is not a verifier: one regex pass per patch that
pulls out every '+'/'-' line, no hunk structure, no validation, then a set intersection.
Each timed run measures every method in turn (order rotated), so machine load hits all alike.

Pairs are seeded and realistic: P1 has L changed lines (default 40) over 2-4 files of 1-3 hunks
with 3 lines of context each side; P2 keeps a random share of P1's changes (some pairs all of
them), adds changes of its own and sometimes lists the files in another order. Content never
starts with '--' or '++', which the naive reference would mistake for file headers.
"""

from __future__ import annotations

import random
import re
import time
from argparse import ArgumentParser, Namespace
from collections.abc import Callable

from trajlake.consumers.verifier import recall

Hunk = list[tuple[str, str]]  # (sign, content): ' ' context, '-' removed, '+' added
FilePatch = tuple[str, list[Hunk]]

NAMES = ("value", "result", "items", "config", "path", "count", "error", "cache", "node", "key")
CALLS = ("load", "parse", "validate", "render", "update", "close", "fetch", "merge", "emit")


def code_line(rng: random.Random) -> str:
    indent = "    " * rng.randint(0, 3)
    a, b = rng.sample(NAMES, 2)
    kind = rng.random()
    if kind < 0.05:
        return indent if rng.random() < 0.5 else ""  # whitespace only: not counted
    if kind < 0.45:
        text = f"{a} = {rng.choice(CALLS)}({b}, {rng.randint(0, 99)})"
    elif kind < 0.6:
        text = f"if {a} is None or {b} > {rng.randint(0, 9)}:"
    elif kind < 0.7:
        text = f"return {a}.{rng.choice(CALLS)}()"
    elif kind < 0.8:
        text = f"# {rng.choice(CALLS)} the {a} before the {b}"
    else:
        text = f"self.{a}[{b!r}] = {rng.choice(CALLS)}_{b}({a})"
    return indent + text + (" " if rng.random() < 0.05 else "")


def make_p1(rng: random.Random, n_lines: int) -> list[FilePatch]:
    n_files = rng.randint(2, 4)
    per_hunk = _split(rng, n_lines, sum(rng.randint(1, 3) for _ in range(n_files)))
    files: list[FilePatch] = []
    for f in range(n_files):
        take = len(per_hunk) // (n_files - f) if f < n_files - 1 else len(per_hunk)
        hunks = [_hunk(rng, k) for k in per_hunk[:take]]
        per_hunk = per_hunk[take:]
        files.append((f"pkg/mod_{rng.randrange(10**6)}.py", hunks))
    return files


def make_p2(rng: random.Random, p1: list[FilePatch]) -> list[FilePatch]:
    keep = 1.0 if rng.random() < 0.25 else rng.uniform(0.2, 0.95)
    files: list[FilePatch] = []
    for path, hunks in p1:
        new_hunks = []
        for hunk in hunks:
            body: Hunk = []
            for sign, text in hunk:
                if sign == " " or rng.random() < keep:
                    body.append((sign, text))
                elif sign == "-":
                    body.append((" ", text))  # P2 left this line alone
            if rng.random() > keep:
                body.insert(3, ("+", code_line(rng)))
            new_hunks.append(body)
        files.append((path, new_hunks))
    if rng.random() < 0.3:
        rng.shuffle(files)
    return files


def render(files: list[FilePatch]) -> str:
    out: list[str] = []
    for path, hunks in files:
        out += [f"diff --git a/{path} b/{path}", "index 3b18e51..a9c4f2d 100644"]
        out += [f"--- a/{path}", f"+++ b/{path}"]
        start = 10
        for hunk in hunks:
            old = sum(sign != "+" for sign, _ in hunk)
            new = sum(sign != "-" for sign, _ in hunk)
            out.append(f"@@ -{start},{old} +{start},{new} @@ def {NAMES[start % 10]}():")
            out += [sign + text for sign, text in hunk]
            start += old + 20
    return "\n".join(out) + "\n"


def naive_lines(patch: str) -> list[str]:
    """The usual way: every '+'/'-' line but '+++'/'---', trailing space cut, blanks dropped.

    Wrong for content lines starting with '--' or '++' (printed '---'/'+++', taken for file
    headers), which is why the pairs here never contain them.
    """
    lines = [
        line.rstrip()
        for line in patch.splitlines()
        if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))
    ]
    return [line for line in lines if line[1:]]


def naive_match(lines1: list[str], lines2: list[str]) -> int:
    """Scan and remove: each P1 line takes the first equal P2 line still unused."""
    remaining = list(lines2)
    matched = 0
    for line in lines1:
        if line in remaining:
            remaining.remove(line)
            matched += 1
    return matched


def naive_recall(p1: str, p2: str) -> float | None:
    lines = naive_lines(p1)
    return naive_match(lines, naive_lines(p2)) / len(lines) if lines else None


def fast_recall(p1: str, p2: str) -> float | None:
    return recall(p1, p2).recall


_ANY_CHANGE = re.compile(r"\n([+-][^\n]*+)")


def floor_recall(p1: str, p2: str) -> float:
    """Not a verifier: every '+'/'-' line, headers included, no hunks, no multiset."""
    lines = _ANY_CHANGE.findall("\n" + p1)
    return len(set(lines) & set(_ANY_CHANGE.findall("\n" + p2))) / len(lines)


def best_times(methods: dict[str, Callable[[], list]], repeat: int) -> dict[str, float]:
    """Best wall time of each method over `repeat` rounds, each round running all in turn."""
    best = dict.fromkeys(methods, float("inf"))
    names = list(methods)
    for _ in range(repeat):
        names = names[1:] + names[:1]
        for name in names:
            start = time.perf_counter()
            methods[name]()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def _split(rng: random.Random, total: int, parts: int) -> list[int]:
    cuts = sorted(rng.sample(range(1, total), parts - 1))
    return [b - a for a, b in zip([0, *cuts], [*cuts, total], strict=True)]


def _hunk(rng: random.Random, changes: int) -> Hunk:
    lines: Hunk = [(" ", code_line(rng).rstrip() or "pass") for _ in range(3)]
    for _ in range(changes):
        lines.append((rng.choice("+-"), _counted_line(rng)))
    if rng.random() < 0.2:
        lines.append(("+", code_line(rng)))  # whitespace-only now and then
    return lines + [(" ", code_line(rng).rstrip() or "pass") for _ in range(3)]


def _counted_line(rng: random.Random) -> str:
    while not (text := code_line(rng)).strip():
        pass
    return text


def parse_args() -> Namespace:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20_000)
    parser.add_argument("--lines", type=int, default=40, help="changed lines in each P1")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs each; best is kept")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    rng = random.Random(args.seed)
    pairs = []
    for _ in range(args.pairs):
        p1 = make_p1(rng, args.lines)
        pairs.append((render(p1), render(make_p2(rng, p1))))
    mean_chars = sum(len(p1) + len(p2) for p1, p2 in pairs) / (2 * len(pairs))
    print(f"{len(pairs):,} pairs, {args.lines} changed lines in P1, {mean_chars:,.0f} chars/patch")
    naive_lists = [(naive_lines(p1), naive_lines(p2)) for p1, p2 in pairs]
    best = best_times(
        {
            "naive": lambda: [naive_recall(p1, p2) for p1, p2 in pairs],
            "verifier": lambda: [fast_recall(p1, p2) for p1, p2 in pairs],
            "naive match": lambda: [naive_match(a, b) for a, b in naive_lists],
            "floor": lambda: [floor_recall(p1, p2) for p1, p2 in pairs],
        },
        args.repeat,
    )
    naive_r = [naive_recall(p1, p2) for p1, p2 in pairs]
    fast_r = [fast_recall(p1, p2) for p1, p2 in pairs]
    differ = sum(a != b for a, b in zip(naive_r, fast_r, strict=True))
    mean_r = sum(r for r in fast_r if r is not None) / len(fast_r)
    for name in ("naive", "verifier", "floor"):
        ratio = best["naive"] / best[name]
        print(f"{name:9s}{len(pairs) / best[name]:>10,.0f} pairs/s  {ratio:5.2f}x naive")
    print(f"speedup  {best['naive'] / best['verifier']:>10.2f}x   (reported, not a goal)")
    print(f"naive time spent matching: {best['naive match'] / best['naive']:.0%} (rest: parse)")
    print(f"r identical on {len(pairs) - differ:,}/{len(pairs):,} pairs (mean r {mean_r:.3f})")
    assert differ == 0, f"{differ} pairs give a different r than the naive reference"


if __name__ == "__main__":
    main()
