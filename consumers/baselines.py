"""The tests of a commit before any patch: each run twice, kept in the lake, computed once.

A baseline row is per test (repository, commit, environment, test id), with an id made from
those, so that a re-run after a crash or a second worker writes the same rows. Workers on one
machine take a lock per (commit, environment) and look in the lake before running anything;
the rows are written to the lake (table `test_baselines`) before the lock is let go, so the
next rollout of the commit finds them. A test whose two runs disagree is flaky.

A test file that yields no tests gets one row of its own, id the file's path: status `none`
(nothing in it), or `timeout` (its run hung past the budget, run alone).
"""

from __future__ import annotations

import hashlib
import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from trajlake.config import Config
from trajlake.environments.build import Environment, cache_root, locked
from trajlake.environments.results import TestResult, per_test
from trajlake.environments.spec import EnvSpec
from trajlake.lake import Lake
from trajlake.sandbox import CommandResult, Sandbox, open_sandbox, started
from trajlake.schemas import TestBaselineEvent, make_event_id

STAGE = "tester"
#: Statuses of a file-level row: no test in it, or it hung.
FILE_ROWS = ("none", "timeout")


@dataclass(frozen=True)
class Run:
    """One run of `spec.test` over some test files: the command's result and its tests (None
    when the output cannot be read per test)."""

    result: CommandResult
    tests: list[TestResult] | None

    @property
    def unreadable(self) -> bool:
        return self.tests is None and not self.result.timed_out


class BaselineUnreadable(Exception):
    """The unpatched tests' output could not be read: the rollout's status is `error`."""

    def __init__(self, run: Run):
        super().__init__(f"exit status {run.result.returncode}")
        self.run = run


def run_files(box: Sandbox, spec: EnvSpec, files: Sequence[str], budget_s: float) -> Run:
    """`spec.test` with `files` appended, killed past `budget_s`; its report cleared first."""
    clear = f"rm -f {shlex.quote(spec.junit_path())}; " if spec.results == "junit" else ""
    command = f"{clear}{spec.test} {' '.join(map(shlex.quote, files))}"
    result = box.run(command, timeout_s=budget_s)
    if result.timed_out:
        return Run(result, None)
    return Run(result, per_test(box, spec, result, files))


def baselines(
    config: Config, env: Environment, repo_dir: str, files: list[str]
) -> tuple[list[TestBaselineEvent], list[TestBaselineEvent], float]:
    """The baseline rows of `files`: those the lake had, those run now, and the seconds spent
    running them. BaselineUnreadable when a run's output cannot be read."""
    resolved = env.resolved
    key = hashlib.sha256(f"{resolved.commit}-{env.environment_id}".encode()).hexdigest()[:20]
    cache = cache_root(config)
    cache.mkdir(parents=True, exist_ok=True)
    with locked(cache / f".baseline-{key}.lock"):
        known = _from_lake(config, env, files)
        missing = [f for f in files if not any(row.test_file == f for row in known)]
        if not missing:
            return known, [], 0.0
        start = time.monotonic()
        opening = partial(open_sandbox, config.sandbox, repo_dir, resolved.commit, env.mount())
        with started(opening, "the tester's baseline sandbox") as box:
            first = _by_file(box, env.resolved.spec, missing, config.tests.budget_s)
            rerun = [f for f in missing if any(t.status == "passed" for t in first[f])]
            second = _by_file(box, env.resolved.spec, rerun, config.tests.budget_s)
        rows = _rows(config, env, first, second)
        Lake(config.lake.root).write("test_baselines", rows, name=f"baseline-{rows[0].event_id}")
    return known, rows, time.monotonic() - start


def _by_file(
    box: Sandbox, spec: EnvSpec, files: list[str], budget_s: float
) -> dict[str, list[TestResult]]:
    """Per file, its tests. One run for all when the report says which file each test is in
    (junit); else, and when that run hangs, one run per file."""
    if not files:
        return {}
    if spec.results == "junit" and len(files) > 1:
        run = run_files(box, spec, files, budget_s)
        if run.tests is not None:
            return {f: [t for t in run.tests if t.file == f] or _none(f) for f in files}
        if run.unreadable:
            raise BaselineUnreadable(run)
    found = {}
    for file in files:
        run = run_files(box, spec, [file], budget_s)
        if run.result.timed_out:
            found[file] = [TestResult(file, "timeout", run.result.duration_s, file)]
        elif run.tests is None:
            raise BaselineUnreadable(run)
        else:
            found[file] = [TestResult(t.test_id, t.status, t.seconds, file) for t in run.tests]
            found[file] = found[file] or _none(file)
    return found


def _none(file: str) -> list[TestResult]:
    return [TestResult(file, "none", 0.0, file)]


def _rows(
    config: Config,
    env: Environment,
    first: dict[str, list[TestResult]],
    second: dict[str, list[TestResult]],
) -> list[TestBaselineEvent]:
    resolved = env.resolved
    again = {t.test_id: t.status for tests in second.values() for t in tests}
    rows = []
    for file, tests in first.items():
        for test in tests:
            status_again = again.get(test.test_id, "missing") if file in second else test.status
            if test.status in FILE_ROWS:
                status_again = test.status
            rows.append(
                TestBaselineEvent(
                    event_id=make_event_id(
                        "baseline",
                        resolved.repo,
                        resolved.commit,
                        env.environment_id,
                        test.test_id,
                    ),  # fmt: skip
                    stage=STAGE,
                    repo=resolved.repo,
                    repo_url=resolved.repo_url,
                    commit=resolved.commit,
                    config_hash=config.hash(),
                    environment_id=env.environment_id,
                    test_file=file,
                    test_id=test.test_id,
                    status=test.status,
                    status_again=status_again,
                    flaky=status_again != test.status,
                    seconds=round(test.seconds, 4),
                )
            )
    return rows


def _from_lake(config: Config, env: Environment, files: list[str]) -> list[TestBaselineEvent]:
    """The baseline rows the lake has for `files` at this commit and environment."""
    resolved = env.resolved
    return Lake(config.lake.root).read_events(
        "test_baselines",
        'repo = ? AND "commit" = ? AND environment_id = ? AND list_contains(?, test_file)',
        [resolved.repo, resolved.commit, env.environment_id, files],
    )
