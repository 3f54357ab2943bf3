"""The event bus: one interface (base.py), an embedded SQLite log and a Kafka backend."""

from __future__ import annotations

from trajlake.bus.base import Bus, Consumer, Message, Producer, TopicPartition, partition_for
from trajlake.config import BusConfig


def open_bus(config: BusConfig) -> Bus:
    """The backend the config names."""
    if config.kind == "kafka":
        from trajlake.bus.kafka import KafkaBus

        return KafkaBus(config)
    from trajlake.bus.embedded import EmbeddedBus

    return EmbeddedBus(config)


__all__ = ["Bus", "Consumer", "Message", "Producer", "TopicPartition", "open_bus", "partition_for"]
