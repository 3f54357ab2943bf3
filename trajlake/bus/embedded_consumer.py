"""Consumer groups on the embedded bus.

Each member keeps a row in `members` with a heartbeat, refreshed by `poll` and by a background
thread (so slow processing between polls does not cost the member its partitions). Every
member computes the same assignment from the live rows (`assign`). A member that closes
deletes its row, so the others take over at their next poll; one killed with SIGKILL stops
heartbeating and is taken over after `session_timeout_ms`, and one that has not polled for
MAX_POLL_INTERVAL_S stops heartbeating too (Kafka's max.poll.interval.ms). A member whose
membership expired rejoins at its next poll and, like a Kafka consumer, starts every partition
it then owns at the group's committed offset: what it read but could not commit is read again
(a stage re-emits its outputs from the lake, see `Stage.skip_if_done`).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import threading
import time
import uuid

from trajlake.bus.base import Message, TopicPartition
from trajlake.bus.sqlite_log import SqliteLog, group_offsets, topic_counts, topic_partitions
from trajlake.config import BusConfig
from trajlake.errors import BusError, CommitFailed, TopicNotFound

log = logging.getLogger(__name__)

POLL_SLEEP_S = 0.02  # pause between reads while a poll waits for records
MAX_POLL_INTERVAL_S = 300.0  # a member that stops polling this long stops heartbeating


def assign(
    members: dict[str, list[str]], partitions: dict[str, int]
) -> dict[str, set[TopicPartition]]:
    """Round-robin of the sorted (topic, partition) list over the members sorted by id.

    A member is skipped for a topic it does not subscribe to, as Kafka's round-robin assignor
    does. Every member computes this from the same rows, so they agree without talking.
    """
    ids = sorted(members)
    owned: dict[str, set[TopicPartition]] = {member: set() for member in ids}
    turn = 0
    for topic in sorted({t for subscribed in members.values() for t in subscribed}):
        for part in range(partitions.get(topic, 0)):
            for _ in ids:
                member = ids[turn % len(ids)]
                turn += 1
                if topic in members[member]:
                    owned[member].add((topic, part))
                    break
    return owned


class EmbeddedConsumer:
    """A member of a consumer group; see the module docstring for how groups work."""

    def __init__(self, config: BusConfig, group: str, topics: list[str]):
        self._log = SqliteLog(config.path)
        self._group = group
        self._topics = sorted(set(topics))
        self._session_s = config.session_timeout_ms / 1000
        self._interval_s = config.heartbeat_interval_ms / 1000
        self.member_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._positions: dict[TopicPartition, int] = {}
        self._rotation = 0
        self._last_beat = 0.0
        self._lapsed = False  # the membership expired: positions restart from the commits
        self._last_poll = time.monotonic()
        self._closed = False
        try:
            with self._log.read() as db:
                topic_partitions(db, self._topics)
        except TopicNotFound:
            self._log.close()
            raise
        self._beat_if_due()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat_loop, name=f"trajlake-heartbeat-{group}", daemon=True
        )
        self._thread.start()

    def poll(self, max_records: int = 500, timeout_s: float = 1.0) -> list[Message]:
        deadline = time.monotonic() + timeout_s
        while True:
            self._check_open()
            self._last_poll = time.monotonic()
            self._beat_if_due()
            with self._log.read() as db:
                self._refresh(db)
                messages = self._read(db, max_records)
            remaining = deadline - time.monotonic()
            if messages or remaining <= 0:
                return messages
            time.sleep(min(POLL_SLEEP_S, remaining))

    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit the offsets of the partitions this member still owns.

        Ownership is checked inside the write transaction, against the live members at that
        moment, so a member that lost a partition cannot overwrite its new owner's progress.
        The owned partitions are committed; then `CommitFailed` names the lost ones.
        """
        self._check_open()
        if not offsets:
            return
        with self._log.write() as db:
            owned = self._owned(db)
            db.executemany(
                "INSERT OR REPLACE INTO commits VALUES (?, ?, ?, ?)",
                [(self._group, t, p, off) for (t, p), off in offsets.items() if (t, p) in owned],
            )
        lost = sorted(set(offsets) - owned)
        if lost:
            raise CommitFailed(lost)

    def assignment(self) -> set[TopicPartition]:
        self._check_open()
        with self._log.read() as db:
            self._refresh(db)
        return set(self._positions)

    def seek_to_beginning(self) -> None:
        self._check_open()
        with self._log.read() as db:
            self._refresh(db)
        self._positions = dict.fromkeys(self._positions, 0)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._thread.join()
        with self._log.write() as db:
            db.execute(
                "DELETE FROM members WHERE grp = ? AND member = ?", (self._group, self.member_id)
            )
        self._log.close()

    def _check_open(self) -> None:
        if self._closed:
            raise BusError(f"consumer of group {self._group!r} is closed: open a new one")

    def _owned(self, db: sqlite3.Connection) -> set[TopicPartition]:
        rows = db.execute(
            "SELECT member, topics FROM members WHERE grp = ? AND heartbeat >= ?",
            (self._group, time.time() - self._session_s),
        ).fetchall()
        members = {member: json.loads(topics) for member, topics in rows}
        return assign(members, topic_counts(db)).get(self.member_id, set())

    def _refresh(self, db: sqlite3.Connection) -> None:
        """Recompute the assignment; gained partitions start at the group's committed offset."""
        if self._lapsed:  # as Kafka does for a member that rejoins: nothing is kept
            self._positions, self._lapsed = {}, False
        owned = self._owned(db)
        gained = owned - self._positions.keys()
        committed = group_offsets(db, self._group) if gained else {}
        kept = {tp: pos for tp, pos in self._positions.items() if tp in owned}
        self._positions = kept | {tp: committed.get(tp, 0) for tp in gained}

    def _read(self, db: sqlite3.Connection, max_records: int) -> list[Message]:
        """Up to max_records in offset order per partition, starting at a rotating partition."""
        owned = sorted(self._positions)
        if not owned:
            return []
        start = self._rotation % len(owned)
        self._rotation += 1
        messages: list[Message] = []
        for topic, part in owned[start:] + owned[:start]:
            room = max_records - len(messages)
            if room <= 0:
                break
            rows = db.execute(
                "SELECT off, key, value FROM records WHERE topic = ? AND part = ? AND off >= ?"
                " ORDER BY off LIMIT ?",
                (topic, part, self._positions[(topic, part)], room),
            ).fetchall()
            messages.extend(Message(topic, part, off, key, value) for off, key, value in rows)
            if rows:
                self._positions[(topic, part)] = rows[-1][0] + 1
        return messages

    def _beat_if_due(self) -> None:
        now = time.time()
        if now - self._last_beat < self._interval_s:
            return
        with self._log.write() as db:
            db.execute(
                "DELETE FROM members WHERE grp = ? AND heartbeat < ?",
                (self._group, now - self._session_s),
            )
            alive = db.execute(
                "SELECT 1 FROM members WHERE grp = ? AND member = ?", (self._group, self.member_id)
            ).fetchone()
            if self._last_beat and alive is None:
                self._lapsed = True  # its partitions may have moved and its offsets not committed
            db.execute(
                "INSERT OR REPLACE INTO members VALUES (?, ?, ?, ?)",
                (self._group, self.member_id, json.dumps(self._topics), now),
            )
        self._last_beat = now

    def _beat_loop(self) -> None:
        """Keep the membership alive between polls, up to MAX_POLL_INTERVAL_S without one."""
        while not self._stop.wait(self._interval_s / 2):
            if time.monotonic() - self._last_poll > MAX_POLL_INTERVAL_S:
                continue
            try:
                self._beat_if_due()
            except BusError as e:  # a busy file: the next beat tries again
                log.warning("heartbeat of group %s failed: %s", self._group, e)
