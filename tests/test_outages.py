"""A teacher outage is waited out or dead-lettered, never recorded as data (both buses).

The demo's pipeline runs as `trajlake run` against the scripted teacher double on a fixed port;
a few calls in, the double stops, and later a new one starts on the same port, as a server
restart looks to a client (connections refused, then answered again):

- for less than `runner.outage_patience_s`: the stages back off and run their records again,
  and every table ends with the event ids of the session's undisturbed demo, no dead letter;
- for longer: the records in flight become dead letters, `trajlake run` exits 1 and says so,
  and once the teacher is back `trajlake dlq retry` brings every table to the undisturbed ids.

In neither does a rollout row carry an infrastructure failure as its exit status. Real git,
bubblewrap, embedded log or Tansu, lake; the teacher is the scripted double over HTTP.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from doc_helpers import free_port
from helpers import bus_overrides, write_config

from trajlake.cli import main
from trajlake.demo import SAMPLE_COMMITS, build_sample_repo, demo_config, ensure_tokenizer
from trajlake.lake import Lake
from trajlake.repos import Registry
from trajlake.teacher.double import demo_script_path, serve

pytestmark = pytest.mark.e2e

DATA = ("commits", "tasks", "rollouts.t1", "prs", "rollouts.t2", "verdicts", "samples")
CALLS_BEFORE_OUTAGE = 6
WAIT_S = 120
OUTAGE_STATUSES = ("TeacherUnavailable", "SandboxDown", "OutageOutlasted")


def event_ids(root: str | Path) -> dict[str, set[str]]:
    con = Lake(root).connect(list(DATA))
    try:
        return {
            t: {r[0] for r in con.execute(f"SELECT event_id FROM {t.replace('.', '_')}").fetchall()}
            for t in DATA
        }
    finally:
        con.close()


class TeacherRestart:
    """The double on `port`, stopped once it has answered `calls` requests, and served again
    on the same port `back_after_s` later (None: when `restart()` is called)."""

    def __init__(self, port: int, calls: int, back_after_s: float | None = None):
        self.port = port
        self.double = serve(demo_script_path(), port=port)
        self.went_down = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(calls, back_after_s), daemon=True)
        self._thread.start()

    def _run(self, calls: int, back_after_s: float | None) -> None:
        deadline = time.monotonic() + WAIT_S
        while sum(self.double.stats().values()) < calls:
            if time.monotonic() > deadline:
                return  # the run ended first: the test says so
            time.sleep(0.05)
        self.double.close()
        self.went_down.set()
        if back_after_s is not None:
            time.sleep(back_after_s)
            self.double = serve(demo_script_path(), port=self.port)

    def restart(self) -> None:
        self._thread.join(WAIT_S)
        assert self.went_down.is_set(), f"the run ended before {CALLS_BEFORE_OUTAGE} calls"
        self.double = serve(demo_script_path(), port=self.port)

    def close(self) -> None:
        self._thread.join(WAIT_S)
        self.double.close()


def pipeline_config(
    tmp_path: Path, repo: Path, port: int, patience_s: float, bus: list[str] = ()
) -> Path:
    """The demo's configuration on the sample repository `repo` (commit ids come from its
    path), on the bus `bus` names, its teacher at `port`, retried quickly."""
    workdir = tmp_path / "demo"
    overrides = [
        *bus,
        f"runner.outage_patience_s={patience_s}",
        "runner.outage_backoff_max_s=1",
        "teacher.max_retries=1",
    ]
    config = demo_config(workdir, f"http://127.0.0.1:{port}/v1", overrides)
    ensure_tokenizer(repo, Path(config.filter.tokenizer))  # trained on the same files: the same
    Registry(config.producer.registry, config.producer.mirrors).add(
        str(repo), "main", "sample-repo", backfill=len(SAMPLE_COMMITS)
    )
    config_file = workdir / "trajlake.yaml"
    write_config(config_file, config)
    if config.bus.kind == "kafka":  # as a deployment does before its first run
        assert main(["--config", str(config_file), "topics", "create"]) == 0
    return config_file


def no_outage_rows(root: str | Path) -> None:
    con = Lake(root).connect(["rollouts.t1", "rollouts.t2"])
    statuses = con.execute(
        "SELECT exit_status FROM rollouts_t1 UNION ALL SELECT exit_status FROM rollouts_t2"
    ).fetchall()
    con.close()
    assert statuses and not {s for (s,) in statuses} & set(OUTAGE_STATUSES)


@pytest.fixture(scope="module")
def undisturbed(tmp_path_factory) -> tuple[Path, dict[str, set[str]]]:
    """The sample repository, and the event ids per table of a run on it with no outage."""
    base = tmp_path_factory.mktemp("undisturbed")
    repo = build_sample_repo(base / "sample-repo")
    port = free_port()
    with serve(demo_script_path(), port=port):
        config_file = pipeline_config(base, repo, port, patience_s=0)
        assert main(["--config", str(config_file), "run"]) == 0
    ids = event_ids(base / "demo" / "data" / "lake")
    assert all(ids.values())
    return repo, ids


def test_an_outage_shorter_than_the_patience_is_waited_out(
    tmp_path, bus_config, undisturbed, capsys
):
    repo, expected = undisturbed
    port = free_port()
    config_file = pipeline_config(tmp_path, repo, port, 120, bus_overrides(bus_config))
    outage = TeacherRestart(port, CALLS_BEFORE_OUTAGE, back_after_s=4)  # waits: 1 s, 2 s, …
    try:
        assert main(["--config", str(config_file), "run"]) == 0
    finally:
        outage.close()
    assert outage.went_down.is_set(), f"the run ended before {CALLS_BEFORE_OUTAGE} calls"
    assert "dead letters" not in capsys.readouterr().err
    root = tmp_path / "demo" / "data" / "lake"
    assert Lake(root).counts()["dlq"] == 0
    assert event_ids(root) == expected
    no_outage_rows(root)


def test_a_longer_outage_dead_letters_and_dlq_retry_completes_it(
    tmp_path, bus_config, undisturbed, capsys
):
    repo, expected = undisturbed
    port = free_port()
    config_file = pipeline_config(tmp_path, repo, port, 2, bus_overrides(bus_config))
    outage = TeacherRestart(port, CALLS_BEFORE_OUTAGE)
    try:
        assert main(["--config", str(config_file), "run"]) == 1  # work left undone
        err = capsys.readouterr().err
        assert "became dead letters" in err and "dlq retry" in err
        root = tmp_path / "demo" / "data" / "lake"
        lake = Lake(root)
        con = lake.connect(["dlq"])
        kinds = {r[0] for r in con.execute("SELECT DISTINCT error_type FROM dlq").fetchall()}
        con.close()
        assert kinds == {"TeacherUnavailable"}
        outage.restart()
        assert main(["--config", str(config_file), "dlq", "retry"]) == 0
        if bus_config.kind == "kafka":  # sent only: the stages of a run take them
            assert main(["--config", str(config_file), "run"]) == 0
    finally:
        outage.close()
    assert event_ids(root) == expected
    no_outage_rows(root)
    capsys.readouterr()
    assert main(["--config", str(config_file), "dlq", "retry"]) == 0  # nothing left open
    assert "0 dead letters to send back" in capsys.readouterr().out


def test_a_run_stopped_during_an_outage_exits_1_and_leaves_its_records_for_the_next(
    tmp_path, undisturbed
):
    """Every call fails (HTTP 503; GET /models answers, so the preflight passes): the records
    wait out the outage; SIGTERM stops the run, which says what is left and exits 1, with no
    row and no dead letter written for them."""
    script = tmp_path / "down.yaml"
    script.write_text(
        "model: teacher\nsessions:\n  - name: down\n    match: '.'\n    match_on: all\n"
        "    fail: {status: 503, times: 100000}\n    turns: [{content: never}]\n"
    )
    port = free_port()
    config_file = pipeline_config(tmp_path, undisturbed[0], port, 600)
    with serve(script, port=port) as down:
        run = subprocess.Popen(
            [sys.executable, "-m", "trajlake.cli", "--config", str(config_file), "run"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + WAIT_S
        while down.stats().get("down", 0) < 6 and time.monotonic() < deadline:
            time.sleep(0.1)
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=WAIT_S)
    assert run.returncode == 1 and "record(s) not done" in err, err
    counts = Lake(tmp_path / "demo" / "data" / "lake").counts()
    assert counts["tasks"] > 0 and counts["rollouts.t1"] == 0 and counts["dlq"] == 0
