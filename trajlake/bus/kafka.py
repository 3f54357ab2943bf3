"""The Kafka bus: kafka-python against any Kafka-protocol broker (Apache Kafka, Redpanda, Tansu).

Topics are created explicitly and checked before use: some brokers (Tansu, Kafka with
`auto.create.topics.enable`) create a topic the first time a client asks for its metadata,
which would hide a misspelt topic name behind an empty, freshly created one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from kafka import (
    ConsumerRebalanceListener,
    KafkaAdminClient,
    KafkaConsumer,
    KafkaProducer,
    OffsetAndMetadata,
    OffsetSpec,
)
from kafka import TopicPartition as KafkaTopicPartition
from kafka import errors as kafka_errors
from kafka.producer.future import FutureRecordMetadata

from trajlake.bus.base import Message, TopicPartition
from trajlake.config import BusConfig
from trajlake.errors import BusError, CommitFailed, RecordRejected, RecordsRejected, TopicNotFound

T = TypeVar("T")

CLIENT_ID = "trajlake"
HIGHWATER_TIMEOUT_S = 10.0  # bound on reading high watermarks for end_offsets
#: kafka-python 3.0 drops a group join that completes between two polls and sends another
#: (see dpkp/kafka-python#2855): a member polled with short timeouts whose join takes longer
#: (a loaded machine; Tansu holds each join 3 s) can rejoin forever without partitions. So a
#: member that is joining its group polls at least this long, which lets the join complete
#: inside a poll (the Java client, too, polls long while it has nothing to fetch).
JOINING_POLL_S = 5.0
# What a commit raises when the group rebalanced under it.
REBALANCED = (
    kafka_errors.CommitFailedError,
    kafka_errors.RebalanceInProgressError,
    kafka_errors.IllegalGenerationError,
    kafka_errors.UnknownMemberIdError,
)
# What a broker or the client says about one record, not about the bus: that record is refused.
RECORD_ERRORS = (
    kafka_errors.MessageSizeTooLargeError,
    kafka_errors.RecordListTooLargeError,
    kafka_errors.InvalidRecordError,
    kafka_errors.CorruptRecordError,
)
# Room for the record batch header, the record's own framing and its key.
RECORD_OVERHEAD_BYTES = 16 * 1024


def _connect(config: BusConfig, factory: Callable[..., T], **options: object) -> T:
    try:
        return factory(bootstrap_servers=config.bootstrap_servers.split(","), **options)
    except kafka_errors.KafkaError as e:
        raise BusError(
            f"cannot reach the Kafka broker at {config.bootstrap_servers}: {e}; "
            "start it or set bus.bootstrap_servers"
        ) from e


class KafkaBus:
    """The `Bus` on a Kafka-protocol broker (`bus.bootstrap_servers`)."""

    def __init__(self, config: BusConfig):
        self._config = config
        self._lock = threading.Lock()  # the admin client is shared by this bus's producers
        self._admin: KafkaAdminClient = _connect(config, KafkaAdminClient, client_id=CLIENT_ID)

    def create_topics(self, topics: Iterable[str], partitions: int) -> None:
        existing = self.list_topics()
        missing = [topic for topic in dict.fromkeys(topics) if topic not in existing]
        if not missing:
            return
        spec = {"num_partitions": partitions, "replication_factor": -1}
        with self._lock:
            result = self._admin.create_topics(
                {topic: spec for topic in missing}, raise_errors=False, wait_for_metadata=True
            )
        for topic in result["topics"]:
            error = kafka_errors.for_code(topic["error_code"])
            if error not in (kafka_errors.NoError, kafka_errors.TopicAlreadyExistsError):
                raise BusError(
                    f"the broker refused to create topic {topic['name']!r}: "
                    f"{error.__name__} {topic['error_message'] or ''}"
                )

    def list_topics(self) -> dict[str, int]:
        with self._lock:
            described = self._admin.describe_topics()  # all topics: creates none
        return {t["name"]: len(t["partitions"]) for t in described if not t["is_internal"]}

    def end_offsets(self, topics: Iterable[str]) -> dict[TopicPartition, int]:
        tps = self._partitions(topics)
        with self._lock:
            listed = self._admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in tps})
        ends = {tp: listed[tp].offset for tp in tps}
        return {(tp.topic, tp.partition): end for tp, end in self._high_watermarks(ends).items()}

    def _high_watermarks(
        self, listed: dict[KafkaTopicPartition, int]
    ) -> dict[KafkaTopicPartition, int]:
        """Correct ListOffsets(latest) with the high watermark that a fetch reports.

        Tansu answers ListOffsets with the base offset of the last batch + 1, which is short
        of the end when that batch holds several records; a fetch from one below that offset
        returns the true high watermark. On Apache Kafka both agree and this costs one fetch.
        """
        nonempty = {tp: end for tp, end in listed.items() if end > 0}
        if not nonempty:
            return listed
        probe = _connect(self._config, KafkaConsumer, enable_auto_commit=False)
        try:
            probe.assign(list(nonempty))
            for tp, end in nonempty.items():
                probe.seek(tp, end - 1)
            deadline = time.monotonic() + HIGHWATER_TIMEOUT_S
            while time.monotonic() < deadline:
                probe.poll(timeout_ms=200)
                marks = {tp: probe.highwater(tp) for tp in nonempty}
                if None not in marks.values():
                    return listed | {tp: max(mark, listed[tp]) for tp, mark in marks.items()}
        finally:
            probe.close()
        raise BusError(f"the broker at {self._config.bootstrap_servers} did not answer a fetch")

    def committed(self, group: str, topics: Iterable[str]) -> dict[TopicPartition, int]:
        tps = self._partitions(topics)
        with self._lock:
            offsets = self._admin.list_group_offsets({group: tps}).get(group, {})
        return {
            (tp.topic, tp.partition): max(offsets[tp].offset, 0) if tp in offsets else 0
            for tp in tps
        }

    def _partitions(self, topics: Iterable[str]) -> list[KafkaTopicPartition]:
        known = self.list_topics()
        for topic in topics:
            if topic not in known:
                raise TopicNotFound(topic)
        return [KafkaTopicPartition(t, p) for t in dict.fromkeys(topics) for p in range(known[t])]

    def producer(self) -> KafkaBusProducer:
        return KafkaBusProducer(self._config, self.list_topics)

    def consumer(self, group: str, topics: list[str]) -> KafkaBusConsumer:
        self._partitions(topics)
        return KafkaBusConsumer(self._config, group, topics)

    def close(self) -> None:
        with self._lock:
            self._admin.close()


class KafkaBusProducer:
    """acks=all and Kafka's default (murmur2) partitioner, so keys land where partition_for says."""

    def __init__(self, config: BusConfig, list_topics: Callable[[], dict[str, int]]):
        self._list_topics = list_topics
        self._known: set[str] = set()
        self._pending: list[FutureRecordMetadata] = []  # records sent since the last flush
        self._producer: KafkaProducer = _connect(
            config,
            KafkaProducer,
            acks="all",
            client_id=CLIENT_ID,
            compression_type=None if config.compression == "none" else config.compression,
            max_request_size=config.max_record_bytes + RECORD_OVERHEAD_BYTES,
        )

    def send(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        if topic not in self._known:
            self._known = set(self._list_topics())
            if topic not in self._known:
                raise TopicNotFound(topic)
        try:
            self._pending.append(self._producer.send(topic, value=value, key=key))
        except RECORD_ERRORS as e:
            raise RecordRejected(f"a {len(value):,}-byte record for {topic!r}: {e}") from e
        except kafka_errors.KafkaError as e:
            raise BusError(f"cannot queue a record for {topic!r}: {e}") from e

    def flush(self) -> None:
        """Block until every record sent so far is acknowledged.

        Raises RecordsRejected when the broker refused some records for their own sake (the
        others are durable), BusError when records were lost for any other reason.
        """
        pending, self._pending = self._pending, []
        self._producer.flush()
        refused: dict[int, str] = {}
        for i, future in enumerate(pending):
            if future.succeeded():
                continue
            if not isinstance(future.exception, RECORD_ERRORS):
                raise BusError(
                    f"records were not written ({future.exception or 'no acknowledgement'}); "
                    "check the broker, then run the stage again"
                )
            refused[i] = str(future.exception)
        if refused:
            raise RecordsRejected(refused)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._producer.close()


class KafkaBusConsumer:
    """A group member with manual commits, starting from the earliest offset in a new group."""

    def __init__(self, config: BusConfig, group: str, topics: list[str]):
        self._group = group
        self._rewind_pending = False
        self._consumer: KafkaConsumer = _connect(
            config,
            KafkaConsumer,
            group_id=group,
            client_id=CLIENT_ID,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=config.session_timeout_ms,
            heartbeat_interval_ms=config.heartbeat_interval_ms,
        )
        self._consumer.subscribe(topics, listener=_OnAssign(self._on_assigned))

    def poll(self, max_records: int = 500, timeout_s: float = 1.0) -> list[Message]:
        if self._joining():
            timeout_s = max(timeout_s, JOINING_POLL_S)
        try:
            batches = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        except kafka_errors.KafkaError as e:
            raise BusError(f"poll for group {self._group!r} failed: {e}") from e
        return [
            Message(r.topic, r.partition, r.offset, r.key, r.value)
            for tp in sorted(batches)
            for r in batches[tp]
        ]

    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit the offsets of the partitions this member still owns.

        As on the embedded bus, the owned partitions are committed and `CommitFailed` names
        the lost ones. If the broker rejects the commit because the group rebalanced under it,
        nothing is committed and `CommitFailed` names every partition.
        """
        owned = self.assignment()
        kept = {
            KafkaTopicPartition(*tp): OffsetAndMetadata(offset, "", -1)
            for tp, offset in offsets.items()
            if tp in owned
        }
        try:
            if kept:
                self._consumer.commit(kept)
        except REBALANCED as e:
            raise CommitFailed(sorted(offsets)) from e
        except kafka_errors.KafkaError as e:
            raise BusError(f"commit for group {self._group!r} failed: {e}") from e
        lost = sorted(set(offsets) - owned)
        if lost:
            raise CommitFailed(lost)

    def assignment(self) -> set[TopicPartition]:
        return {(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def _joining(self) -> bool:
        """No partitions yet, or the group is rebalancing (the coordinator is kafka-python's
        own; it has no public handle)."""
        coordinator = getattr(self._consumer, "_coordinator", None)
        rejoin = coordinator is not None and coordinator.need_rejoin()
        return rejoin or not self._consumer.assignment()

    def seek_to_beginning(self) -> None:
        """Rewind the owned partitions; before the group gave any, rewind the first it gives."""
        owned = self._consumer.assignment()
        if owned:
            self._consumer.seek_to_beginning(*owned)
        else:
            self._rewind_pending = True

    def _on_assigned(self, assigned: list[KafkaTopicPartition]) -> None:
        if self._rewind_pending and assigned:
            self._rewind_pending = False
            self._consumer.seek_to_beginning(*assigned)

    def close(self) -> None:
        self._consumer.close(autocommit=False)


class _OnAssign(ConsumerRebalanceListener):
    """Calls back when the group assigns partitions, before anything is fetched from them."""

    def __init__(self, callback: Callable[[list[KafkaTopicPartition]], None]):
        self._callback = callback

    def on_partitions_revoked(self, revoked: list[KafkaTopicPartition]) -> None:
        pass

    def on_partitions_assigned(self, assigned: list[KafkaTopicPartition]) -> None:
        self._callback(assigned)
