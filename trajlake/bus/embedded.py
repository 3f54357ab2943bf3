"""The embedded bus: a durable log in one SQLite file, shared by the processes of one machine.

Storage (schema, transactions, durability) is in sqlite_log.py, consumer groups in
embedded_consumer.py. Offsets per partition come from the `heads` table, bumped in the same
transaction that appends the records, so concurrent producers get contiguous offsets.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from trajlake.bus.base import TopicPartition, partition_for
from trajlake.bus.embedded_consumer import EmbeddedConsumer
from trajlake.bus.sqlite_log import (
    SqliteLog,
    append_records,
    group_offsets,
    topic_counts,
    topic_partitions,
)
from trajlake.config import BusConfig
from trajlake.errors import BusError, RecordRejected, TopicNotFound

MAX_BUFFERED = 10_000  # a producer flushes on its own once this many records wait


class EmbeddedBus:
    """The `Bus` on a SQLite file (`bus.path`); see the module docstring."""

    def __init__(self, config: BusConfig):
        self._config = config
        self._log = SqliteLog(config.path)

    def create_topics(self, topics: Iterable[str], partitions: int) -> None:
        if partitions < 1:
            raise BusError(f"a topic needs at least one partition, not {partitions}")
        with self._log.write() as db:
            for topic in topics:
                added = db.execute(
                    "INSERT OR IGNORE INTO topics VALUES (?, ?)", (topic, partitions)
                ).rowcount
                if added:
                    heads = [(topic, part) for part in range(partitions)]
                    db.executemany("INSERT INTO heads VALUES (?, ?, 0)", heads)

    def list_topics(self) -> dict[str, int]:
        with self._log.read() as db:
            return topic_counts(db)

    def end_offsets(self, topics: Iterable[str]) -> dict[TopicPartition, int]:
        with self._log.read() as db:
            wanted = set(topic_partitions(db, list(topics)))
            rows = db.execute("SELECT topic, part, next_offset FROM heads").fetchall()
        return {(topic, part): end for topic, part, end in rows if (topic, part) in wanted}

    def committed(self, group: str, topics: Iterable[str]) -> dict[TopicPartition, int]:
        with self._log.read() as db:
            committed = group_offsets(db, group)
            return {tp: committed.get(tp, 0) for tp in topic_partitions(db, list(topics))}

    def producer(self) -> EmbeddedProducer:
        return EmbeddedProducer(self._config)

    def consumer(self, group: str, topics: list[str]) -> EmbeddedConsumer:
        return EmbeddedConsumer(self._config, group, topics)

    def close(self) -> None:
        self._log.close()


class EmbeddedProducer:
    """Buffers records; `flush` appends the whole buffer in one transaction."""

    def __init__(self, config: BusConfig):
        self._log = SqliteLog(config.path)
        self._max_bytes = config.max_record_bytes
        self._lock = threading.RLock()
        self._buffer: list[tuple[str, int, bytes | None, bytes]] = []
        self._partitions: dict[str, int] = {}
        self._next_unkeyed: dict[str, int] = {}

    def send(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        if len(value) > self._max_bytes:  # the same limit a Kafka broker would apply
            raise RecordRejected(
                f"a {len(value):,}-byte record for {topic!r} is over bus.max_record_bytes="
                f"{self._max_bytes:,}"
            )
        with self._lock:
            count = self._partitions.get(topic) or self._lookup(topic)
            turn = self._next_unkeyed.get(topic, 0)
            if key is None:
                self._next_unkeyed[topic] = turn + 1
            self._buffer.append((topic, partition_for(key, count, turn), key, value))
            if len(self._buffer) >= MAX_BUFFERED:
                self.flush()

    def _lookup(self, topic: str) -> int:
        with self._log.read() as db:
            self._partitions = topic_counts(db)
        if topic not in self._partitions:
            raise TopicNotFound(topic)
        return self._partitions[topic]

    def flush(self) -> None:
        with self._lock:
            if not self._buffer:
                return
            by_partition: dict[TopicPartition, list[tuple[bytes | None, bytes]]] = {}
            for topic, part, key, value in self._buffer:
                by_partition.setdefault((topic, part), []).append((key, value))
            with self._log.write() as db:
                for (topic, part), items in by_partition.items():
                    append_records(db, topic, part, items)
            self._buffer.clear()

    def close(self) -> None:
        with self._lock:
            self.flush()
            self._log.close()
