"""The tester stage: the repository's own tests on each rollout's patch, beside soft recall.

For a rollout (T1 or T2) with a patch: select the test files that name what it changed
(consumers/selection.py), get their baseline at the commit (consumers/baselines.py: run once
per test, twice for flakiness), run them with the patch applied (its edits to test files left
out: tests run as they are at the commit), and compare, test by test:

- broken: passed at the baseline, and now failed, errored or did not run at all;
- fixed: failed or errored at the baseline, and now passed;
- flaky baseline tests are counted in neither.

`tests_status` is `broken` (tests_broken > 0), else `flaky` (a selected test is flaky), else
`ok`; or, when there is nothing to compare, `no_tests` (no patch, no environment, no test
selected), `timeout` (the patched run hung past `tests.budget_s`) or `error` (output that
cannot be read per test, a patch that does not apply), with the reason. `tests_broken` and
`tests_fixed` are null then: unknown, not zero. An infrastructure failure (a registry down
while building the environment, a sandbox that does not start) raises an Outage instead and
is retried, and a spec that does not build is a dead letter, as in the rollout stages: fix
it (`trajlake repo set REPO --env`), then `trajlake dlq retry`.
"""

from __future__ import annotations

import time
from functools import partial

from trajlake.config import Config
from trajlake.consumers.baselines import FILE_ROWS, BaselineUnreadable, Run, baselines, run_files
from trajlake.consumers.selection import Selection, select_tests
from trajlake.environments import resolve_for
from trajlake.environments.build import Environment, ensure_environment
from trajlake.errors import PatchDoesNotApply
from trajlake.sandbox import open_sandbox, started
from trajlake.schemas import Event, RolloutEvent, TestBaselineEvent, TestsEvent, make_event_id
from trajlake.stage import Stage

NAME = "tester"
TAIL = 4000  # characters of the runner's output kept with an error or a timeout


def run_repository_tests(config: Config, event: RolloutEvent) -> TestsEvent:
    """The tests row of one rollout (see the module's docstring)."""
    start = time.monotonic()
    facts: dict = {"selection": "", "environment_id": event.environment_id}

    def row(status: str, reason: str = "", **more) -> TestsEvent:
        return _event(event, {**facts, **more}, status, reason, time.monotonic() - start)

    if not event.patch.strip():
        return row("no_tests", "the rollout made no patch")
    if config.sandbox.kind == "local":
        return row("no_tests", "sandbox.kind=local runs without the repository's environment")
    resolved = resolve_for(config, event.repo, event.repo_url, event.commit)
    repo_dir, spec = str(resolved.git_dir), resolved.spec
    facts["environment_id"] = resolved.key
    if not spec.test or not spec.test_files or spec.results == "summary":
        return row("no_tests", f"environment spec {spec.name} {_lacks(spec)}")
    selection = select_tests(
        repo_dir, resolved.commit, event.patch, spec.test_files, config.tests.max_files
    )
    facts |= {"selection": selection.describe(), "touches_tests": bool(selection.touched_tests)}
    if not selection.files:
        return row("no_tests", "no test file names what the patch changes")
    facts["test_files"] = selection.files
    env = ensure_environment(config, resolved)  # a spec that does not build: a dead letter
    try:
        known, ran, baseline_s = baselines(config, env, repo_dir, selection.files)
    except BaselineUnreadable as e:
        return row("error", f"the tests at the commit cannot be read ({e})", **_tail(e.run))
    facts |= {"baseline_s": round(baseline_s, 3), "baselines_run": len(ran)}
    base = known + ran
    tests = [b for b in base if b.status not in FILE_ROWS]
    facts["tests_selected"] = len(tests)
    facts["tests_flaky"] = sum(b.flaky for b in tests)
    files = sorted({b.test_file for b in tests})
    if not files:
        hung = [b.test_file for b in base if b.status == "timeout"]
        if hung:
            return row("timeout", f"the baseline of {', '.join(hung)} hung past the budget")
        return row("no_tests", "the selected test files hold no tests")
    try:
        run = _patched_run(config, env, repo_dir, event.patch, selection, files)
    except PatchDoesNotApply as e:
        return row("error", f"the patch does not apply at the commit: {e}")
    if run.result.timed_out:
        return row("timeout", f"the tests ran past tests.budget_s={config.tests.budget_s}s",
                   **_tail(run))  # fmt: skip
    if run.tests is None:
        return row("error", "the test output cannot be read per test", **_tail(run))
    return _compare(row, tests, run)


def _patched_run(
    config: Config, env: Environment, repo_dir: str, patch: str, sel: Selection, files: list[str]
) -> Run:
    opening = partial(open_sandbox, config.sandbox, repo_dir, env.resolved.commit, env.mount())
    with started(opening, "the tester's sandbox") as box:
        box.apply(patch, skip=sel.touched_tests)
        return run_files(box, env.resolved.spec, files, config.tests.budget_s)


def _compare(row, tests: list[TestBaselineEvent], run: Run) -> TestsEvent:
    after = {t.test_id: t for t in run.tests or []}
    ids, statuses, before, seconds = [], [], [], []
    broken = fixed = 0
    for base in tests:
        now = after.pop(base.test_id, None)
        status = now.status if now else "missing"
        ids.append(base.test_id)
        statuses.append(status)
        before.append(base.status)
        seconds.append(now.seconds if now else 0.0)
        if base.flaky:
            continue
        broken += base.status == "passed" and status not in ("passed", "skipped")
        fixed += base.status in ("failed", "error") and status == "passed"
    for test in after.values():  # tests only the patched run has (a changed parametrization)
        ids.append(test.test_id)
        statuses.append(test.status)
        before.append("")
        seconds.append(test.seconds)
    flaky = sum(b.flaky for b in tests)
    status = "broken" if broken else "flaky" if flaky else "ok"
    return row(
        status,
        test_ids=ids,
        statuses=statuses,
        baseline_statuses=before,
        seconds=[round(s, 4) for s in seconds],
        tests_broken=broken,
        tests_fixed=fixed,
        exit_code=run.result.returncode,
    )


def _lacks(spec) -> str:
    if not spec.test:
        return "has no test command"
    if not spec.test_files:
        return "names no test_files"
    return "reads test counts only (results: summary): set results to junit or a log parser"


def _tail(run: Run) -> dict:
    return {"exit_code": run.result.returncode, "output_tail": run.result.output[-TAIL:]}


def _event(event: RolloutEvent, facts: dict, status: str, reason: str, wall_s: float) -> TestsEvent:
    return TestsEvent(
        event_id=make_event_id(event.event_id, NAME),
        parent_ids=[event.event_id],
        stage=NAME,
        **event.lineage(),
        rollout_id=event.event_id,
        rollout=event.rollout,
        task_id=event.task_id,
        tests_status=status,
        reason=reason,
        wall_s=round(wall_s, 3),
        **facts,
    )


def make_stage(config: Config) -> Stage:
    """The tester stage: rollouts of both kinds in, one `tests` row per rollout out."""

    def process(event: Event) -> list[Event]:
        if not isinstance(event, RolloutEvent):
            raise ValueError(
                f"the tester takes rollout events, got a {type(event).__name__} "
                f"{event.event_id}: check the stage's input topics"
            )
        return [run_repository_tests(config, event)]

    return Stage(
        name=NAME,
        inputs=("rollouts.t1", "rollouts.t2"),
        outputs=("tests",),
        process=process,
        skip_if_done=True,
    )
