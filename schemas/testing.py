"""Record types of the tester stage: a repository's own tests run on a rollout's patch.

`TestsEvent` (topic `tests`) is one per rollout: which tests were selected, how each came out
with the patch, and how that compares with the baseline at the commit. `TestBaselineEvent`
(table `test_baselines`) is one per test of a commit and environment, run twice on the
unpatched checkout; every rollout that selects the test compares against the same row.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from trajlake.schemas.base import Event

#: A rollout's test verdict; the README's "Hybrid verification" section says when each is given.
TestsStatus = Literal["ok", "broken", "timeout", "no_tests", "flaky", "error"]


class TestBaselineEvent(Event):
    """One test at a commit, unpatched, in an environment: run twice to tell a flaky one."""

    __test__: ClassVar[bool] = False  # not a pytest test class, whatever its name
    TOPICS = ("test_baselines",)

    environment_id: str = Field(description="the environment the tests ran in")
    test_file: str = Field(description="the test file it was selected through")
    test_id: str = Field(description="the runner's id of the test, e.g. path::Class::name[param]")
    status: str = Field(description="passed, failed, error, skipped; timeout: its file hung")
    status_again: str = Field(description="the same on the second baseline run")
    flaky: bool = Field(description="the two runs disagree: the test is not counted")
    seconds: float = Field(0.0, description="the test's own seconds on the first run")


class TestsEvent(Event):
    """The repository's tests on one rollout's patch, against the baseline at its commit."""

    __test__: ClassVar[bool] = False  # not a pytest test class, whatever its name
    TOPICS = ("tests",)

    rollout_id: str
    rollout: Literal["t1", "t2"]
    task_id: str
    environment_id: str = Field("", description="the environment the tests ran in")
    selection: str = Field(description="the rule that chose the tests, with its limits")
    test_files: list[str] = Field(default_factory=list, description="test files selected")
    tests_selected: int = Field(0, description="tests in the selected files (flaky ones too)")
    tests_broken: int | None = Field(
        None, description="passed at the baseline, not with the patch; null: unknown (see status)"
    )
    tests_fixed: int | None = Field(None, description="failed at the baseline, pass now")
    tests_flaky: int = Field(0, description="selected tests whose two baseline runs disagree")
    tests_status: TestsStatus
    reason: str = Field("", description="why the status is no_tests, error or timeout")
    touches_tests: bool = Field(
        False, description="the patch edits test files (those edits were not run)"
    )
    test_ids: list[str] = Field(default_factory=list, description="every test run with the patch")
    statuses: list[str] = Field(default_factory=list, description="each test's status, same order")
    baseline_statuses: list[str] = Field(
        default_factory=list, description="each test's baseline status ('' if none), same order"
    )
    seconds: list[float] = Field(default_factory=list, description="each test's seconds")
    exit_code: int | None = Field(None, description="the patched run's exit status")
    output_tail: str = Field("", description="error or timeout: the end of the runner's output")
    wall_s: float = Field(0.0, description="seconds of the test phase (baselines included)")
    baseline_s: float = Field(0.0, description="of which running baselines not run before")
    baselines_run: int = Field(
        0, description="baseline rows this rollout computed (0: all were in the lake already)"
    )
