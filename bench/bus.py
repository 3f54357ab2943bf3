"""Run as: python bench/bus.py [--events N] [--partitions P] [--repos R] [--quick] [--profile]

Events/s through one stage hop (commits -> pass-through stage -> tasks) on each bus backend,
against raw kafka-python produce + consume of the same payloads on the same broker, this run.

A hop is `StageRunner.run` on a pre-loaded `commits` topic: poll, decode, process, lake write
(Parquet zstd, fsync, rename), produce, flush, commit. It is timed from the first record the
consumer hands back until every input is committed. Client start-up, the group join and the
first fetch come before that moment on both sides; they are printed as `join s`, not counted.
Goals (issue): the kafka hop costs under 2x raw kafka-python; the embedded hop >= 5,000 ev/s.
"""

from __future__ import annotations

import cProfile
import pstats
import random
import sys
import tempfile
import time
import uuid
from argparse import ArgumentParser, Namespace
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer
from kafka.record.util import crc32c_c

from trajlake.bus import Bus, Consumer, Message, open_bus
from trajlake.bus.tansu import tansu_broker
from trajlake.config import BusConfig, RunnerConfig
from trajlake.lake import Lake
from trajlake.runner import RETRY_TOPIC, RunStats, StageRunner
from trajlake.schemas import CommitEvent, Event, TaskEvent, make_event_id
from trajlake.stage import Stage

STAGE_NAME = "bench"
RUNNER = RunnerConfig(batch_size=500, poll_timeout_s=0.2)
WORDS = ("fix", "add", "the", "parser", "cache", "retry", "error", "handle", "test", "speed")


@dataclass
class Result:
    name: str
    events: int
    join_s: float
    seconds: float
    note: str = ""

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def commits(n: int, repos: int) -> list[CommitEvent]:
    """N commit records with ~1 KB of message text each, spread over `repos` repositories."""
    rng = random.Random(0)
    out = []
    for i in range(n):
        repo, sha = f"github.com/bench/repo{i % repos}", f"{i:040x}"
        out.append(
            CommitEvent(
                event_id=make_event_id(repo, sha),
                stage="bench",
                repo=repo,
                commit=sha,
                branch="main",
                message=" ".join(rng.choices(WORDS, k=180)),
                changed_files=[f"src/mod{i % 50}.py"],
            )
        )
    return out


def process(event: Event) -> list[Event]:
    """The cheapest real stage: one task per commit (tests/echo_stage.py without the sleep)."""
    return [
        TaskEvent(
            event_id=make_event_id(event.event_id, STAGE_NAME),
            parent_ids=[event.event_id],
            stage=STAGE_NAME,
            repo=event.repo,
            commit=event.commit,
            function_file="pkg/mod.py",
            function_name="f",
            line_start=1,
            line_end=2,
            change_type="error handling",
            request=f"Look at f for commit {event.commit}",
        )
    ]


class _FirstRecordBus:
    """The inner bus, whose consumers note when they first return records."""

    def __init__(self, inner: Bus):
        self._inner = inner
        self.first_record: float | None = None

    def __getattr__(self, name: str) -> object:  # every other Bus method, as the inner bus's
        return getattr(self._inner, name)

    def consumer(self, group: str, topics: list[str]) -> Consumer:
        return _FirstRecordConsumer(self._inner.consumer(group, topics), self)


class _FirstRecordConsumer:
    def __init__(self, inner: Consumer, bus: _FirstRecordBus):
        self._inner = inner
        self._bus = bus
        self.commit = inner.commit
        self.assignment = inner.assignment
        self.seek_to_beginning = inner.seek_to_beginning
        self.close = inner.close

    def poll(self, max_records: int = 500, timeout_s: float = 1.0) -> list[Message]:
        messages = self._inner.poll(max_records, timeout_s)
        if messages and self._bus.first_record is None:
            self._bus.first_record = time.perf_counter()
        return messages


def runner_hop(
    name: str, config: BusConfig, payloads: list[CommitEvent], args: Namespace
) -> Result:
    """Pre-load `commits`, then time one runner hop until every input is committed."""
    bus = open_bus(config)
    try:
        _preload(bus, payloads, args.partitions)
        timed = _FirstRecordBus(bus)
        stage = Stage(STAGE_NAME, ("commits",), ("tasks",), process)
        lake = Lake(Path(args.workdir) / f"lake-{config.kind}")
        runner = StageRunner(stage, timed, lake, RUNNER)  # type: ignore[arg-type]
        done: list[float] = []

        def on_progress(stats: RunStats) -> None:  # called after each commit
            if stats.produced >= len(payloads) and not done:
                done.append(time.perf_counter())
                runner.stop()

        profile = cProfile.Profile() if args.profile and config.kind == "embedded" else None
        start = time.perf_counter()
        if profile:
            stats = profile.runcall(runner.run, 30, on_progress)
            pstats.Stats(profile).sort_stats("cumulative").print_stats(20)
        else:
            stats = runner.run(idle_timeout_s=30, on_progress=on_progress)
        _check_hop(bus, stats, len(payloads), done)
        assert timed.first_record is not None
        return Result(name, len(payloads), timed.first_record - start, done[0] - timed.first_record)
    finally:
        bus.close()


def _preload(bus: Bus, payloads: list[CommitEvent], partitions: int) -> None:
    bus.create_topics(["commits", "tasks", "dlq", RETRY_TOPIC], partitions)  # as `topics create`
    producer = bus.producer()
    for event in payloads:
        producer.send("commits", event.encode(), event.partition_key())
    producer.close()


def _check_hop(bus: Bus, stats: RunStats, n: int, done: list[float]) -> None:
    """Stop the bench if the hop did not commit exactly the n inputs, without dead letters."""
    committed = bus.committed(STAGE_NAME, ["commits"])
    if not done or stats.dead_letters or sum(committed.values()) != n:
        sys.exit(f"the hop did not finish cleanly: {stats}, committed {committed}")
    if committed != bus.end_offsets(["commits"]):
        sys.exit("the hop finished but its committed offsets are short of the end offsets")


def raw_kafka(bootstrap: str, payloads: list[CommitEvent], partitions: int) -> Result:
    """kafka-python alone: produce the same bytes (acks=all), then consume and commit them all."""
    ns = f"raw{uuid.uuid4().hex[:8]}"
    bus = open_bus(BusConfig(kind="kafka", bootstrap_servers=bootstrap, namespace=ns))
    bus.create_topics(["commits"], partitions)
    bus.close()
    topic = f"{ns}.commits"
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    records = [(e.partition_key(), e.encode()) for e in payloads]
    start = time.perf_counter()
    for key, value in records:
        producer.send(topic, value=value, key=key)
    producer.flush()
    produce_s = time.perf_counter() - start
    producer.close()
    join_s, consume_s = _raw_consume(bootstrap, topic, f"{ns}.group", len(records))
    note = f"produce {produce_s:.2f} s + consume {consume_s:.2f} s"
    return Result("raw kafka-python", len(records), join_s, produce_s + consume_s, note)


def _raw_consume(bootstrap: str, topic: str, group: str, n: int) -> tuple[float, float]:
    """(start to first record, first record to last commit), committing once per poll."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    start, first, count = time.perf_counter(), 0.0, 0
    while count < n:
        batches = consumer.poll(timeout_ms=int(RUNNER.poll_timeout_s * 1000), max_records=500)
        got = sum(len(batch) for batch in batches.values())
        if got:
            first = first or time.perf_counter()
            consumer.commit()
            count += got
    end = time.perf_counter()
    consumer.close(autocommit=False)
    return first - start, end - first


def report(results: dict[str, Result], payload_bytes: int, args: Namespace) -> None:
    print(
        f"\n{args.events:,} CommitEvents of ~{payload_bytes:,} B on the bus, "
        f"{args.partitions} partitions, {args.repos} repos, batch {RUNNER.batch_size}"
    )
    print("counted: first record received -> every input committed ('join s' is not counted)")
    crc = "C (crc32c package)" if crc32c_c else "pure Python: `pip install crc32c` is ~3x faster"
    print(f"kafka-python record checksums (crc32c): {crc}")
    print(f"{'backend':<22}{'events':>8}{'join s':>9}{'seconds':>9}{'events/s':>10}")
    for r in (results[k] for k in ("raw", "kafka", "embedded") if k in results):
        row = f"{r.name:<22}{r.events:>8}{r.join_s:>9.2f}{r.seconds:>9.2f}{r.rate:>10,.0f}"
        print(f"{row}  {r.note}")
    raw, kafka, embedded = (results.get(k) for k in ("raw", "kafka", "embedded"))
    print()
    if raw and kafka:
        ratio = kafka.seconds / raw.seconds
        verdict = "ok" if ratio < 2 else "MISSED"
        print(f"runner kafka hop / raw kafka-python (time): {ratio:5.2f}x   goal < 2x   {verdict}")
    if embedded:
        verdict = "ok" if embedded.rate >= 5000 else "MISSED"
        print(f"embedded hop events/s: {embedded.rate:,.0f}   goal >= 5,000   {verdict}")
    if raw and embedded:
        print(f"embedded hop / raw kafka-python (time): {embedded.seconds / raw.seconds:5.2f}x")


def main() -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--repos", type=int, default=8, help="repositories the commits are from")
    parser.add_argument("--quick", action="store_true", help="3,000 events: a smoke run")
    parser.add_argument("--profile", action="store_true", help="cProfile the embedded hop")
    parser.add_argument("--skip-kafka", action="store_true", help="the embedded hop only")
    args = parser.parse_args()
    args.events = 3_000 if args.quick else args.events
    payloads = commits(args.events, args.repos)
    results: dict[str, Result] = {}
    with tempfile.TemporaryDirectory(prefix="trajlake-bench-") as workdir:
        args.workdir = workdir
        embedded = BusConfig(kind="embedded", path=f"{args.workdir}/bus.db")
        results["embedded"] = runner_hop("runner hop, embedded", embedded, payloads, args)
        if not args.skip_kafka:
            with tansu_broker(Path(args.workdir) / "tansu.log") as bootstrap:
                results["raw"] = raw_kafka(bootstrap, payloads, args.partitions)
                ns = f"b{uuid.uuid4().hex[:8]}"
                kafka = BusConfig(kind="kafka", bootstrap_servers=bootstrap, namespace=ns)
                results["kafka"] = runner_hop("runner hop, kafka", kafka, payloads, args)
    report(results, len(payloads[0].encode()), args)


if __name__ == "__main__":
    main()
