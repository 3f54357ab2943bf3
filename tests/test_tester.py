"""The tester stage on a small Python repository with its own tests, in the real sandbox and
its real environment: hangs, flaky tests, patches that edit tests, and every no-tests reason."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from helpers import git_repo

from trajlake.cli import main
from trajlake.config import Config, load_config
from trajlake.consumers.selection import select_tests
from trajlake.consumers.tester import make_stage, run_repository_tests
from trajlake.errors import EnvironmentBuildFailed, SandboxDown
from trajlake.lake import Lake
from trajlake.schemas import RolloutEvent, TestsEvent

CALC = "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n"
COIN = "def coin():\n    return 1\n"
#: passes on the first baseline run, fails on the second: the two runs share the sandbox's /tmp
FLAKY = """\
from pathlib import Path

from coin import coin


def test_coin_is_flaky():
    seen = Path("/tmp/coin-runs")
    runs = int(seen.read_text()) if seen.exists() else 0
    seen.write_text(str(runs + 1))
    assert coin() == 1 and runs == 0
"""
FILES = {
    "requirements.txt": "",  # a Python repository to `auto`: venv + pytest, nothing else
    "conftest.py": "",
    "calc.py": CALC,
    "coin.py": COIN,
    "tests/test_add.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n\n"
    "def test_add_zero():\n    assert add(0, 0) == 0\n",
    "tests/test_mul.py": "from calc import mul\n\n\ndef test_mul():\n    assert mul(2, 3) == 6\n",
    "tests/test_coin.py": FLAKY,
}
BUDGET_S = 4
BOX = "class Box:\n    def __init__(self, n):\n        self.n = n\n"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Config]:
    base = tmp_path_factory.mktemp("tester")
    repo, sha = git_repo(base / "calc", FILES)
    config = load_config(
        None,
        [f"lake.root={base / 'lake'}", f"producer.mirrors={base / 'mirrors'}",
         f"tests.budget_s={BUDGET_S}"],
    )  # fmt: skip
    return repo, sha, config


def patch_for(repo: Path, edits: dict[str, str]) -> str:
    """The patch that makes each file of `edits` read its text (the repository is left as it
    was)."""
    for path, text in edits.items():
        (repo / path).write_text(text)
    patch = subprocess.run(["git", "-C", str(repo), "diff"], capture_output=True, text=True)
    subprocess.run(["git", "-C", str(repo), "checkout", "-q", "."], check=True)
    return patch.stdout


def rollout(repo: Path, sha: str, patch: str, name: str) -> RolloutEvent:
    return RolloutEvent(
        event_id=f"rollout-{name}", stage="rollout1", repo="calc", repo_url=str(repo), commit=sha,
        rollout="t1", task_id="task", request="r", exit_status="Submitted", patch=patch,
    )  # fmt: skip


def outcome(project, edits: dict[str, str], name: str, config: Config | None = None) -> TestsEvent:
    repo, sha, base_config = project
    return run_repository_tests(
        config or base_config, rollout(repo, sha, patch_for(repo, edits), name)
    )


@pytest.mark.sandbox
@pytest.mark.environments
def test_a_breaking_patch_is_broken_and_a_comment_is_ok(project):
    ok = outcome(
        project, {"calc.py": CALC.replace("    return a + b", "    # sum\n    return a + b")}, "ok"
    )
    assert (ok.tests_status, ok.tests_selected, ok.tests_broken, ok.tests_fixed) == ("ok", 3, 0, 0)
    assert ok.test_files == ["tests/test_add.py", "tests/test_mul.py"]  # calc and add; calc
    assert sorted(ok.test_ids) == [
        "tests/test_add.py::test_add", "tests/test_add.py::test_add_zero",
        "tests/test_mul.py::test_mul",
    ]  # fmt: skip
    assert ok.statuses == ok.baseline_statuses == ["passed"] * 3
    assert ok.selection == "names-v1 (max 20 files): test files naming calc, add"

    broken = outcome(project, {"calc.py": CALC.replace("return a + b", "return a - b")}, "minus")
    assert (broken.tests_status, broken.tests_broken) == ("broken", 1)  # add(0, 0) still 0
    assert dict(zip(broken.test_ids, broken.statuses, strict=True)) == {
        "tests/test_add.py::test_add": "failed", "tests/test_add.py::test_add_zero": "passed",
        "tests/test_mul.py::test_mul": "passed",
    }  # fmt: skip
    assert broken.baseline_s == 0  # the baseline of test_add.py was in the lake already

    # a module that no longer imports: its tests did not run at all, and count as broken
    syntax = outcome(project, {"calc.py": CALC.replace("def add(a, b):", "def add(a, b)")}, "syn")
    assert (syntax.tests_status, syntax.tests_broken) == ("broken", 3)


@pytest.mark.sandbox
@pytest.mark.environments
def test_a_hanging_test_is_a_timeout_and_the_stage_goes_on(project):
    stage = make_stage(project[2])
    repo, sha, _ = project
    hang = rollout(repo, sha, patch_for(repo, {"calc.py": CALC.replace(
        "    return a * b", "    while True:\n        pass")}), "hang")  # fmt: skip
    after = rollout(repo, sha, patch_for(repo, {"calc.py": CALC + "# end\n"}), "after")
    [hung] = stage.process(hang)
    assert (hung.tests_status, hung.tests_broken, hung.exit_code) == ("timeout", None, -9)
    assert f"tests.budget_s={BUDGET_S:g}" in hung.reason.replace(".0s", "s")
    [next_one] = stage.process(after)
    assert next_one.tests_status == "ok"


@pytest.mark.sandbox
@pytest.mark.environments
def test_a_flaky_test_is_marked_and_not_counted(project):
    row = outcome(project, {"coin.py": "def coin():\n    return 2\n"}, "coin")
    assert row.tests_status == "flaky" and row.tests_flaky == 1
    assert row.tests_broken == 0  # it fails with the patch too, but its baseline is unstable
    root = project[2].lake.root
    con = Lake(root).connect(["test_baselines"])
    [(status, again, flaky)] = con.execute(
        "SELECT status, status_again, flaky FROM test_baselines "
        "WHERE test_file = 'tests/test_coin.py'"
    ).fetchall()
    assert (status, again, flaky) == ("passed", "failed", True)


@pytest.mark.sandbox
@pytest.mark.environments
def test_edits_to_test_files_are_flagged_and_not_run(project):
    cheat = {
        "calc.py": CALC.replace("return a + b", "return a - b"),
        "tests/test_add.py": "def test_add():\n    assert True\n",
    }
    row = outcome(project, cheat, "cheat")
    assert row.touches_tests and row.tests_status == "broken"  # the tests as they were ran


@pytest.mark.sandbox
@pytest.mark.environments
def test_no_tests_says_why(project, tmp_path):
    repo, sha, config = project
    assert outcome(project, {}, "empty").reason == "the rollout made no patch"
    local = config.model_copy(
        update={"sandbox": config.sandbox.model_copy(update={"kind": "local"})}
    )
    row = outcome(project, {"calc.py": CALC + "# x\n"}, "local", local)
    assert (row.tests_status, row.tests_broken) == ("no_tests", None)
    assert "sandbox.kind=local" in row.reason
    readme = outcome(project, {"conftest.py": "# nothing names this\n"}, "conftest")
    assert readme.reason == "no test file names what the patch changes"

    plain, plain_sha = git_repo(tmp_path / "plain", {"plain.py": CALC})  # no Python marker
    plain_patch = patch_for(plain, {"plain.py": CALC + "# x\n"})
    row = run_repository_tests(config, rollout(plain, plain_sha, plain_patch, "plain"))
    assert row.tests_status == "no_tests" and "environment spec empty has no test" in row.reason


def test_selection_ranks_the_files_naming_most_and_caps_them(tmp_path):
    files = {
        "pkg/__init__.py": "", "pkg/ops.py": CALC,
        "tests/test_both.py": "from pkg.ops import add, mul\n", "tests/test_mul_only.py": "mul\n",
        "tests/test_other.py": "nothing\n", "tests/helper.py": "add\n",
    }  # fmt: skip
    repo, sha = git_repo(tmp_path / "r", files)
    patch = patch_for(repo, {"pkg/ops.py": CALC.replace("return a * b", "return b * a")})
    sel = select_tests(str(repo), sha, patch, ["test_*.py"], max_files=5)
    assert sel.names == ["ops", "mul"] and sel.touched_tests == []
    assert sel.files == ["tests/test_both.py", "tests/test_mul_only.py"]  # 2 names, then 1
    assert select_tests(str(repo), sha, patch, ["test_*.py"], 1).files == ["tests/test_both.py"]
    init = patch_for(repo, {"pkg/__init__.py": "# the package\n"})
    assert select_tests(str(repo), sha, init, ["test_*.py"], 5).names == ["pkg"]
    box, box_sha = git_repo(tmp_path / "b", {"box.py": BOX})
    special = patch_for(box, {"box.py": BOX.replace("self.n = n", "self.n = int(n)")})
    assert select_tests(str(box), box_sha, special, ["test_*.py"], 5).names == ["box", "Box"]


def test_test_runs_view_lists_patched_and_baseline_rows(project):
    root = project[2].lake.root
    row = outcome(project, {"calc.py": CALC + "# y\n"}, "view")
    Lake(root).write("tests", [row], name="view")
    con = Lake(root).connect()
    found = con.execute(
        "SELECT phase, test_id, status, baseline_status FROM test_runs "
        "WHERE rollout_id = ? OR (phase = 'baseline' AND test_id LIKE 'tests/test_add.py%') "
        "ORDER BY phase, test_id",
        [row.rollout_id],
    ).fetchall()
    assert found == [
        ("baseline", "tests/test_add.py::test_add", "passed", None),
        ("baseline", "tests/test_add.py::test_add_zero", "passed", None),
        ("patched", "tests/test_add.py::test_add", "passed", "passed"),
        ("patched", "tests/test_add.py::test_add_zero", "passed", "passed"),
        ("patched", "tests/test_mul.py::test_mul", "passed", "passed"),
    ]


@pytest.mark.sandbox
@pytest.mark.environments
def test_a_sandbox_that_does_not_start_is_an_outage_and_a_stale_patch_an_error(project):
    repo, sha, config = project
    patch = patch_for(repo, {"calc.py": CALC + "# z\n"})
    docker = config.model_copy(
        update={"sandbox": config.sandbox.model_copy(update={"kind": "docker"})}
    )
    with pytest.raises(SandboxDown, match="tester's"):  # no engine here: retried, never a row
        run_repository_tests(docker, rollout(repo, sha, patch, "down"))
    stale = patch.replace("\n     return a * b", "\n     return b * a")  # no such context line
    row = run_repository_tests(config, rollout(repo, sha, stale, "stale"))
    assert row.tests_status == "error" and "does not apply" in row.reason


@pytest.mark.sandbox
@pytest.mark.environments
def test_an_environment_that_does_not_build_is_no_row_and_backfill_says_so(tmp_path):
    backend = '[build-system]\nrequires = ["trajlake-no-such-backend-anywhere"]\n'
    files = {**FILES, "pyproject.toml": backend + '[project]\nname = "calc"\nversion = "0"\n'}
    repo, sha = git_repo(tmp_path / "unbuildable", files)
    config = load_config(None, [f"lake.root={tmp_path / 'lake'}",
                                f"producer.mirrors={tmp_path / 'mirrors'}"])  # fmt: skip
    patch = patch_for(repo, {"calc.py": CALC + "# x\n"})
    event = rollout(repo, sha, patch, "unbuilt")
    with pytest.raises(EnvironmentBuildFailed):  # the stage dead-letters it, as rollouts do
        run_repository_tests(config, event)
    Lake(config.lake.root).write("rollouts.t1", [event], name="t1")
    config_file = tmp_path / "trajlake.yaml"
    config_file.write_text(
        yaml.safe_dump(
            {
                "lake": {"root": str(tmp_path / "lake")},
                "producer": {"mirrors": str(tmp_path / "mirrors")},
            }
        )
    )
    assert main(["--config", str(config_file), "tests", "backfill"]) == 1  # work left undone
    assert Lake(config.lake.root).counts()["tests"] == 0  # no row: the next backfill tries again
