"""Preflight: `demo`, `run` and `stage NAME` stop before consuming anything when the sandbox
cannot start or the teacher does not answer, and say how to fix it. Everything is real: the CLI
(a subprocess where PATH matters), bwrap, the HTTP teacher double, the embedded bus, the lake."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import git_repo, produce

from trajlake import preflight
from trajlake.bus import open_bus
from trajlake.cli import main
from trajlake.config import Config, TeacherConfig, load_config
from trajlake.demo import build_sample_repo, demo_script_path
from trajlake.errors import SandboxUnavailable, TeacherUnreachable
from trajlake.lake import Lake
from trajlake.stages import BUILTIN, load_stage
from trajlake.teacher.double import serve

pytestmark = pytest.mark.integration


def closed_port_url() -> str:
    """A loopback URL where nothing listens (the port was free a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def cli(*argv: str) -> tuple[int, str]:
    """`trajlake ARGV` in this process: (exit status, stderr); signal handlers put back."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    err = io.StringIO()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            rc = main(list(argv))
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    return rc, err.getvalue()


def consumed(config: Config) -> dict[str, int]:
    """Lake rows per table, and per stage the input offsets its group committed (non-zero only)."""
    counts = {t: n for t, n in Lake(config.lake.root).counts().items() if n}
    if Path(config.bus.path).exists():
        bus = open_bus(config.bus)
        try:
            known = bus.list_topics()
            for name in BUILTIN:
                inputs = [t for t in load_stage(name, config).inputs if t in known]
                done = sum(bus.committed(name, inputs).values()) if inputs else 0
                counts |= {f"committed:{name}": done} if done else {}
        finally:
            bus.close()
    return counts


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A trajlake.yaml here (the CLI finds it) whose teacher does not answer."""
    data = tmp_path / "data"
    (tmp_path / "trajlake.yaml").write_text(
        f"bus: {{path: {data / 'bus.db'}}}\nlake: {{root: {data / 'lake'}}}\n"
        f"producer: {{registry: {data / 'repos.db'}, mirrors: {data / 'mirrors'}}}\n"
        f"agent: {{trajectories: {data / 'trajectories'}}}\n"
        f"teacher: {{base_url: '{closed_port_url()}'}}\nsampler: {{mode: changed}}\n"
    )
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_demo_without_bubblewrap_stops_before_consuming_anything(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"  # python and git, but no bwrap
    bin_dir.mkdir()
    for name, target in (("python", sys.executable), ("git", shutil.which("git"))):
        (bin_dir / name).symlink_to(target)
    workdir = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "trajlake.cli", "demo", "--workdir", str(workdir)],
        env={**os.environ, "PATH": str(bin_dir)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0, done.stdout
    assert "`apt-get install -y bubblewrap`" in done.stderr
    assert "--set sandbox.kind=local --set sandbox.allow_unsafe_local=true" in done.stderr
    assert "Nothing was read from the bus" in done.stderr
    data = workdir / "data"
    config = load_config(None, [f"bus.path={data / 'bus.db'}", f"lake.root={data / 'lake'}"])
    assert consumed(config) == {}
    assert not data.exists()  # not even the sample repository's commits were emitted


def test_stage_rollout1_with_an_unreachable_teacher_consumes_nothing(workdir: Path) -> None:
    repo = build_sample_repo(workdir / "sample-repo")
    assert cli("repo", "add", str(repo), "--backfill", "3")[0] == 0
    assert cli("watch", "--once")[0] == 0
    # function_sampler and verifier need neither the teacher nor a sandbox: they run
    assert cli("stage", "function_sampler", "--idle-timeout", "0.5")[0] == 0
    assert cli("stage", "verifier", "--idle-timeout", "0.2")[0] == 0
    config = load_config("trajlake.yaml")
    before = consumed(config)
    assert before["tasks"] > 0 and "rollouts.t1" not in before

    for stage in ("rollout1", "pr_writer", "rollout2"):
        rc, err = cli("stage", stage, "--idle-timeout", "0.2")
        assert rc != 0, stage
        assert f"Start the teacher at {config.teacher.base_url}, or set teacher.base_url" in err
        assert "Nothing was read from the bus" in err
    assert consumed(config) == before  # no offsets committed, no lake rows, no dead letters


def test_run_with_an_unreachable_teacher_emits_no_commit(workdir: Path) -> None:
    repo, _ = git_repo(workdir / "tiny", {"calc.py": "def add(a, b):\n    return a + b\n"})
    assert cli("repo", "add", str(repo))[0] == 0
    rc, err = cli("run")
    assert rc != 0 and "need the teacher, but no endpoint answers" in err
    assert consumed(load_config("trajlake.yaml")) == {}  # the new commit was not even emitted
    rc, err = cli("--set", "sandbox.kind=local", "run")  # the sandbox is checked first
    assert rc != 0 and "--set sandbox.allow_unsafe_local=true" in err, err


def test_a_teacher_pool_needs_one_endpoint_that_answers() -> None:
    dead = [closed_port_url(), closed_port_url()]
    with serve(demo_script_path()) as double:
        pool = TeacherConfig(base_url=dead[0], base_urls=(double.url, dead[1]))
        notes = preflight.check_teacher(pool, ["rollout1"])
        assert len(notes) == 1 and dead[0] in notes[0] and dead[1] in notes[0]
        renamed = TeacherConfig(base_url=double.url, model="Qwen/Qwen3-32B")
        (note,) = preflight.check_teacher(renamed, ["rollout1"])
        assert "lists teacher but not teacher.model='Qwen/Qwen3-32B'" in note
    with pytest.raises(TeacherUnreachable) as raised:
        preflight.check_teacher(TeacherConfig(base_url=dead[0], base_urls=(dead[1],)), ["x"])
    assert dead[0] in str(raised.value) and dead[1] in str(raised.value)


def test_each_sandbox_kind_is_checked_with_its_fix(tmp_path: Path, monkeypatch) -> None:
    def check(*overrides: str) -> str:
        config = load_config(None, [*overrides, f"teacher.base_url={closed_port_url()}"])
        with pytest.raises(SandboxUnavailable) as raised:
            preflight.check(config, ["rollout2"])
        return str(raised.value)

    assert "`--set sandbox.allow_unsafe_local=true`" in check("sandbox.kind=local")
    assert "`docker info`" in check("sandbox.kind=docker")  # no Docker engine on these machines
    fake = tmp_path / "bin" / "bwrap"  # a bwrap that cannot make namespaces, as in a container
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake.parent))
    assert "No permissions to create new namespace" in check()
    assert "allow unprivileged user namespaces" in check()


def test_stages_that_need_nothing_are_not_held_up() -> None:
    assert set(preflight.NEEDS) == set(BUILTIN)  # a new stage needs a decision here
    broken = load_config(None, ["sandbox.kind=docker", f"teacher.base_url={closed_port_url()}"])
    assert preflight.check(broken, ["function_sampler", "verifier", "filter", "pkg.mod:f"]) == []
    with pytest.raises(TeacherUnreachable):  # pr_writer needs the teacher, not the sandbox
        preflight.check(broken, ["pr_writer"])


def test_the_demo_exits_non_zero_when_a_record_of_its_run_is_dead_lettered(demo_copy, tmp_path):
    copy = demo_copy(tmp_path)
    bus = open_bus(load_config(copy.config_file).bus)
    produce(bus, "commits", [b"{not a commit"])  # function_sampler cannot read it
    bus.close()
    rc, err = cli("demo", "--workdir", str(copy.workdir))
    assert rc == 1 and "1 record(s) failed this run and became dead letters" in err
    assert f"trajlake --config {copy.config_file} dlq list" in err  # where to see why


def test_run_and_stage_dagger_check_the_student_when_dagger_has_work(demo_copy, tmp_path):
    """The student is called only for DAgger records, so `run` and `stage dagger` check it
    when some wait (every other `run` and stage here has none, and no student)."""
    with serve(demo_script_path()) as teacher:
        copy = demo_copy(tmp_path, teacher.url)
        config = load_config(copy.config_file)
        student_down = ["--config", str(copy.config_file), "--set"]
        student_down.append(f"student.base_url={closed_port_url()}")
        assert cli(*student_down, "stage", "dagger", "--idle-timeout", "1")[0] == 0  # no work
        bus = open_bus(config.bus)
        produce(bus, "dagger.tasks", [b"{}"])
        bus.close()
        before = consumed(config)
        for command in (["stage", "dagger", "--idle-timeout", "1"], ["run"]):
            rc, err = cli(*student_down, *command)
            assert rc == 2 and "dagger need the student" in err and "Nothing was read" in err
    assert consumed(config) == before
