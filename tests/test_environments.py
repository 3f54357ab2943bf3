"""Repositories' environments: specs, builds, the cache, and the sandbox a rollout gets, on real
projects (click's sdist from PyPI, an npm package) built by the real uv and npm in bubblewrap.

`trajlake` commands run in this process from a work directory (doc_helpers.in_process), as a
user types them; the lake rows they leave are read back with DuckDB.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
import yaml
from doc_helpers import in_process
from env_helpers import click_repo, commit_all, npm_repo
from helpers import git_repo

from trajlake.config import Config, LakeConfig, SandboxConfig
from trajlake.environments import check_source, environment_for, resolve_for
from trajlake.environments.results import counts_of, from_summary, junit_tests
from trajlake.errors import ConfigError, EnvironmentBuildFailed
from trajlake.lake import Lake
from trajlake.repos import Registry
from trajlake.sandbox import EnvironmentMount, open_sandbox
from trajlake.sandbox.base import Mounts
from trajlake.sandbox.docker import docker_launch
from trajlake.schemas import TaskEvent

pytestmark = [pytest.mark.environments, pytest.mark.sandbox]

#: Reaches the package registry (PyPI's simple index): what a build may do and a rollout not.
FETCH = (
    'python3 -c "import urllib.request; '
    "urllib.request.urlopen('https://pypi.org/simple/pip/', timeout=20); print('reached')\""
)


def trajlake(work: Path, *argv: str) -> tuple[int | str, str, str]:
    return in_process(list(argv), work)


def lake_rows(work: Path, sql: str) -> list[tuple]:
    con = Lake(work / "trajlake-data" / "lake").connect()
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A work directory (default config: trajlake-data/) with click's sdist registered."""
    where = tmp_path_factory.mktemp("envs")
    repo = click_repo(where / "repos")
    rc, out, err = trajlake(where, "repo", "add", str(repo), "--name", "click")
    assert rc == 0, err
    return where


@pytest.fixture(scope="module")
def built(work) -> str:
    """`trajlake env build click`'s output (the first build, done once)."""
    rc, out, err = trajlake(work, "env", "build", "click")
    assert rc == 0, err
    return out


def config_for(work: Path) -> Config:
    data = work / "trajlake-data"
    return Config(
        lake=LakeConfig(root=str(data / "lake")),
        producer={"registry": str(data / "repos.db"), "mirrors": str(data / "mirrors")},
    )


def test_click_builds_and_its_own_python_and_tests_run_in_the_sandbox(work, built):
    assert "click: environment" in built and "packages" in built
    rc, out, _ = trajlake(
        work, "env", "shell", "click", "--", "python", "-c", "import click; print(click.__file__)"
    )
    assert (rc, out.strip()) == (0, "/testbed/src/click/__init__.py")  # the checkout's own file
    rc, out, _ = trajlake(
        work, "env", "shell", "click", "--", "python -m pytest -q -p no:cacheprovider "
        "tests/test_basic.py"
    )  # fmt: skip
    assert rc == 0 and " passed" in out and "failed" not in out
    [(status, packages)] = lake_rows(work, "SELECT status, packages FROM environments")
    assert status == "built" and any(p.startswith("pytest==") for p in packages)


def test_env_test_prints_the_counts_of_the_repositorys_own_test_run(work, built):
    rc, out, _ = trajlake(work, "env", "test", "click")
    summary = out.strip().splitlines()[-1]
    assert rc == 0 and summary.startswith("click at "), out[-500:]
    passed = int(summary.split(": ")[1].split(" passed")[0])
    assert passed > 1000 and " 0 failed" in summary  # click 8.5.1 has ~2,400 tests


def test_a_second_build_is_a_cache_hit_and_a_changed_key_file_rebuilds(work, built, tmp_path):
    config = config_for(work)
    rows = lake_rows(work, "SELECT count(*) FROM environments")[0][0]
    first = environment_for(config, "click", str(work / "repos/click"), "HEAD")
    again = environment_for(config, "click", str(work / "repos/click"), "HEAD")
    assert again.meta == first.meta and not again.built_now  # the cache: no build, no new row
    rc, out, _ = trajlake(work, "env", "build", "click")
    assert rc == 0 and "already built (a cache hit" in out
    assert lake_rows(work, "SELECT count(*) FROM environments")[0][0] == rows

    fork = tmp_path / "click"
    shutil.copytree(work / "repos/click", fork)
    (fork / "README.md").write_text("not a key file\n")
    commit_all(fork, "docs only")
    same = resolve_for(config, "click", str(fork), "HEAD")
    assert same.key == first.environment_id  # a change to no key file: the same environment
    with (fork / "pyproject.toml").open("a") as pyproject:
        pyproject.write("# a key file changed\n")
    commit_all(fork, "build config")
    changed = environment_for(config, "click", str(fork), "HEAD")
    assert changed.environment_id != first.environment_id and changed.built_now
    assert lake_rows(work, "SELECT count(*) FROM environments")[0][0] == rows + 1


def test_a_rollout_cannot_reach_the_network_although_its_build_could(tmp_path):
    repo, _ = git_repo(tmp_path / "repo", {"a.txt": "a\n"})
    spec = tmp_path / "fetching.yaml"
    spec.write_text(yaml.safe_dump({"name": "fetching", "install": [FETCH, "touch /env/ok"]}))
    config = config_for(tmp_path)
    Registry(config.producer.registry, config.producer.mirrors).add(
        str(repo), name="net", env=check_source(str(spec))
    )
    env = environment_for(config, "net", str(repo), "HEAD")  # the build fetched: it passed
    assert (env.root / "ok").is_file()
    with open_sandbox(SandboxConfig(), repo, "HEAD", env.mount()) as box:
        result = box.run(FETCH)
        assert result.returncode != 0 and "reached" not in result.output
        assert box.run("ls /env && touch /env/x").returncode != 0  # read-only


def test_a_failed_install_is_a_failed_row_with_its_log_and_is_not_cached(tmp_path):
    repo, _ = git_repo(tmp_path / "repo", {"a.txt": "a\n"})
    spec = tmp_path / "broken.yaml"
    spec.write_text(yaml.safe_dump({"name": "broken", "install": ["echo no-such-thing; exit 3"]}))
    config = config_for(tmp_path)
    Registry(config.producer.registry, config.producer.mirrors).add(
        str(repo), name="broken", env=str(spec)
    )
    with pytest.raises(EnvironmentBuildFailed, match="no-such-thing") as failed:
        environment_for(config, "broken", str(repo), "HEAD")
    assert "exited 3" in str(failed.value) and "trajlake dlq retry" in str(failed.value)
    [(status, tail)] = lake_rows(tmp_path, "SELECT status, log_tail FROM environments")
    assert status == "failed" and "no-such-thing" in tail
    assert not list((tmp_path / "trajlake-data/environments").glob("[!.]*"))  # nothing cached


def test_an_unknown_spec_key_fails_when_the_spec_is_read_naming_the_key(tmp_path):
    spec = tmp_path / "typo.yaml"
    spec.write_text("name: typo\ninstal: [pip install -e .]\n")
    with pytest.raises(ConfigError, match="instal"):
        check_source(str(spec))
    repo, _ = git_repo(tmp_path / "repo", {"a.txt": "a\n"})
    rc, _, err = trajlake(tmp_path, "repo", "add", str(repo), "--env", str(spec))
    assert rc != 0 and "instal" in err and "Extra inputs are not permitted" in err
    assert Registry(tmp_path / "trajlake-data/repos.db", tmp_path).list() == []
    rc, _, err = trajlake(tmp_path, "repo", "add", str(repo), "--env", "nope")
    assert rc != 0 and "auto, none, swesmith" in err


def test_an_npm_project_builds_through_npm_and_its_code_runs_in_the_sandbox(tmp_path):
    repo = npm_repo(tmp_path / "repos")
    rc, _, err = trajlake(tmp_path, "repo", "add", str(repo), "--name", "debug")
    assert rc == 0, err
    rc, out, err = trajlake(tmp_path, "env", "build", "debug")
    assert rc == 0 and "node-" in out, err
    rc, out, _ = trajlake(
        tmp_path, "env", "shell", "debug", "--",
        "node -e \"console.log(require('./src').humanize(3000), require.resolve('ms'))\"",
    )  # fmt: skip
    assert (rc, out.split()) == (0, ["3s", "/testbed/node_modules/ms/index.js"])
    rc, out, _ = trajlake(tmp_path, "env", "test", "debug")
    assert rc == 0 and out.strip().endswith("1 passed, 0 failed, 0 skipped (exit 0)")
    [(packages,)] = lake_rows(tmp_path, "SELECT packages FROM environments")
    assert packages == ["ms@2.1.2"]
    with open_sandbox(SandboxConfig(), repo, "HEAD", _mount(tmp_path, repo)) as box:
        assert box.run("git status --short && echo '//' >> src/index.js").returncode == 0
        patch = box.diff()
    assert "src/index.js" in patch and "node_modules" not in patch  # never in a patch


def _mount(work: Path, repo: Path) -> EnvironmentMount:
    return environment_for(config_for(work), "debug", str(repo), "HEAD").mount()


def test_swesmith_resolves_clicks_profile_and_builds_it(work, tmp_path):
    pytest.importorskip("swesmith.profiles")
    config = config_for(work)
    Registry(config.producer.registry, config.producer.mirrors).set_env("click", "swesmith")
    try:
        rc, out, err = trajlake(work, "env", "build", "click")
        assert rc == 0 and "swesmith:pallets__click" in out, err
        rc, out, _ = trajlake(work, "env", "show", "click")
        assert "source_commit: fde47b4b" in out and "image: swebench/swesmith" in out
        rc, out, _ = trajlake(
            work, "env", "shell", "click", "--", "python -c 'import click; print(click.__file__)'"
        )
        assert (rc, out.strip()) == (0, "/testbed/src/click/__init__.py")
    finally:
        Registry(config.producer.registry, config.producer.mirrors).set_env("click", "auto")


def test_env_list_and_prune_keep_what_heads_and_pending_tasks_need(work, built, tmp_path):
    config = config_for(work)
    head = resolve_for(config, "click", str(work / "repos/click"), "HEAD").key
    fork = tmp_path / "click"  # a commit a task still waits on: its own environment
    shutil.copytree(work / "repos/click", fork)
    with (fork / "pyproject.toml").open("a") as pyproject:
        pyproject.write("# pending\n")
    sha = commit_all(fork, "a pending task's commit")
    pending = environment_for(config, "click", str(fork), sha).environment_id
    task = TaskEvent(
        event_id="pending-task", stage="function_sampler", repo="click", repo_url=str(fork),
        commit=sha, function_file="src/click/core.py", function_name="f", line_start=1,
        line_end=2, change_type="x", request="r",
    )  # fmt: skip
    Lake(config.lake.root).write("tasks", [task], name="pending")  # no rollout answers it yet
    rc, out, _ = trajlake(work, "env", "list")
    assert rc == 0 and "click" in out
    rc, out, _ = trajlake(work, "env", "prune", "--dry-run")
    removing = out.split("kept")[0]
    assert rc == 0 and head not in removing and pending not in removing
    rc, out, _ = trajlake(work, "env", "prune")
    left = {p.name for p in (work / "trajlake-data/environments").iterdir() if p.name[0] != "."}
    assert left == {head, pending}, out


def test_docker_runs_the_spec_image_with_the_same_testbed_contract(tmp_path):
    env = EnvironmentMount(
        "e1", tmp_path / "env", ((tmp_path / "env/node_modules", "/testbed/node_modules"),),
        {"PATH": "/env/venv/bin:/usr/bin"}, "swebench/swesmith.x86_64.pallets_1776_click.fde47b4b",
    )  # fmt: skip
    mounts = Mounts(tmp_path / "co", tmp_path / "tmp", (), env.root, env.binds, (), env.variables)
    argv = docker_launch(SandboxConfig(), env.image, mounts, "pytest").argv
    text = " ".join(argv)
    assert f"-v {tmp_path}/co:/testbed -w /testbed" in text and "--network none" in text
    assert f"-v {tmp_path}/env:/env:ro" in text
    assert f"-v {tmp_path}/env/node_modules:/testbed/node_modules:ro" in text
    assert "-e PATH=/env/venv/bin:/usr/bin" in text and env.image in argv
    build = Mounts(tmp_path / "co", tmp_path / "tmp", (), env.root, build=True)
    text = " ".join(docker_launch(SandboxConfig(), "", build, "true").argv)
    assert "--network bridge" in text and f"{tmp_path}/env:/env " in text
    assert "python:3.11-slim" in text  # no image named: sandbox.image


def test_a_registry_from_before_environments_reads_every_repository_as_auto(tmp_path):
    repo, _ = git_repo(tmp_path / "repo", {"a.txt": "a\n"})
    db = tmp_path / "repos.db"
    with sqlite3.connect(db) as con:
        con.execute(
            "CREATE TABLE repos (name TEXT PRIMARY KEY, url TEXT NOT NULL, branch TEXT NOT NULL,"
            " backfill INTEGER NOT NULL, last_emitted TEXT, added_at TEXT NOT NULL,"
            " UNIQUE (url, branch))"
        )
        con.execute("INSERT INTO repos VALUES ('old', ?, 'main', 1, NULL, 'then')", (str(repo),))
    registry = Registry(db, tmp_path / "mirrors")
    [old] = registry.list()
    assert (old.name, old.env, old.last_emitted) == ("old", "auto", None)
    assert registry.set_env("old", "none").env == "none"


def test_test_counts_come_from_junit_or_the_runners_own_summary():
    cases = [
        '<testcase name="a"/>',
        '<testcase name="b"><failure/></testcase>',
        '<testcase name="c"><error/></testcase>',
        '<testcase name="d"><skipped/></testcase>',
    ]
    junit = f"<testsuites><testsuite>{''.join(cases)}</testsuite><testsuite>{cases[0]}</testsuite>"
    assert counts_of(junit_tests(junit + "</testsuites>")).line() == "2 passed, 2 failed, 1 skipped"
    pytest_out = "....F\n=== 1 failed, 4 passed, 2 skipped in 0.1s ==="
    assert from_summary(pytest_out).line() == "4 passed, 1 failed, 2 skipped"
    node_out = "# tests 3\n# pass 2\n# fail 1\n# cancelled 0\n# skipped 0\n# todo 0"
    assert from_summary(node_out).line() == "2 passed, 1 failed, 0 skipped"
    assert from_summary("  7 passing (20ms)\n  1 pending").line() == "7 passed, 0 failed, 1 skipped"
    assert not from_summary("Segmentation fault").found
    assert junit_tests("<not-xml") is None


def test_local_kind_runs_without_an_environment_and_says_so(tmp_path, caplog):
    from trajlake.environments import _say_local_has_none, rollout_mount

    _say_local_has_none.cache_clear()  # said once per process: make this test's the first
    config = Config(sandbox=SandboxConfig(kind="local", allow_unsafe_local=True))
    assert rollout_mount(config, "r", str(tmp_path), "HEAD").root is None
    assert "without their repository's environment" in caplog.text


def test_every_install_command_runs_from_the_checkout_with_uv_on_path(tmp_path):
    repo, _ = git_repo(tmp_path / "repo", {"marker.txt": "here\n"})
    spec = tmp_path / "probe.yaml"
    spec.write_text(
        yaml.safe_dump({"name": "probe", "install": ["pwd > /env/pwd", "uv --version > /env/uv",
                        "cat marker.txt > /env/marker", "echo $HOME > /env/home"]})
    )  # fmt: skip
    config = config_for(tmp_path)
    Registry(config.producer.registry, config.producer.mirrors).add(str(repo), env=str(spec))
    env = environment_for(config, "repo", str(repo), "HEAD")
    assert (env.root / "pwd").read_text() == "/testbed\n"
    assert (env.root / "uv").read_text().startswith("uv ")
    assert (env.root / "marker").read_text() == "here\n"
    assert subprocess.run(["git", "-C", str(repo), "status", "--short"], capture_output=True,
                          text=True).stdout == ""  # fmt: skip


def test_a_spec_file_fixed_in_place_is_read_again_by_a_running_worker(tmp_path):
    repo, _ = git_repo(tmp_path / "repo", {"a.txt": "a\n"})
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"name": "mine", "install": ["exit 1"]}))
    config = config_for(tmp_path)
    Registry(config.producer.registry, config.producer.mirrors).add(str(repo), env=str(spec))
    before = resolve_for(config, "repo", str(repo), "HEAD")
    spec.write_text(yaml.safe_dump({"name": "mine", "install": ["true"]}))
    after = resolve_for(config, "repo", str(repo), "HEAD")
    assert after.spec.install == ["true"] and after.key != before.key
