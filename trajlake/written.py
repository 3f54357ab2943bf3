"""What the lake already holds of one stage's work, so that nothing is written twice.

Delivery is at-least-once: a producer that died between its flush and its commit sends the
same events again, and a rebalance hands uncommitted records to another member. The index
maps each input event id to the output topics where this stage's rows for it already are.
A record found there is not written again (its outputs are only re-sent), and a stage marked
`skip_if_done` re-sends them from the lake instead of redoing expensive work (a rollout).
"""

from __future__ import annotations

import threading

from trajlake.bus import Consumer, TopicPartition
from trajlake.delivery import DLQ_TOPIC, Handled
from trajlake.lake import Lake
from trajlake.schemas import Event, table_name
from trajlake.stage import Stage


class WrittenIndex:
    """Input event id -> topics holding this stage's outputs for it (in the lake)."""

    def __init__(self, stage: Stage, lake: Lake, lock: threading.Lock):
        self.stage = stage
        self.lake = lake
        self.lock = lock
        self.outputs = [topic for topic in stage.outputs if topic != DLQ_TOPIC]
        self._topics: dict[str, set[str]] = {}
        self._loaded_for: set[TopicPartition] | None = None
        self.reused = 0  # inputs whose outputs were re-sent from the lake

    def cover(self, consumer: Consumer, partitions: set[TopicPartition]) -> None:
        """(Re)load when records come from a partition it was not loaded for: at the start,
        and after a rebalance handed over a dead member's partitions."""
        if self._loaded_for is not None and partitions <= self._loaded_for:
            return
        self._loaded_for = consumer.assignment() | partitions
        index: dict[str, set[str]] = {}
        with self.lock:
            con = self.lake.connect(self.outputs)
            try:
                for topic in self.outputs:
                    rows = con.execute(
                        f"SELECT DISTINCT unnest(parent_ids) FROM {table_name(topic)} "
                        "WHERE stage = ?",
                        [self.stage.name],
                    ).fetchall()
                    for (parent,) in rows:
                        index.setdefault(parent, set()).add(topic)
            finally:
                con.close()
        self._topics = index  # swapped whole: records in flight see the old or the new one

    def topics(self, event: Event | None) -> frozenset[str]:
        return frozenset(self._topics.get(event.event_id, ())) if event else frozenset()

    def remember(self, item: Handled) -> None:
        """The item's outputs are now in the lake."""
        topics = {e.topic() for e in item.outputs if e.topic() in self.outputs}
        if item.event is not None and topics:
            self._topics.setdefault(item.event.event_id, set()).update(topics)

    def prior_outputs(self, item: Handled) -> list[Event]:
        """This stage's outputs for the item's input, read back from the lake."""
        if not item.written or item.event is None:
            return []
        found: list[Event] = []
        with self.lock:
            for topic in sorted(item.written):
                found += self.lake.read_events(
                    topic,
                    "list_contains(parent_ids, ?) AND stage = ?",
                    [item.event.event_id, self.stage.name],
                )
        self.reused += bool(found)
        if not found:  # the lake was edited under the index: do the work again
            item.written = frozenset()
        return found
