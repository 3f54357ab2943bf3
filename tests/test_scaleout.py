"""Many workers of one stage on Kafka: three `trajlake stage rollout1` processes share one
consumer group on a 6-partition topic; one is killed with SIGKILL mid-run.

Real Tansu broker, real bubblewrap sandboxes, real lake; the teacher is the scripted double
over HTTP. Each worker sends its own API key (OPENAI_API_KEY=worker-N: the environment, not
the config, so all three share one config and config hash), which tells from the double's
request log which worker is working.

What is guaranteed, and checked: every task gets exactly the rollout event ids it should (one
attempt, id = hash of task, stage, teacher, attempt) and no other result, in the lake views and
on the output topic; all input offsets end committed. Delivery is at-least-once, so a record
the killed worker had taken but not committed is processed again by its new owner (the topic
may get a second message). The new owner finds what is already in the lake and does not write
it again; a member still working on partitions a live rebalance took from it can write a second
row with the same event_id, which the views collapse to one. A duplicate result would be a
second id for one task, or an id nobody expected; that is what must never appear.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from helpers import read_topic, write_config
from scale_helpers import balanced, make_repo, make_tasks, quick_script, stop

from trajlake.bus import open_bus
from trajlake.config import AgentConfig, BusConfig, Config, LakeConfig, RunnerConfig, TeacherConfig
from trajlake.consumers import scaffold
from trajlake.lake import Lake
from trajlake.pipeline import stage_lags
from trajlake.schemas import make_event_id
from trajlake.teacher import teacher_id
from trajlake.teacher.double import serve

pytestmark = [pytest.mark.scaleout, pytest.mark.kafka, pytest.mark.integration]

PARTITIONS = 6
WORKERS = 3
PER_PARTITION = 3
INPUTS = ("tasks", "replay")


def cli(config_file: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "trajlake.cli", "--config", str(config_file), *args]


def start_worker(config_file: Path, index: int, logs: Path) -> subprocess.Popen:
    env = {**os.environ, "OPENAI_API_KEY": f"worker-{index}"}
    with (logs / f"worker-{index}.log").open("wb") as log:
        command = [sys.executable, "-m", "trajlake.cli", "stage", "rollout1"]
        command += ["--config", str(config_file)]  # as in the issue: after the stage name
        return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def workers_seen(double) -> list[str]:
    """Which workers' requests the teacher has answered, in order of arrival."""
    return [r.authorization.removeprefix("Bearer ") for r in double.requests()]


def wait_for(condition, timeout_s: float, what: str, procs: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        assert all(p.poll() is None for p in procs), f"a worker exited while waiting for {what}"
        time.sleep(0.2)


def test_three_workers_share_the_partitions_and_survive_losing_one(kafka_bootstrap, tmp_path):
    repo, commit = make_repo(tmp_path / "repo", 60)
    tasks = balanced(make_tasks(repo, commit, 60), PARTITIONS, PER_PARTITION)
    logs = tmp_path / "logs"
    logs.mkdir()
    with serve(quick_script(tmp_path / "script.yaml"), latency_s=0.3) as double:
        config = Config(
            bus=BusConfig(
                kind="kafka",
                bootstrap_servers=kafka_bootstrap,
                namespace=f"t{uuid.uuid4().hex[:8]}",
                session_timeout_ms=6000,  # Tansu: a join takes half of it; takeover after it
                heartbeat_interval_ms=1000,
            ),
            lake=LakeConfig(root=str(tmp_path / "lake")),
            runner=RunnerConfig(batch_size=4, concurrency=2, poll_timeout_s=0.2),
            teacher=TeacherConfig(base_url=double.url, max_retries=2),
            agent=AgentConfig(trajectories=str(tmp_path / "traj")),
        )
        config_file = tmp_path / "trajlake.yaml"
        write_config(config_file, config)
        created = subprocess.run(
            cli(config_file, "topics", "create", "--partitions", str(PARTITIONS)),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert created.returncode == 0, created.stderr
        assert f"tasks: {PARTITIONS} partitions" in created.stdout

        bus = open_bus(config.bus)
        producer = bus.producer()
        for task in tasks:
            producer.send("tasks", task.encode(), task.partition_key())
        producer.close()
        assert all(end == PER_PARTITION for end in bus.end_offsets(["tasks"]).values())

        procs = [start_worker(config_file, i, logs) for i in range(WORKERS)]
        try:
            # Kill worker 0 while it is in the middle of a rollout: it holds uncommitted work.
            wait_for(lambda: "worker-0" in workers_seen(double), 120, "worker 0 works", procs)
            procs[0].send_signal(signal.SIGKILL)
            procs[0].wait()
            killed_at = len(double.requests())
            committed_at_kill = sum(bus.committed("rollout1", ["tasks"]).values())

            def done() -> bool:
                return all(s.lag == 0 for s in stage_lags(bus, {"rollout1": INPUTS}))

            wait_for(done, 180, "the group has committed every task", procs[1:])
            for proc in procs[1:]:
                proc.send_signal(signal.SIGTERM)
            for i, proc in enumerate(procs[1:], start=1):
                assert proc.wait(timeout=60) == 0, (logs / f"worker-{i}.log").read_text()[-3000:]
        finally:
            for proc in procs:
                stop(proc)

    assert committed_at_kill < len(tasks), "the kill must land mid-run"
    # (requests worker 0 sent before it died are logged when answered, maybe after the kill)
    assert {"worker-1", "worker-2"} & set(workers_seen(double)[killed_at:])
    assert len(set(workers_seen(double))) == WORKERS  # all three took part
    check_exactly_once(config, bus, tasks)
    bus.close()


def check_exactly_once(config: Config, bus, tasks) -> None:
    tid = teacher_id(config.teacher, scaffold.scaffold_id())
    expected = {make_event_id(t.event_id, "rollout1", tid, 1): t.event_id for t in tasks}
    con = Lake(config.lake.root).connect()
    rows = con.execute(
        "SELECT event_id, task_id, exit_status, self_eval, duplicate FROM rollouts_t1"
    ).fetchall()
    assert {r[0]: r[1] for r in rows} == expected and len(rows) == len(tasks)
    assert {r[2:] for r in rows} == {("Submitted", "yes", False)}
    raw = con.execute(
        "SELECT event_id, count(*) FROM read_parquet(?) GROUP BY 1",
        [str(Path(config.lake.root) / "rollouts_t1" / "**" / "*.parquet")],
    ).fetchall()
    assert {event_id for event_id, _ in raw} == set(expected)  # re-processed: same ids only
    assert con.execute("SELECT count(*) FROM dlq").fetchone() == (0,)
    con.close()
    published = {json.loads(m.value)["event_id"] for m in read_topic(bus, "rollouts.t1")}
    assert published == set(expected)
    assert bus.committed("rollout1", ["tasks"]) == bus.end_offsets(["tasks"])
