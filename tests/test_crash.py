"""Kill a stage with SIGKILL at random moments, restart it, and lose or duplicate nothing."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from echo_stage import commit_event, expected_id
from helpers import produce, read_topic, write_config

from trajlake.bus import open_bus
from trajlake.config import Config, LakeConfig, RunnerConfig
from trajlake.lake import Lake

pytestmark = pytest.mark.crash

EVENTS = 2000
KILLS = 6
TESTS_DIR = Path(__file__).parent


def start_stage(
    config_file: Path, idle_timeout: float | None = None, sleep_s: float = 0.003
) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "trajlake.cli",
        "--config",
        str(config_file),
        "stage",
        "echo_stage:STAGE",
    ]
    if idle_timeout is not None:
        cmd += ["--idle-timeout", str(idle_timeout)]
    env = {**os.environ, "PYTHONPATH": str(TESTS_DIR), "ECHO_SLEEP_S": str(sleep_s)}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_sigkill_at_random_moments_loses_and_duplicates_nothing(bus_config, tmp_path):
    config = Config(
        bus=bus_config,
        lake=LakeConfig(root=str(tmp_path / "lake")),
        runner=RunnerConfig(batch_size=50, poll_timeout_s=0.2),
    )
    config_file = tmp_path / "trajlake.yaml"
    write_config(config_file, config)
    bus = open_bus(config.bus)
    bus.create_topics(["commits", "tasks", "dlq"], partitions=4)
    commits = [commit_event(i) for i in range(EVENTS)]
    produce(bus, "commits", [c.encode() for c in commits], [c.partition_key() for c in commits])

    def committed() -> int:
        return sum(bus.committed("echo", ["commits"]).values())

    rng = random.Random(1234)
    for _ in range(KILLS):
        before = committed()
        proc = start_stage(config_file, sleep_s=0.03)
        deadline = time.monotonic() + 60
        while committed() == before and proc.poll() is None:  # kill only once it is working
            assert time.monotonic() < deadline, "the stage made no progress"
            time.sleep(0.05)
        time.sleep(rng.uniform(0, 0.4))
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert committed() < EVENTS, "the kills must land mid-run"

    final = start_stage(config_file, idle_timeout=3)
    _, err = final.communicate(timeout=300)
    assert final.returncode == 0, err.decode()[-2000:]

    expected = {expected_id(c.event_id) for c in commits}
    con = Lake(config.lake.root).connect()
    ids = [r[0] for r in con.execute("SELECT event_id FROM tasks").fetchall()]
    assert len(ids) == EVENTS and set(ids) == expected  # every id, none twice
    assert con.execute("SELECT count(*) FROM dlq").fetchone() == (0,)
    produced = {json.loads(m.value)["event_id"] for m in read_topic(bus, "tasks")}
    assert produced == expected
    assert bus.committed("echo", ["commits"]) == bus.end_offsets(["commits"])
    bus.close()


def test_sigterm_finishes_in_flight_work_commits_and_exits_0(bus_config, tmp_path):
    config = Config(
        bus=bus_config,
        lake=LakeConfig(root=str(tmp_path / "lake")),
        runner=RunnerConfig(batch_size=40, concurrency=4, poll_timeout_s=0.2),
    )
    config_file = tmp_path / "trajlake.yaml"
    write_config(config_file, config)
    bus = open_bus(config.bus)
    bus.create_topics(["commits", "tasks", "dlq"], partitions=2)
    commits = [commit_event(i) for i in range(400)]
    produce(bus, "commits", [c.encode() for c in commits], [c.partition_key() for c in commits])

    proc = start_stage(config_file, sleep_s=0.02)
    deadline = time.monotonic() + 60
    while not sum(bus.committed("echo", ["commits"]).values()):
        assert time.monotonic() < deadline and proc.poll() is None, "the stage made no progress"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)

    assert proc.returncode == 0, err.decode()[-2000:]
    committed = sum(bus.committed("echo", ["commits"]).values())
    assert 0 < committed < len(commits), "stopped before the end, on purpose"
    in_lake = Lake(config.lake.root).connect().execute("SELECT count(*) FROM tasks").fetchone()[0]
    assert in_lake == committed  # everything it took in was finished, published and committed
    assert len(read_topic(bus, "tasks")) == committed
    bus.close()
