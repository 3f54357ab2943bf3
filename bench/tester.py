"""Run as: python bench/tester.py [--rollouts N] [--quick] [--seed S]

What the tester stage costs per rollout on click, and how much of click's suite it runs.

The repository is the click 8.5.1 sdist from PyPI in one git commit, its environment built
once (the built-in python spec). N functions of src/click (default 12; --quick: 2), drawn with
the seed, each get a comment-only patch: a note line after the `def` line, as the demo teacher
writes. Each patch is tested twice:

- without the baseline cache: an empty lake, so the selected files' baselines run first
  (twice each, for flakiness) and then the patched run;
- with it: the same lake again, its baselines found, only the patched run.

Printed: the median test-phase seconds (`TestsEvent.wall_s`, selection and sandboxes
included) both ways and their ratio; then the share of click's suite that selection ran:
tests selected over the tests of one full run of the suite, per rollout (median, max), and
the same for test files. Every comment-only patch must come out `ok` (exit 1 otherwise).
"""

from __future__ import annotations

import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from argparse import ArgumentParser
from pathlib import Path

from environments import click_project

from trajlake.config import Config, load_config
from trajlake.consumers.functions import enumerate_functions
from trajlake.consumers.selection import is_test_file
from trajlake.consumers.tester import run_repository_tests
from trajlake.environments import environment_for
from trajlake.environments.results import per_test
from trajlake.sandbox import open_sandbox
from trajlake.schemas import RolloutEvent


def comment_patches(repo: Path, count: int, seed: int) -> list[tuple[str, str]]:
    """(function, patch) for `count` functions of src/click: a note after the def line."""
    functions = []
    for path in sorted((repo / "src" / "click").glob("*.py")):
        rel = str(path.relative_to(repo))
        functions += [(rel, f) for f in enumerate_functions(path.read_bytes(), rel)]
    picked = random.Random(seed).sample(functions, count)
    patches = []
    for rel, function in picked:
        file = repo / rel
        original = file.read_text()
        lines = original.splitlines(keepends=True)
        at = next(
            i for i in range(function.line_start - 1, function.line_end)
            if lines[i].lstrip().startswith(("def ", "async def "))
        )  # fmt: skip
        pad = lines[at][: len(lines[at]) - len(lines[at].lstrip())] + "    "
        lines.insert(at + 1, f"{pad}# bench: {function.qualname} reviewed\n")
        file.write_text("".join(lines))
        done = subprocess.run(["git", "-C", str(repo), "diff"], capture_output=True, text=True)
        file.write_text(original)
        patches.append((f"{rel}:{function.qualname}", done.stdout))
    return patches


def full_suite(config: Config, repo: Path, sha: str) -> tuple[int, int]:
    """(tests, test files) of one run of click's whole suite in its environment."""
    env = environment_for(config, "click", str(repo), sha)
    spec = env.resolved.spec
    listed = subprocess.run(["git", "-C", str(repo), "ls-files"], capture_output=True, text=True)
    files = [f for f in listed.stdout.splitlines() if is_test_file(f, spec.test_files)]
    with open_sandbox(config.sandbox, repo, sha, env.mount()) as box:
        result = box.run(spec.test, timeout_s=config.tests.budget_s)
        tests = per_test(box, spec, result, files) or []
    return len([t for t in tests if t.status != "none"]), len(files)


def main() -> None:
    parser = ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--rollouts", type=int, default=12, help="comment-only patches tested")
    parser.add_argument("--quick", action="store_true", help="2 rollouts")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    count = 2 if args.quick else args.rollouts
    tmp = Path(tempfile.mkdtemp(prefix="bench-tester-"))
    try:
        run(tmp, count, args.seed)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp: Path, count: int, seed: int) -> None:
    repo, _ = click_project(tmp)
    sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                         text=True, check=True).stdout.strip()  # fmt: skip

    def config(lake: str) -> Config:
        return load_config(None, [f"lake.root={tmp / lake}", f"environments.root={tmp / 'envs'}",
                                  f"producer.mirrors={tmp / 'mirrors'}"])  # fmt: skip

    start = time.monotonic()
    full_tests, full_files = full_suite(config("full"), repo, sha)
    print(f"click's environment built and its whole suite run in {time.monotonic() - start:.1f} s:"
          f" {full_tests} tests in {full_files} test files")  # fmt: skip
    cold, warm, tests_share, files_share, bad = [], [], [], [], []
    for i, (name, patch) in enumerate(comment_patches(repo, count, seed)):
        event = RolloutEvent(
            event_id=f"bench-{i}", stage="rollout1", repo="click", repo_url=str(repo), commit=sha,
            rollout="t1", task_id=f"task-{i}", request="bench", exit_status="Submitted",
            patch=patch,
        )  # fmt: skip
        first = run_repository_tests(config(f"lake-{i}"), event)  # an empty lake: no baselines
        again = run_repository_tests(config(f"lake-{i}"), event)  # the same lake: all cached
        for row in (first, again):
            if row.tests_status != "ok":
                bad.append(f"{name}: {row.tests_status} {row.reason}")
        cold.append(first.wall_s)
        warm.append(again.wall_s)
        tests_share.append(first.tests_selected / full_tests)
        files_share.append(len(first.test_files) / full_files)
        print(f"  {name:<55} {first.tests_selected:>5} tests in {len(first.test_files):>2} files"
              f"  {first.wall_s:6.2f} s cold (baseline {first.baseline_s:5.2f} s)"
              f"  {again.wall_s:6.2f} s cached")  # fmt: skip
    report(cold, warm, tests_share, files_share)
    if bad:
        print("comment-only patches that were not ok:\n  " + "\n  ".join(bad))
        sys.exit(1)


def report(cold: list[float], warm: list[float], tests: list[float], files: list[float]) -> None:
    cold_s, warm_s = statistics.median(cold), statistics.median(warm)
    print(f"test phase per rollout, median of {len(cold)}: {cold_s:.2f} s without the baseline "
          f"cache, {warm_s:.2f} s with it (cached / uncached: {warm_s / cold_s:.2f}x)")  # fmt: skip
    print(f"share of click's suite selected: tests median {statistics.median(tests):.1%}, "
          f"max {max(tests):.1%}; test files median {statistics.median(files):.1%}, "
          f"max {max(files):.1%}")  # fmt: skip


if __name__ == "__main__":
    main()
