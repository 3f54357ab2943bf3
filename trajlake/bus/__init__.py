"""The event bus: one interface (base.py), an embedded SQLite log and a Kafka backend."""

from __future__ import annotations

from collections.abc import Iterable

from trajlake.bus.base import Bus, Consumer, Message, Producer, TopicPartition, partition_for
from trajlake.config import BusConfig


def open_bus(config: BusConfig, topics: Iterable[str] = ()) -> Bus:
    """The backend the config names, under its namespace when one is set.

    On the embedded bus `topics` are created (with `bus.partitions`) if missing: a local log,
    where that is harmless. On Kafka topics are made once, explicitly (`trajlake topics
    create`), so there `topics` are left alone and a missing one is an error when used.
    """
    if config.kind == "kafka":
        from trajlake.bus.kafka import KafkaBus

        bus: Bus = KafkaBus(config)
    else:
        from trajlake.bus.embedded import EmbeddedBus

        bus = EmbeddedBus(config)
    if config.namespace:
        from trajlake.bus.namespace import NamespacedBus

        bus = NamespacedBus(bus, config.namespace)
    if config.kind == "embedded" and topics:
        try:
            bus.create_topics(list(topics), config.partitions)
        except BaseException:
            bus.close()
            raise
    return bus


def group_lag(bus: Bus, group: str, topics: list[str] | tuple[str, ...]) -> int:
    """How many records on `topics` the consumer group has not committed yet."""
    done = bus.committed(group, topics)
    return sum(end - done.get(tp, 0) for tp, end in bus.end_offsets(topics).items())


__all__ = [
    "Bus",
    "Consumer",
    "Message",
    "Producer",
    "TopicPartition",
    "group_lag",
    "open_bus",
    "partition_for",
]
