"""The bus contract: every backend passes the same tests, through the one `bus_config` fixture."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from trajlake.bus import Bus, Consumer, Message, TopicPartition, open_bus, partition_for
from trajlake.config import BusConfig
from trajlake.errors import CommitFailed, RecordRejected, TopicNotFound

pytestmark = pytest.mark.contract

PARTITIONS = 4
WAIT_S = 60.0  # bound on every wait; Tansu group joins take session_timeout/2 (3 s) each

PRODUCER_SCRIPT = """
import sys
from trajlake.bus import open_bus
from trajlake.config import BusConfig

config, topic, name, count = sys.argv[1:]
bus = open_bus(BusConfig.model_validate_json(config))
producer = bus.producer()
print("ready", flush=True)
sys.stdin.readline()  # start together with the other producer
for i in range(int(count)):
    key = None if i % 5 == 0 else f"{name}-{i % 17}".encode()
    producer.send(topic, f"{name}-{i}".encode(), key=key)
    if i % 50 == 49:
        producer.flush()
producer.close()
bus.close()
"""

MEMBER_SCRIPT = """
import pathlib, sys
from trajlake.bus import open_bus
from trajlake.config import BusConfig

config, group, topic, flag = sys.argv[1:]
consumer = open_bus(BusConfig.model_validate_json(config)).consumer(group, [topic])
while True:  # poll until SIGKILL; say once when the group gave this member partitions
    consumer.poll(timeout_s=0.2)
    if consumer.assignment() and not pathlib.Path(flag).exists():
        pathlib.Path(flag).write_text("assigned")
"""


def poll_until(
    consumers: Sequence[Consumer],
    done: Callable[[list[list[Message]]], bool],
    max_records: int = 500,
) -> list[list[Message]]:
    """Poll every consumer in turn until `done(received)`; Kafka members rejoin only by polling."""
    received: list[list[Message]] = [[] for _ in consumers]
    deadline = time.monotonic() + WAIT_S
    while not done(received):
        assert time.monotonic() < deadline, (
            f"gave up after {WAIT_S}s: received {[len(r) for r in received]}, "
            f"assignments {[sorted(c.assignment()) for c in consumers]}"
        )
        for consumer, got in zip(consumers, received, strict=True):
            got.extend(consumer.poll(max_records=max_records, timeout_s=0.1))
    return received


def produce(bus: Bus, topic: str, count: int, prefix: str = "r") -> list[bytes]:
    """`count` records keyed over 50 keys, in one flush; returns their values."""
    producer = bus.producer()
    values = [f"{prefix}-{i}".encode() for i in range(count)]
    for i, value in enumerate(values):
        producer.send(topic, value, key=f"key-{i % 50}".encode())
    producer.flush()
    producer.close()
    return values


def partitions_of(topic: str) -> set[TopicPartition]:
    return {(topic, p) for p in range(PARTITIONS)}


def is_split(a: Consumer, b: Consumer, topic: str) -> bool:
    """Both members own partitions, none twice, all of them between the two."""
    mine, theirs = a.assignment(), b.assignment()
    disjoint = bool(mine) and bool(theirs) and not mine & theirs
    return disjoint and mine | theirs == partitions_of(topic)


def next_offsets(messages: list[Message]) -> dict[TopicPartition, int]:
    ends: dict[TopicPartition, int] = {}
    for m in messages:
        ends[(m.topic, m.partition)] = max(ends.get((m.topic, m.partition), 0), m.offset + 1)
    return ends


def test_keyed_records_land_on_the_partition_of_their_key(bus: Bus, unique: str) -> None:
    topic = f"{unique}-keys"
    bus.create_topics([topic], PARTITIONS)
    keys = [f"key-{i}".encode() for i in range(100)]
    producer = bus.producer()
    for round_ in range(2):  # every key twice, in two flushes
        for key in keys:
            producer.send(topic, key + b"/%d" % round_, key=key)
        producer.flush()
    producer.close()

    consumer = bus.consumer(f"{unique}-g", [topic])
    [got] = poll_until([consumer], lambda r: len(r[0]) >= 2 * len(keys))
    consumer.close()

    assert Counter(m.key for m in got) == Counter({key: 2 for key in keys})
    for m in got:
        assert m.partition == partition_for(m.key, PARTITIONS)
        assert m.value.startswith(m.key + b"/")
    assert {m.partition for m in got} == set(range(PARTITIONS))  # keys spread out


def test_two_members_split_the_partitions_and_read_every_record_once(bus: Bus, unique: str) -> None:
    topic, group = f"{unique}-split", f"{unique}-g"
    bus.create_topics([topic], PARTITIONS)
    a, b = bus.consumer(group, [topic]), bus.consumer(group, [topic])
    poll_until([a, b], lambda _: is_split(a, b, topic))

    values = produce(bus, topic, 200)
    got_a, got_b = poll_until([a, b], lambda r: len(r[0]) + len(r[1]) >= len(values))

    assert {(m.topic, m.partition) for m in got_a} <= a.assignment()
    assert {(m.topic, m.partition) for m in got_b} <= b.assignment()
    assert sorted(m.value for m in got_a + got_b) == sorted(values)  # each exactly once

    b.close()  # a takes over b's partitions
    poll_until([a], lambda _: a.assignment() == partitions_of(topic))
    a.close()


def test_a_new_member_resumes_at_the_committed_offsets(bus: Bus, unique: str) -> None:
    topic, group = f"{unique}-resume", f"{unique}-g"
    bus.create_topics([topic], PARTITIONS)
    values = produce(bus, topic, 100)

    first = bus.consumer(group, [topic])
    [read_first] = poll_until([first], lambda r: len(r[0]) >= 40, max_records=10)
    first.commit(next_offsets(read_first))
    first.close()

    committed = bus.committed(group, [topic])
    assert committed == {tp: next_offsets(read_first).get(tp, 0) for tp in partitions_of(topic)}
    per_partition = Counter(partition_for(f"key-{i % 50}".encode(), PARTITIONS) for i in range(100))
    assert bus.end_offsets([topic]) == {(topic, p): per_partition[p] for p in range(PARTITIONS)}

    second = bus.consumer(group, [topic])
    [read_second] = poll_until([second], lambda r: len(r[0]) >= len(values) - len(read_first))
    assert second.poll(timeout_s=0.5) == []
    second.close()

    first_ids = {(m.partition, m.offset) for m in read_first}
    assert not first_ids & {(m.partition, m.offset) for m in read_second}  # nothing repeated
    assert sorted(m.value for m in read_first + read_second) == sorted(values)  # nothing lost


def test_seek_to_beginning_replays_everything(bus: Bus, unique: str) -> None:
    topic, group = f"{unique}-seek", f"{unique}-g"
    bus.create_topics([topic], PARTITIONS)
    values = sorted(produce(bus, topic, 50))

    consumer = bus.consumer(group, [topic])
    [read] = poll_until([consumer], lambda r: len(r[0]) >= len(values))
    consumer.commit(next_offsets(read))
    consumer.seek_to_beginning()  # partitions owned: rewinds them now
    [replayed] = poll_until([consumer], lambda r: len(r[0]) >= len(values))
    consumer.close()
    assert sorted(m.value for m in read) == sorted(m.value for m in replayed) == values

    fresh = bus.consumer(group, [topic])
    fresh.seek_to_beginning()  # before the first poll: no partitions yet, all committed
    [again] = poll_until([fresh], lambda r: len(r[0]) >= len(values))
    fresh.close()
    assert sorted(m.value for m in again) == values


def test_two_producer_processes_at_once_lose_nothing(
    bus: Bus, bus_config: BusConfig, unique: str
) -> None:
    topic, count = f"{unique}-procs", 1000
    bus.create_topics([topic], PARTITIONS)
    config = bus_config.model_dump_json()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PRODUCER_SCRIPT, config, topic, name, str(count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("p0", "p1")
    ]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready"
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        assert proc.wait(timeout=WAIT_S) == 0

    consumer = bus.consumer(f"{unique}-g", [topic])
    [got] = poll_until([consumer], lambda r: len(r[0]) >= 2 * count)
    consumer.close()
    expected = [f"{name}-{i}".encode() for name in ("p0", "p1") for i in range(count)]
    assert sorted(m.value for m in got) == sorted(expected)
    for p in range(PARTITIONS):
        offsets = sorted(m.offset for m in got if m.partition == p)
        assert offsets == list(range(len(offsets)))  # contiguous
    assert sum(bus.end_offsets([topic]).values()) == 2 * count


def test_a_topic_never_created_raises_topic_not_found(bus: Bus, unique: str) -> None:
    real, missing = f"{unique}-real", f"{unique}-missing"
    bus.create_topics([real], 2)
    producer = bus.producer()
    with pytest.raises(TopicNotFound, match="trajlake topics create"):
        producer.send(missing, b"lost")
    with pytest.raises(TopicNotFound):
        bus.consumer(f"{unique}-g", [real, missing])
    with pytest.raises(TopicNotFound):
        bus.end_offsets([missing])
    producer.close()
    topics = bus.list_topics()
    assert topics[real] == 2
    assert missing not in topics  # asking about it did not create it


def test_a_commit_for_a_lost_partition_does_not_overwrite_its_new_owner(
    bus: Bus, unique: str
) -> None:
    topic, group = f"{unique}-lost", f"{unique}-g"
    bus.create_topics([topic], PARTITIONS)
    produce(bus, topic, 100)
    a, b = bus.consumer(group, [topic]), bus.consumer(group, [topic])
    poll_until([a, b], lambda _: is_split(a, b, topic))
    mine, theirs = a.assignment(), b.assignment()

    b.commit(dict.fromkeys(theirs, 2))
    with pytest.raises(CommitFailed) as failed:
        a.commit(dict.fromkeys(partitions_of(topic), 1))  # stale: a lost `theirs`
    assert set(failed.value.partitions) == theirs
    assert bus.committed(group, [topic]) == dict.fromkeys(mine, 1) | dict.fromkeys(theirs, 2)
    a.close()
    b.close()


def test_a_member_that_stopped_polling_rereads_what_it_could_not_commit(
    tmp_path: Path, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rollout longer than the max poll interval costs its member the group; once back, it
    must read the uncommitted records again, or they would never be committed (embedded bus:
    Kafka's own client does this, after max.poll.interval.ms of 5 minutes)."""
    from trajlake.bus import embedded_consumer

    monkeypatch.setattr(embedded_consumer, "MAX_POLL_INTERVAL_S", 0.3)
    config = BusConfig(
        path=str(tmp_path / "bus.db"), session_timeout_ms=600, heartbeat_interval_ms=100
    )
    bus = open_bus(config)
    topic, group = f"{unique}-slow", f"{unique}-g"
    bus.create_topics([topic], 1)
    values = produce(bus, topic, 3)
    consumer = bus.consumer(group, [topic])
    [first] = poll_until([consumer], lambda r: len(r[0]) >= 3)
    time.sleep(1.5)  # processing, without a poll: the heartbeats stop, the session expires
    with pytest.raises(CommitFailed):
        consumer.commit(next_offsets(first))
    [again] = poll_until([consumer], lambda r: len(r[0]) >= 3)
    assert [m.value for m in again] == [m.value for m in first] == values
    consumer.commit(next_offsets(again))
    assert bus.committed(group, [topic]) == {(topic, 0): 3}
    consumer.close()
    bus.close()


def test_a_killed_members_partitions_are_taken_over(
    bus: Bus, bus_config: BusConfig, unique: str, tmp_path: Path
) -> None:
    topic, group = f"{unique}-kill", f"{unique}-g"
    bus.create_topics([topic], PARTITIONS)
    flag = tmp_path / "assigned"
    args = [bus_config.model_dump_json(), group, topic, str(flag)]
    member = subprocess.Popen([sys.executable, "-c", MEMBER_SCRIPT, *args])
    survivor = bus.consumer(group, [topic])
    try:
        poll_until(
            [survivor],
            lambda _: flag.exists() and 0 < len(survivor.assignment()) < PARTITIONS,
        )
        assert member.poll() is None
    finally:
        os.kill(member.pid, signal.SIGKILL)
        member.wait()

    poll_until([survivor], lambda _: survivor.assignment() == partitions_of(topic))
    values = produce(bus, topic, 40)
    [got] = poll_until([survivor], lambda r: len(r[0]) >= len(values))
    survivor.close()
    assert sorted(m.value for m in got) == sorted(values)


def test_a_record_over_the_limit_is_refused_alone(bus_config, unique: str) -> None:
    small = bus_config.model_copy(update={"max_record_bytes": 100_000})
    bus = open_bus(small)
    topic = f"{unique}-big"
    bus.create_topics([topic], 1)
    producer = bus.producer()
    producer.send(topic, b"before", key=b"k")
    with pytest.raises(RecordRejected, match="record for"):
        producer.send(topic, b"x" * 200_000, key=b"k")
    producer.send(topic, b"after", key=b"k")
    producer.flush()
    producer.close()
    consumer = bus.consumer(f"{unique}-g", [topic])
    [got] = poll_until([consumer], lambda r: len(r[0]) >= 2)
    consumer.close()
    bus.close()
    assert [m.value for m in got] == [b"before", b"after"]
