"""The stage runner: poll → process → write lake files → produce → commit.

The runner is the only code that commits offsets. Its order makes delivery at-least-once and
results exactly-once: lake files are published (temp name, then rename) and outputs flushed to
the bus before the input offsets are committed, output ids are deterministic, lake file names are
derived from the input partition and first offset (a re-run overwrites the same file), and the
lake views deduplicate by `event_id`. A crash at any point is recovered by restarting.

Records are processed in a window: up to `batch_size` records are held at once, and for a
stage marked `concurrent`, `concurrency` of them run in threads; each partition's finished
prefix is published in input order while the rest keep running, so one slow rollout does not
idle the others.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from trajlake import envelope
from trajlake.bus import Bus, Consumer, Message, Producer, TopicPartition, group_lag
from trajlake.config import BusConfig, RunnerConfig
from trajlake.delivery import DLQ_TOPIC, Delivery, Handled
from trajlake.errors import CommitFailed, OutageOutlasted
from trajlake.lake import Lake
from trajlake.patience import Interrupted, patiently
from trajlake.redact import Redactor
from trajlake.schemas import DeadLetter, DlqResolved, DlqRetry, Event, make_event_id
from trajlake.stage import Stage
from trajlake.written import WrittenIndex

log = logging.getLogger(__name__)

RETRY_TOPIC = "dlq.retry"
RESOLVED_TOPIC = "dlq.resolved"
_MAX_ERROR_CHARS = 4000


@dataclass
class RunStats:
    consumed: int = 0
    produced: int = 0
    dead_letters: int = 0
    skipped: int = 0  # inputs whose outputs were already in the lake


class StageRunner:
    """Runs one `Stage` against a bus and a lake until stopped (or idle)."""

    def __init__(
        self,
        stage: Stage,
        bus: Bus,
        lake: Lake,
        config: RunnerConfig,
        bus_config: BusConfig | None = None,
    ):
        self.stage = stage
        self.bus = bus
        self.lake = lake
        self.config = config
        self.stats = RunStats()
        self._stopping = threading.Event()
        threads = config.concurrency if stage.concurrent else 1
        self._pool = ThreadPoolExecutor(threads) if threads > 1 else None
        self._window: dict[TopicPartition, deque[tuple[Message, Future]]] = {}
        self._held = 0
        self._lake_lock = threading.Lock()
        self._redactor = Redactor()
        self._written = WrittenIndex(stage, lake, self._lake_lock)
        self._delivery = Delivery(
            stage.name, lake, self._lake_lock, bus_config or BusConfig(), self._dead_letter
        )

    def stop(self) -> None:
        """Finish what is in flight, publish and commit it, then return from `run` (signal-safe)."""
        self._stopping.set()

    def run(
        self,
        idle_timeout_s: float | None = None,
        on_progress: Callable[[RunStats], None] | None = None,
    ) -> RunStats:
        """Process records until `stop()`, or until nothing arrived for `idle_timeout_s` and
        the group has nothing left to commit.

        Time spent without partitions (joining a group, a rebalance) does not count as idle,
        nor does time in which other members' partitions hold uncommitted records: a member
        killed mid-run keeps its partitions until `bus.session_timeout_ms`, and then they
        come to this one.
        """
        topics = subscriptions(self.stage, self.bus)
        consumer = self.bus.consumer(self.stage.name, topics)
        producer = self.bus.producer()
        last_activity = time.monotonic()
        try:
            while not self._stopping.is_set():
                if self._fill(consumer) or self._held or not consumer.assignment():
                    last_activity = time.monotonic()
                if self._publish_ready(producer, consumer) and on_progress:
                    on_progress(self.stats)
                idle = time.monotonic() - last_activity
                if idle_timeout_s is not None and not self._held and idle >= idle_timeout_s:
                    if not self._group_has_work(topics):
                        break
                    last_activity = time.monotonic()
            self._drain(producer, consumer)
            if on_progress:
                on_progress(self.stats)
        finally:
            consumer.close()
            producer.close()
            if self._pool:
                self._pool.shutdown(wait=True)
        return self.stats

    def _group_has_work(self, topics: list[str]) -> bool:
        """Whether the group has records not yet committed: another member is working on
        them, a dead one still holds them, or they have just arrived here."""
        lag = group_lag(self.bus, self.stage.name, topics)
        if lag:
            log.info("%s: idle, but its group has %d records to commit", self.stage.name, lag)
        return lag > 0

    # -- window --------------------------------------------------------------------------

    def _fill(self, consumer: Consumer) -> int:
        """Poll for as many records as the window has room for and start them."""
        room = self.config.batch_size - self._held
        if room <= 0:
            self._wait_for_any()
            return 0
        running = self._pool is not None and self._held > 0
        timeout = 0.02 if running else self.config.poll_timeout_s
        messages = consumer.poll(max_records=room, timeout_s=timeout)
        if messages:
            self._written.cover(consumer, {(m.topic, m.partition) for m in messages})
        for msg in messages:
            key = (msg.topic, msg.partition)
            self._window.setdefault(key, deque()).append((msg, self._submit(msg)))
        self._held += len(messages)
        self.stats.consumed += len(messages)
        return len(messages)

    def _submit(self, msg: Message) -> Future:
        if self._pool is not None:
            return self._pool.submit(self._handle, msg)
        future: Future = Future()
        future.set_result(self._handle(msg))
        return future

    def _wait_for_any(self) -> None:
        pending = [f for q in self._window.values() for _, f in q if not f.done()]
        if pending:
            wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)

    def _drain(self, producer: Producer, consumer: Consumer) -> None:
        pending = [f for q in self._window.values() for _, f in q]
        wait(pending)
        self._publish_ready(producer, consumer)

    def _take_ready(self) -> dict[TopicPartition, list[Handled]]:
        """Per partition, the finished records at the head of the window, in offset order."""
        ready: dict[TopicPartition, list[Handled]] = {}
        for tp, queue in self._window.items():
            while queue and queue[0][1].done() and not queue[0][1].result().undone:
                _, future = queue.popleft()
                ready.setdefault(tp, []).append(future.result())
        self._held -= sum(len(items) for items in ready.values())
        return ready

    # -- delivery: lake, then bus, then offsets ------------------------------------------

    def _publish_ready(self, producer: Producer, consumer: Consumer) -> bool:
        ready = self._take_ready()
        if not ready:
            return False
        for items in ready.values():  # and what was written since these records started
            for item in items:
                item.written |= self._written.topics(item.event)
        rejected = self._delivery.deliver(producer, ready)  # a bus or disk failure raises
        for items in ready.values():
            for item in items:
                self._written.remember(item)
                self.stats.produced += len(item.outputs)
                self.stats.dead_letters += any(isinstance(e, DeadLetter) for e in item.outputs)
        self.stats.dead_letters += rejected
        self.stats.skipped = self._written.reused
        self.stats.produced += rejected
        try:
            consumer.commit({tp: items[-1].message.offset + 1 for tp, items in ready.items()})
        except CommitFailed as e:  # a rebalance: the new owner redoes these, with the same ids
            log.warning("%s", e)
        return True

    # -- one record ----------------------------------------------------------------------

    def _handle(self, msg: Message) -> Handled:
        """Decode and process one record; any failure becomes a dead letter (record boundary)."""
        item = Handled(message=msg, origin=msg, event=None)
        try:
            if msg.topic == RETRY_TOPIC:
                retry = DlqRetry.decode(msg.value)
                if retry.stage_to != self.stage.name:
                    return item  # another stage's dead letter
                item.retry_id = retry.event_id
                item.origin = Message(
                    retry.source_topic,
                    retry.source_partition,
                    retry.source_offset,
                    None,
                    retry.payload,
                )
            item.event = envelope.decode(item.origin.topic, item.origin.value, self.lake)
            item.written = self._written.topics(item.event)
            prior = self._written.prior_outputs(item) if self.stage.skip_if_done else []
            item.outputs = prior or self._patiently(item.event)
            if item.retry_id:
                item.outputs.append(self._resolved(item))
        except Interrupted:  # stopping mid-outage: left uncommitted, read again next run
            item.undone = True
        except Exception as error:  # noqa: BLE001 - the record boundary: nothing escapes it
            item.outputs = [self._dead_letter(item, error)]
        return item

    def _patiently(self, event: Event) -> list[Event]:
        """`_process`, run again while the infrastructure fails (see trajlake.patience)."""
        what = f"{self.stage.name}: {type(event).__name__} {event.event_id}"
        return patiently(lambda: self._process(event), self.config, self._stopping, what)

    def _process(self, event: Event) -> list[Event]:
        outputs = self.stage.process(event)
        self._check_outputs(outputs)
        return [self._redactor.redact_event(e) for e in outputs]

    def _check_outputs(self, outputs: list[Event]) -> None:
        for event in outputs:
            if event.topic() not in self.stage.outputs:
                raise ValueError(
                    f"stage {self.stage.name} emitted a {type(event).__name__} for topic "
                    f"{event.topic()!r}, which is not among its outputs {self.stage.outputs}"
                )

    def _dead_letter(self, item: Handled, error: Exception) -> DeadLetter:
        """Why the record failed, with its bytes as first read; a failed retry adds a row."""
        origin, event = item.origin, item.event
        retried = (item.retry_id,) if item.retry_id else ()
        named = error.cause if isinstance(error, OutageOutlasted) else error  # what was down
        return DeadLetter(
            event_id=make_event_id(
                DLQ_TOPIC, self.stage.name, origin.topic, origin.partition, origin.offset, *retried
            ),
            parent_ids=[event.event_id] if event else [],
            stage=self.stage.name,
            repo=event.repo if event else "",
            commit=event.commit if event else "",
            source_topic=origin.topic,
            source_partition=origin.partition,
            source_offset=origin.offset,
            error_type=type(named).__name__,
            error=str(error)[:_MAX_ERROR_CHARS],
            payload=origin.value,
        )

    def _resolved(self, item: Handled) -> DlqResolved:
        """The mark that a retried dead letter went through (`trajlake dlq list`)."""
        origin, event = item.origin, item.event
        return DlqResolved(
            event_id=make_event_id(RESOLVED_TOPIC, item.retry_id),
            parent_ids=[item.retry_id],
            stage=self.stage.name,
            repo=event.repo if event else "",
            commit=event.commit if event else "",
            retry_id=item.retry_id,
            dead_letter_id=make_event_id(
                DLQ_TOPIC, self.stage.name, origin.topic, origin.partition, origin.offset
            ),
            source_topic=origin.topic,
            source_partition=origin.partition,
            source_offset=origin.offset,
        )


def subscriptions(stage: Stage, bus: Bus) -> list[str]:
    """The topics a stage's group reads: its inputs, and the retry topic when it exists (each
    stage takes the dead letters `trajlake dlq retry` sends back to it)."""
    if RETRY_TOPIC in bus.list_topics():
        return [*stage.inputs, RETRY_TOPIC]
    log.warning(
        "topic %s does not exist: dead letters sent back by `trajlake dlq retry` will not "
        "reach stage %s; run `trajlake topics create`",
        RETRY_TOPIC,
        stage.name,
    )
    return list(stage.inputs)
