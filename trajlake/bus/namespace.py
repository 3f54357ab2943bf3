"""Topic and group names under a prefix, so several pipelines can share one Kafka cluster.

With `bus.namespace: prod` the `tasks` topic is `prod.tasks` on the broker and the `rollout1`
group is `prod.rollout1`; stages and the lake keep using the plain names.
"""

from __future__ import annotations

from collections.abc import Iterable

from trajlake.bus.base import Bus, Consumer, Message, Producer, TopicPartition
from trajlake.errors import CommitFailed, TopicNotFound


class NamespacedBus:
    """A `Bus` that adds `<namespace>.` to every topic and group name on the way in."""

    def __init__(self, inner: Bus, namespace: str):
        self._inner = inner
        self._prefix = f"{namespace}."

    def _name(self, name: str) -> str:
        return self._prefix + name

    def _unprefix(self, offsets: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        cut = len(self._prefix)
        return {(topic[cut:], part): n for (topic, part), n in offsets.items()}

    def create_topics(self, topics: Iterable[str], partitions: int) -> None:
        self._inner.create_topics([self._name(t) for t in topics], partitions)

    def list_topics(self) -> dict[str, int]:
        cut = len(self._prefix)
        listed = self._inner.list_topics().items()
        return {name[cut:]: n for name, n in listed if name.startswith(self._prefix)}

    def end_offsets(self, topics: Iterable[str]) -> dict[TopicPartition, int]:
        return self._unprefix(self._inner.end_offsets([self._name(t) for t in topics]))

    def committed(self, group: str, topics: Iterable[str]) -> dict[TopicPartition, int]:
        names = [self._name(t) for t in topics]
        return self._unprefix(self._inner.committed(self._name(group), names))

    def producer(self) -> Producer:
        return _Producer(self._inner.producer(), self._prefix)

    def consumer(self, group: str, topics: list[str]) -> Consumer:
        try:
            inner = self._inner.consumer(self._name(group), [self._name(t) for t in topics])
        except TopicNotFound as e:
            raise TopicNotFound(e.topic[len(self._prefix) :]) from None
        return _Consumer(inner, self._prefix)

    def close(self) -> None:
        self._inner.close()


class _Producer:
    def __init__(self, inner: Producer, prefix: str):
        self._inner = inner
        self._prefix = prefix

    def send(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        try:
            self._inner.send(self._prefix + topic, value, key)
        except TopicNotFound:
            raise TopicNotFound(topic) from None  # the name the user knows

    def flush(self) -> None:
        self._inner.flush()

    def close(self) -> None:
        self._inner.close()


class _Consumer:
    def __init__(self, inner: Consumer, prefix: str):
        self._inner = inner
        self._prefix = prefix
        self._cut = len(prefix)

    def poll(self, max_records: int = 500, timeout_s: float = 1.0) -> list[Message]:
        cut = self._cut
        return [
            Message(m.topic[cut:], m.partition, m.offset, m.key, m.value)
            for m in self._inner.poll(max_records, timeout_s)
        ]

    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        try:
            self._inner.commit({(self._prefix + t, p): n for (t, p), n in offsets.items()})
        except CommitFailed as e:
            raise CommitFailed([(t[self._cut :], p) for t, p in e.partitions]) from e

    def assignment(self) -> set[TopicPartition]:
        return {(t[self._cut :], p) for t, p in self._inner.assignment()}

    def seek_to_beginning(self) -> None:
        self._inner.seek_to_beginning()

    def close(self) -> None:
        self._inner.close()
