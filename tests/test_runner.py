"""The stage runner against the real bus backends and a real lake."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import pytest
from echo_stage import STAGE, commit_event, expected_id
from helpers import produce, read_topic

from trajlake.bus import open_bus
from trajlake.config import Config, LakeConfig, RunnerConfig
from trajlake.errors import TeacherUnavailable
from trajlake.lake import Lake
from trajlake.producers import redrive
from trajlake.runner import StageRunner
from trajlake.schemas import CommitEvent, DeadLetter, TaskEvent
from trajlake.stage import Stage

pytestmark = pytest.mark.integration


@pytest.fixture
def setup(bus_config, tmp_path):
    config = Config(bus=bus_config, lake=LakeConfig(root=str(tmp_path / "lake")))
    bus = open_bus(config.bus)
    bus.create_topics(["commits"], partitions=3)
    bus.create_topics(["tasks", "dlq"], partitions=1)  # one partition keeps production order
    yield config, bus, Lake(config.lake.root)
    bus.close()


def run_until_idle(
    stage, config, bus, lake, idle_timeout_s: float = 2, **runner_options
) -> StageRunner:
    runner = StageRunner(stage, bus, lake, RunnerConfig(poll_timeout_s=0.2, **runner_options))
    runner.run(idle_timeout_s=idle_timeout_s)
    return runner


def test_every_record_reaches_lake_and_topic_and_offsets_commit(setup):
    config, bus, lake = setup
    commits = [commit_event(i) for i in range(300)]
    produce(bus, "commits", [c.encode() for c in commits], [c.partition_key() for c in commits])

    runner = run_until_idle(STAGE, config, bus, lake, batch_size=64)

    expected = {expected_id(c.event_id) for c in commits}
    con = lake.connect()
    assert {r[0] for r in con.execute("SELECT event_id FROM tasks").fetchall()} == expected
    assert {TaskEvent.decode(m.value).event_id for m in read_topic(bus, "tasks")} == expected
    assert bus.committed("echo", ["commits"]) == bus.end_offsets(["commits"])
    assert runner.stats.consumed == 300 and runner.stats.produced == 300


def test_malformed_records_go_to_dlq_and_the_stage_goes_on(setup):
    config, bus, lake = setup
    good = commit_event(1)
    wrong_schema = json.dumps({"event_id": "x", "hello": "world"}).encode()
    not_json = b"\xff\xfe this is not json"
    boom = commit_event(2, message="boom")
    same_key = b"k"  # one partition, so the good record comes after the bad ones
    produce(bus, "commits", [not_json, wrong_schema, boom.encode(), good.encode()], [same_key] * 4)

    run_until_idle(STAGE, config, bus, lake)

    dead = [DeadLetter.decode(m.value) for m in read_topic(bus, "dlq")]
    assert sorted(d.payload for d in dead) == sorted([not_json, wrong_schema, boom.encode()])
    by_payload = {d.payload: d for d in dead}
    assert by_payload[not_json].error_type == "SchemaError"
    assert "json" in by_payload[not_json].error.lower()
    assert "field stage" in by_payload[wrong_schema].error  # names the missing field
    assert by_payload[boom.encode()].error_type == "RuntimeError"
    assert by_payload[boom.encode()].parent_ids == [boom.event_id]
    assert {d.stage for d in dead} == {"echo"}
    rows = lake.connect().execute("SELECT stage, error_type, payload FROM dlq").fetchall()
    assert sorted(r[2] for r in rows) == sorted(d.payload for d in dead)  # the failure rows
    tasks = [TaskEvent.decode(m.value) for m in read_topic(bus, "tasks")]
    assert [t.event_id for t in tasks] == [expected_id(good.event_id)]


def test_a_record_the_bus_refuses_becomes_a_dead_letter_and_the_next_goes_on(setup):
    config, bus, lake = setup
    commits = [commit_event(i) for i in range(3)]

    def huge_second(event):  # the second commit's task is 2 MB: over the bus's 1 MB
        [task] = STAGE.process(event)
        big = int(event.commit, 16) == 1
        return [task.model_copy(update={"request": "x" * 2_000_000})] if big else [task]

    stage = Stage("echo", STAGE.inputs, STAGE.outputs, huge_second)
    produce(bus, "commits", [c.encode() for c in commits], [b"k"] * 3)  # one partition, in order
    refusing = config.bus.model_copy(update={"claim_check": False, "max_record_bytes": 1_000_000})
    runner = StageRunner(stage, bus, lake, RunnerConfig(poll_timeout_s=0.2, batch_size=1), refusing)
    runner.run(idle_timeout_s=2)

    [dead] = [DeadLetter.decode(m.value) for m in read_topic(bus, "dlq")]
    assert dead.error_type == "RecordRejected" and "max_record_bytes" in dead.error
    assert dead.payload == commits[1].encode() and dead.parent_ids == [commits[1].event_id]
    published = [TaskEvent.decode(m.value).event_id for m in read_topic(bus, "tasks")]
    assert published == [expected_id(commits[0].event_id), expected_id(commits[2].event_id)]
    assert bus.committed("echo", ["commits"]) == bus.end_offsets(["commits"])
    assert runner.stats.dead_letters == 1
    assert lake.counts()["tasks"] == 3  # the refused task is in the lake: retry re-sends it


def test_a_dead_letter_sent_back_goes_through_once_the_cause_is_fixed(setup):
    config, bus, lake = setup
    bus.create_topics(["dlq.retry", "dlq.resolved"], partitions=1)
    commits = [commit_event(i) for i in range(3)]
    broken = {"yes": True}

    def fails_while_broken(event):
        if broken["yes"] and int(event.commit, 16) == 1:
            raise RuntimeError("the teacher is down")
        return STAGE.process(event)

    stage = Stage("echo", STAGE.inputs, STAGE.outputs, fails_while_broken)
    produce(bus, "commits", [c.encode() for c in commits], [c.partition_key() for c in commits])
    run_until_idle(stage, config, bus, lake)
    assert lake.counts()["tasks"] == 2
    [open_letter] = redrive.open_counts(lake)
    assert (open_letter.stage, open_letter.error_type) == ("echo", "RuntimeError")

    broken["yes"] = False  # the cause is fixed
    producer = bus.producer()
    first = redrive.plan(lake)
    redrive.send(first.retries, lake, producer, config.bus)
    again = redrive.plan(lake)  # sent and not yet run: sent again, as the same record
    ids = [r.event_id for r in first.retries]
    assert (first.pending, again.pending, [r.event_id for r in again.retries]) == (0, 1, ids)
    redrive.send(again.retries, lake, producer, config.bus)
    producer.close()
    run_until_idle(stage, config, bus, lake)

    assert {r[0] for r in lake.connect().execute("SELECT event_id FROM tasks").fetchall()} == {
        expected_id(c.event_id) for c in commits
    }
    assert redrive.open_counts(lake) == [] and lake.counts()["dlq.resolved"] == 1
    assert lake.counts()["dlq"] == 1  # the failure stays in the lake


def test_an_input_delivered_again_adds_no_raw_row(setup):
    """What an upstream producer killed between its flush and its commit causes."""
    config, bus, lake = setup
    commits = [commit_event(i) for i in range(4)]
    twice = [c.encode() for c in commits] * 2  # in one window: the copies run side by side
    produce(bus, "commits", twice, [b"k"] * len(twice))
    run_until_idle(STAGE, config, bus, lake)
    produce(bus, "commits", [commits[0].encode()], [b"k"])  # and again in a later run
    run_until_idle(STAGE, config, bus, lake)

    raw = (
        lake.connect()
        .execute(
            "SELECT event_id, count(*) FROM read_parquet(?) GROUP BY 1",
            [f"{lake.root}/tasks/**/*.parquet"],
        )
        .fetchall()
    )
    assert sorted(raw) == sorted((expected_id(c.event_id), 1) for c in commits)
    published = [TaskEvent.decode(m.value).event_id for m in read_topic(bus, "tasks")]
    assert len(published) == 9  # every delivery is still answered on the bus


def test_concurrent_records_are_published_in_input_order_per_partition(setup):
    config, bus, lake = setup
    commits = [commit_event(i) for i in range(40)]

    def slow_first(event):  # early records finish last
        time.sleep(0.002 * (40 - int(event.commit, 16)))
        return STAGE.process(event)

    stage = Stage("echo", STAGE.inputs, STAGE.outputs, slow_first, concurrent=True)
    produce(bus, "commits", [c.encode() for c in commits], [c.partition_key() for c in commits])
    run_until_idle(stage, config, bus, lake, concurrency=8, batch_size=16)

    inputs = read_topic(bus, "commits")
    outputs = read_topic(bus, "tasks")
    for partition in {m.partition for m in inputs}:
        sent = [
            expected_id(json.loads(m.value)["event_id"]) for m in inputs if m.partition == partition
        ]
        got = [json.loads(m.value)["event_id"] for m in outputs]
        assert [i for i in got if i in set(sent)] == sent


def test_already_done_inputs_are_re_emitted_from_the_lake_not_recomputed(setup):
    config, bus, lake = setup
    commits = [commit_event(i) for i in range(20)]
    produce(bus, "commits", [c.encode() for c in commits], [c.partition_key() for c in commits])
    calls = []
    lock = threading.Lock()

    def counting(event):
        with lock:
            calls.append(event.event_id)
        return STAGE.process(event)

    stage = Stage("echo", STAGE.inputs, STAGE.outputs, counting, skip_if_done=True)
    run_until_idle(stage, config, bus, lake)
    assert len(calls) == 20

    # Rewind the group, as if its commits were lost after the outputs were written.
    consumer = bus.consumer("echo", ["commits"])
    for _ in range(60):
        if consumer.assignment():
            break
        consumer.poll(timeout_s=0.5)
    consumer.commit({tp: 0 for tp in bus.end_offsets(["commits"])})
    consumer.close()
    runner = StageRunner(stage, bus, lake, RunnerConfig(poll_timeout_s=0.2))
    runner.run(idle_timeout_s=2)

    assert len(calls) == 20  # nothing recomputed
    assert runner.stats.skipped == 20
    outputs = [json.loads(m.value)["event_id"] for m in read_topic(bus, "tasks")]
    assert sorted(outputs) == sorted([expected_id(c.event_id) for c in commits] * 2)


def test_taken_over_partitions_reuse_their_old_owners_lake_work(setup):
    """A member that wrote its outputs to the lake and died before committing: whoever takes
    over its partitions re-emits those outputs from the lake instead of redoing the work."""
    config, bus, lake = setup
    calls = []
    stage = Stage(
        "echo",
        STAGE.inputs,
        STAGE.outputs,
        lambda e: calls.append(e) or STAGE.process(e),
        skip_if_done=True,
    )
    other = bus.consumer("echo", ["commits"])
    for _ in range(60):
        if len(other.assignment()) == 3:
            break
        other.poll(timeout_s=0.2)
    runner = StageRunner(stage, bus, lake, RunnerConfig(poll_timeout_s=0.2))
    thread = threading.Thread(target=runner.run)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while len(other.assignment()) == 3:  # until the runner has joined and got a share
            assert time.monotonic() < deadline, "the runner never got a partition"
            other.poll(timeout_s=0.2)
        mine = other.assignment()
        commits = [commit_event(i, repo=f"org/repo{i % 6}") for i in range(30)]  # 3 partitions
        produce(bus, "commits", [c.encode() for c in commits], [c.partition_key() for c in commits])
        ends = bus.end_offsets(["commits"])
        theirs = sum(ends[tp] for tp in mine)
        taken = []
        while len(taken) < theirs:
            assert time.monotonic() < deadline, f"read {len(taken)} of {theirs}"
            taken += other.poll(timeout_s=0.2)
        outputs = [e for m in taken for e in STAGE.process(CommitEvent.decode(m.value))]
        lake.write("tasks", outputs, name="dead-member")  # finished, then died uncommitted
        other.close()
        while bus.committed("echo", ["commits"]) != ends:
            assert time.monotonic() < deadline, "the runner did not finish every partition"
            time.sleep(0.2)
    finally:
        runner.stop()
        thread.join()
    assert runner.stats.skipped == theirs > 0
    assert len(calls) == 30 - theirs  # only the runner's own share was computed
    published = [json.loads(m.value)["event_id"] for m in read_topic(bus, "tasks")]
    assert sorted(published) == sorted(expected_id(c.event_id) for c in commits)


DEAD_MEMBER = """
import sys, time
from trajlake.bus import open_bus
from trajlake.config import BusConfig
consumer = open_bus(BusConfig.model_validate_json(sys.argv[1])).consumer("echo", ["commits"])
while not consumer.assignment():
    consumer.poll(timeout_s=0.2)
print(len(consumer.assignment()), flush=True)
time.sleep(600)
"""


def test_an_idle_timeout_waits_for_the_partitions_a_killed_member_still_holds(setup):
    """A member SIGKILLed mid-run keeps its partitions until the session timeout; a runner
    started with an idle timeout must not exit before they come to it."""
    config, bus, lake = setup
    commits = [commit_event(i, repo=f"org/repo{i % 9}") for i in range(30)]
    produce(bus, "commits", [c.encode() for c in commits], [c.partition_key() for c in commits])
    assert all(bus.end_offsets(["commits"]).values())  # whichever the dead member keeps has work
    member = subprocess.Popen(
        [sys.executable, "-c", DEAD_MEMBER, config.bus.model_dump_json()], stdout=subprocess.PIPE
    )
    assert int(member.stdout.readline()) == 3  # all of them, until the runner joins
    member.send_signal(signal.SIGKILL)
    member.wait()

    run_until_idle(STAGE, config, bus, lake, idle_timeout_s=1)

    assert bus.committed("echo", ["commits"]) == bus.end_offsets(["commits"])
    tasks = lake.connect().execute("SELECT event_id FROM tasks").fetchall()
    assert sorted(r[0] for r in tasks) == sorted(expected_id(c.event_id) for c in commits)


def test_a_stage_stopped_while_it_waits_out_an_outage_leaves_the_record_for_the_next_run(setup):
    """The teacher is down: the record is run again and again (never a row, never a dead
    letter while the patience lasts); a stop leaves it uncommitted, and once the teacher is
    back the next run completes it with the id an undisturbed run gives."""
    config, bus, lake = setup
    commit = commit_event(7)
    produce(bus, "commits", [commit.encode()])
    down, tries = threading.Event(), []
    down.set()

    def process(event):
        tries.append(time.monotonic())
        if down.is_set():
            raise TeacherUnavailable("the teacher at http://127.0.0.1:9/v1 failed 2 time(s)")
        return STAGE.process(event)

    stage = Stage("echo", STAGE.inputs, STAGE.outputs, process)
    patient = RunnerConfig(poll_timeout_s=0.2, outage_patience_s=60, outage_backoff_max_s=0.2)
    runner = StageRunner(stage, bus, lake, patient)
    worker = threading.Thread(target=runner.run)
    worker.start()
    while len(tries) < 3:  # run again after each failure
        time.sleep(0.05)
    runner.stop()
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert runner.stats.dead_letters == 0 and lake.counts()["tasks"] == 0
    assert bus.committed("echo", ["commits"]) != bus.end_offsets(["commits"])  # left to redo

    down.clear()  # the teacher is back
    run_until_idle(stage, config, bus, lake)
    ids = {r[0] for r in lake.connect().execute("SELECT event_id FROM tasks").fetchall()}
    assert ids == {expected_id(commit.event_id)} and lake.counts()["dlq"] == 0
