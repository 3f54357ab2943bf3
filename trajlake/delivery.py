"""Delivery of finished records: their outputs to the lake, then to the bus, record by record.

A record whose outputs cannot be written (they do not fit their table) or published (the bus
refuses them) becomes a dead letter with the reason, and the others go on: one record never
stops a stage. Failures that are not about a record (the disk or the broker is gone) raise,
and the stage stops with an error that says what to fix.

Order: every output is written to the lake first; the bus record then carries either the
whole event or, when it is bigger than the bus takes, a claim check on that lake file
(trajlake.envelope). Only after the flush does the runner commit the inputs' offsets.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from trajlake import envelope
from trajlake.bus import Message, Producer, TopicPartition
from trajlake.config import BusConfig
from trajlake.errors import BusError, RecordRejected, RecordsRejected, SchemaError
from trajlake.lake import Lake
from trajlake.lake.claims import relative_path
from trajlake.lake.store import events_table
from trajlake.schemas import DeadLetter, Event, make_event_id

DLQ_TOPIC = "dlq"


@dataclass
class Handled:
    """One record after its stage ran: where it came from and what it made.

    `origin` is where a dead letter says the record was read: the message itself, or for a
    record sent again by `trajlake dlq retry`, where it was first read.
    """

    message: Message
    origin: Message
    event: Event | None
    outputs: list[Event] = field(default_factory=list)
    retry_id: str = ""
    written: frozenset[str] = frozenset()  # topics whose rows for this input the lake holds
    undone: bool = False  # the stage stopped while it waited out an outage: not to commit


DeadLetterFn = Callable[[Handled, Exception], DeadLetter]
FileKey = tuple[str, str]  # (topic, repo) -> the file, relative to the lake root


class Delivery:
    """Writes and publishes a window's finished records (see the module docstring)."""

    def __init__(
        self, stage: str, lake: Lake, lock: threading.Lock, bus: BusConfig, dead: DeadLetterFn
    ):
        self.stage = stage
        self.lake = lake
        self.lock = lock
        self.bus = bus
        self.dead_letter = dead

    def deliver(self, producer: Producer, ready: dict[TopicPartition, list[Handled]]) -> int:
        """Lake, then bus, for every record in `ready`; returns the dead letters it added."""
        sent: list[Handled] = []
        rejected: dict[int, tuple[Handled, str]] = {}
        for items in ready.values():
            files = self._write(batch_name(self.stage, items[0].message), items)
            for item in items:
                why = self._send(producer, item, files, sent)
                if why:
                    rejected[id(item)] = (item, why)
        try:
            producer.flush()
        except RecordsRejected as e:
            for position, why in e.rejected.items():
                rejected.setdefault(id(sent[position]), (sent[position], why))
        if rejected:
            self._dead_letter_rejected(producer, list(rejected.values()))
        return len(rejected)

    def _write(self, name: str, items: list[Handled]) -> dict[FileKey, str]:
        """Each output topic's records of one partition in one file per repo; a record whose
        outputs do not fit their table is replaced by its dead letter."""
        while True:
            try:
                return self._write_topics(name, items)
            except SchemaError:
                if not self._isolate_unfit(items):
                    raise  # not any one record's fault: the table schema itself

    def _write_topics(self, name: str, items: list[Handled]) -> dict[FileKey, str]:
        """Rows the lake does not hold yet, once each, in files named by their content: an
        input delivered twice (a producer that died between flush and commit) adds no row, and
        a batch never overwrites a file holding other rows."""
        by_topic: dict[str, dict[str, Event]] = {}
        for item in items:
            for event in item.outputs:
                if event.topic() not in item.written:
                    by_topic.setdefault(event.topic(), {}).setdefault(event.event_id, event)
        if not by_topic:
            return {}
        ids = sorted(i for events in by_topic.values() for i in events)
        name = f"{name}-{make_event_id(*ids)[:12]}"
        files: dict[FileKey, str] = {}
        for topic, unique in by_topic.items():
            events = list(unique.values())
            with self.lock:
                paths = self.lake.write(topic, events, name=name)
            repos = sorted({e.repo for e in events})
            for repo, path in zip(repos, paths, strict=True):
                files[(topic, repo)] = relative_path(self.lake, path)
        return files

    def _isolate_unfit(self, items: list[Handled]) -> bool:
        found = False
        for item in items:
            topics = {e.topic() for e in item.outputs}
            for topic in topics:
                try:
                    events_table(topic, [e for e in item.outputs if e.topic() == topic])
                except SchemaError as error:
                    item.outputs = [self.dead_letter(item, error)]
                    found = True
                    break
        return found

    def _send(
        self, producer: Producer, item: Handled, files: dict[FileKey, str], sent: list[Handled]
    ) -> str:
        """Send the record's outputs; the reason one was refused, or '' when all were queued."""
        for event in item.outputs:
            try:
                file = files.get((event.topic(), event.repo), "")
                value = envelope.encode(
                    event, file, self.bus.max_record_bytes, self.bus.claim_check
                )
                producer.send(event.topic(), value, event.partition_key())
            except RecordRejected as error:
                return str(error)
            sent.append(item)
        return ""

    def _dead_letter_rejected(
        self, producer: Producer, rejected: list[tuple[Handled, str]]
    ) -> None:
        """Dead letters for records the bus refused: lake, then bus; a failure here stops."""
        letters = [self.dead_letter(item, RecordRejected(why)) for item, why in rejected]
        name = batch_name(self.stage, rejected[0][0].message) + "-rejected"
        try:
            with self.lock:
                write_and_send(self.lake, producer, self.bus, DLQ_TOPIC, letters, name)
        except (BusError, SchemaError) as e:
            raise BusError(
                f"the bus refused {len(letters)} record(s) and then their dead letters too "
                f"({e}); check the broker's limits against bus.max_record_bytes"
            ) from e


def write_and_send(
    lake: Lake, producer: Producer, bus: BusConfig, topic: str, events: list[Event], name: str
) -> None:
    """Events of one topic to the lake (file `name`), then to the bus (claim checks where they
    are too big), then flushed: for producers outside a stage (replay, dead-letter retry)."""
    paths = lake.write(topic, events, name=name)
    files = dict(zip(sorted({e.repo for e in events}), paths, strict=True))
    for event in events:
        file = relative_path(lake, files[event.repo])
        value = envelope.encode(event, file, bus.max_record_bytes, bus.claim_check)
        producer.send(topic, value, event.partition_key())
    producer.flush()


def batch_name(stage: str, first: Message) -> str:
    """The lake file name of a batch: from its input partition and first offset, so a re-run
    of the same input overwrites the same file."""
    return f"{stage}-{first.topic}-p{first.partition}-o{first.offset:012d}"
