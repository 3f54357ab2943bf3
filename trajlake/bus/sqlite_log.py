"""The storage of the embedded bus: the SQLite schema and one guarded connection to it.

Every write is one `BEGIN IMMEDIATE` transaction in WAL mode with `synchronous=FULL`, so a
flushed record or a committed offset survives a crash of the process and of the machine, and
readers never block writers. Several processes may open the same file at once.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from trajlake.bus.base import TopicPartition
from trajlake.errors import BusError, TopicNotFound

BUSY_TIMEOUT_S = 30.0  # how long a writer waits for another process's write transaction

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS topics (name TEXT PRIMARY KEY, partitions INTEGER NOT NULL)",
    # next offset of each partition; bumped in the transaction that appends the records
    """CREATE TABLE IF NOT EXISTS heads (
        topic TEXT NOT NULL, part INTEGER NOT NULL, next_offset INTEGER NOT NULL,
        PRIMARY KEY (topic, part))""",
    """CREATE TABLE IF NOT EXISTS records (
        topic TEXT NOT NULL, part INTEGER NOT NULL, off INTEGER NOT NULL,
        key BLOB, value BLOB NOT NULL,
        PRIMARY KEY (topic, part, off))""",
    # topics: the member's subscription as a JSON list; heartbeat: time.time() of its last beat
    """CREATE TABLE IF NOT EXISTS members (
        grp TEXT NOT NULL, member TEXT NOT NULL, topics TEXT NOT NULL, heartbeat REAL NOT NULL,
        PRIMARY KEY (grp, member))""",
    """CREATE TABLE IF NOT EXISTS commits (
        grp TEXT NOT NULL, topic TEXT NOT NULL, part INTEGER NOT NULL,
        next_offset INTEGER NOT NULL,
        PRIMARY KEY (grp, topic, part))""",
)


class SqliteLog:
    """One connection to the log file, guarded by a lock so threads may share its owner."""

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            self._db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
        except (OSError, sqlite3.Error) as e:
            raise BusError(f"cannot open the embedded bus at {path}: {e}; check bus.path") from e
        with self.write() as db:
            for statement in SCHEMA:
                db.execute(statement)

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._errors():
            yield self._db

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One `BEGIN IMMEDIATE` transaction: committed on success, rolled back on error."""
        with self._lock, self._errors():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as e:
            raise BusError(
                f"embedded bus {self.path}: {e}; if it is locked, another process held a "
                f"write transaction over {BUSY_TIMEOUT_S:.0f}s"
            ) from e

    def close(self) -> None:
        with self._lock:
            self._db.close()


def topic_counts(db: sqlite3.Connection) -> dict[str, int]:
    return dict(db.execute("SELECT name, partitions FROM topics").fetchall())


def topic_partitions(db: sqlite3.Connection, topics: Iterable[str]) -> list[TopicPartition]:
    """Every (topic, partition) of `topics`; raises TopicNotFound for one never created."""
    known = topic_counts(db)
    for topic in topics:
        if topic not in known:
            raise TopicNotFound(topic)
    return [(topic, part) for topic in dict.fromkeys(topics) for part in range(known[topic])]


def group_offsets(db: sqlite3.Connection, group: str) -> dict[TopicPartition, int]:
    rows = db.execute("SELECT topic, part, next_offset FROM commits WHERE grp = ?", (group,))
    return {(topic, part): offset for topic, part, offset in rows}


def append_records(
    db: sqlite3.Connection, topic: str, part: int, items: list[tuple[bytes | None, bytes]]
) -> None:
    row = db.execute(
        "SELECT next_offset FROM heads WHERE topic = ? AND part = ?", (topic, part)
    ).fetchone()
    if row is None:
        raise TopicNotFound(topic)
    head = row[0]
    db.executemany(
        "INSERT INTO records (topic, part, off, key, value) VALUES (?, ?, ?, ?, ?)",
        [(topic, part, head + i, key, value) for i, (key, value) in enumerate(items)],
    )
    db.execute(
        "UPDATE heads SET next_offset = ? WHERE topic = ? AND part = ?",
        (head + len(items), topic, part),
    )
