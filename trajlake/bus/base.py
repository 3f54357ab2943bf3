"""The bus interface every backend implements, and the partitioner they share.

A backend is a `Bus` that hands out producers and group consumers. Offsets are the Kafka
kind: a partition's records are numbered 0, 1, 2, … and a consumer group commits the *next*
offset it wants to read. Nothing commits automatically; the stage runner commits after its
outputs are durable (see trajlake.runner).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Message:
    """One record read from the bus."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


def partition_for(key: bytes | None, partitions: int, fallback: int = 0) -> int:
    """The partition a keyed record goes to: Kafka's default (murmur2), so both backends agree.

    Records without a key go to `fallback` (the caller rotates it).
    """
    if key is None:
        return fallback % partitions
    return _key_hash(key) % partitions


@lru_cache(maxsize=1 << 16)
def _key_hash(key: bytes) -> int:
    """murmur2 in kafka-python is pure Python (~5 µs a key); keys repeat (a repository's
    records share one), so each is hashed once."""
    from kafka.partitioner.default import murmur2  # kafka-python's import costs 0.25 s: when used

    return murmur2(key) & 0x7FFFFFFF


class Producer(Protocol):
    def send(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        """Queue a record; raises TopicNotFound for a topic that was never created, and
        RecordRejected for a record over `bus.max_record_bytes` (see trajlake.envelope)."""

    def flush(self) -> None:
        """Block until every queued record is durable in the log.

        Raises RecordsRejected (positions in send order since the previous flush) when the
        log refused some records for their own sake, BusError when it failed as a whole.
        """

    def close(self) -> None: ...


class Consumer(Protocol):
    def poll(self, max_records: int = 500, timeout_s: float = 1.0) -> list[Message]:
        """Next records from the partitions this member owns, in offset order per partition."""

    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit, per partition, the next offset the group should read.

        Only partitions this member still owns are committed, so a member that lost one in a
        rebalance cannot overwrite the new owner's progress; CommitFailed then names the lost
        ones (their records are re-read by the new owner from its last committed offset).
        """

    def assignment(self) -> set[TopicPartition]:
        """The partitions this member owns right now."""

    def seek_to_beginning(self) -> None:
        """Rewind every owned partition to its first record (committed offsets stay).

        Called before the group has assigned anything, it rewinds the first partitions assigned.
        """

    def close(self) -> None:
        """Leave the group so the other members take over at once."""


class Bus(Protocol):
    def create_topics(self, topics: Iterable[str], partitions: int) -> None:
        """Create the topics that do not exist yet; existing ones are left alone."""

    def list_topics(self) -> dict[str, int]:
        """Topic name -> partition count."""

    def end_offsets(self, topics: Iterable[str]) -> dict[TopicPartition, int]:
        """Per partition, the offset the next record will get."""

    def committed(self, group: str, topics: Iterable[str]) -> dict[TopicPartition, int]:
        """Per partition, the group's committed offset (0 where it never committed)."""

    def producer(self) -> Producer: ...

    def consumer(self, group: str, topics: list[str]) -> Consumer: ...

    def close(self) -> None: ...
