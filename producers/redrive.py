"""Dead-letter re-drive: send failed records back to the stage that failed them.

A failed input is known by where it was read: (stage, source topic, partition, offset). Each
failure of it is a `dlq` row (a failed retry adds one; the lake keeps them all); it is *open*
while its newest failure is newer than its newest `dlq.resolved` mark, which a stage writes
when a retried record goes through. `retry` sends the newest dead letter of each open input
as a `dlq.retry` record, whose id comes from that dead letter: sending again before the stage
has run it adds nothing, and once it has failed again the new dead letter can be retried.
A retry written to the lake but not yet run is sent again by the next `retry` (its send may
have failed after the lake write; a record sent twice is the same record, run once).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb

from trajlake.bus import Producer
from trajlake.config import BusConfig
from trajlake.delivery import write_and_send
from trajlake.errors import LakeError
from trajlake.lake import Lake
from trajlake.schemas import DeadLetter, DlqRetry, make_event_id

RETRY_TOPIC = "dlq.retry"
_KEY = "stage, source_topic, source_partition, source_offset"
#: whether an open dead letter's retry is in the lake already (sent, or its send failed)
_SENT = "event_id IN (SELECT dead_letter_id FROM dlq_retry)"

#: The newest dead letter of every failed input that no retry has resolved since.
OPEN_LETTERS = f"""
WITH letters AS (
  SELECT *, count(*) OVER (PARTITION BY {_KEY}) AS failures FROM dlq
  QUALIFY row_number() OVER (PARTITION BY {_KEY} ORDER BY created_at DESC, event_id) = 1
), resolved AS (
  SELECT {_KEY}, max(created_at) AS resolved_at FROM dlq_resolved GROUP BY ALL
)
SELECT l.* FROM letters l LEFT JOIN resolved r USING ({_KEY})
 WHERE r.resolved_at IS NULL OR r.resolved_at < l.created_at
"""


@dataclass(frozen=True)
class OpenCount:
    """Open dead letters of one stage and error type (a `trajlake dlq list` line)."""

    stage: str
    error_type: str
    inputs: int
    failures: int
    newest: datetime
    example: str


def open_counts(lake: Lake, stage: str | None = None) -> list[OpenCount]:
    """Open failed inputs by stage and error type, the most recent first."""
    sql = (
        f"SELECT stage, error_type, count(*), sum(failures), max(created_at), "
        f"arg_max(error, created_at) FROM ({OPEN_LETTERS}) "
        f"{'WHERE stage = ?' if stage else ''} GROUP BY ALL ORDER BY 5 DESC, 1, 2"
    )
    rows = _query(lake, sql, [stage] if stage else [])
    return [OpenCount(s, t, n, f, at, e) for s, t, n, f, at, e in rows]


def resolved_count(lake: Lake) -> int:
    return _query(lake, "SELECT count(*) FROM dlq_resolved", [])[0][0]


@dataclass(frozen=True)
class RetryPlan:
    """What `retry` sends: a retry per open input; `pending` of them were sent before and have
    not run yet (their send may have failed after the lake write), and go again."""

    retries: list[DlqRetry]
    pending: int


def plan(lake: Lake, stage: str | None = None, where: str | None = None) -> RetryPlan:
    """A retry for the newest dead letter of every open input matching `stage` and `where`
    (SQL over the dlq columns), those sent already and not yet run by their stage included:
    a retry's id comes from its dead letter, so a second send is the same record again."""
    conditions = [c for c in (stage and "stage = ?", where and f"({where})") if c]
    sql = f"SELECT event_id, {_SENT} FROM ({OPEN_LETTERS})"
    sql += f" WHERE {' AND '.join(conditions)}" if conditions else ""
    rows = _query(lake, sql, [stage] if stage else [])
    ids = [event_id for event_id, _ in rows]
    letters = lake.read_events("dlq", "list_contains(?, event_id)", [ids]) if ids else []
    retries = [retry_for(letter) for letter in letters if isinstance(letter, DeadLetter)]
    return RetryPlan(retries, sum(sent for _, sent in rows))


def pending_count(lake: Lake, stage: str | None = None) -> int:
    """Open inputs whose retry was sent and has not gone through its stage yet."""
    sql = f"SELECT count(*) FILTER (WHERE {_SENT}) FROM ({OPEN_LETTERS})"
    return _query(lake, sql + (" WHERE stage = ?" if stage else ""), [stage] if stage else [])[0][0]


def retry_for(letter: DeadLetter) -> DlqRetry:
    return DlqRetry(
        event_id=make_event_id(RETRY_TOPIC, letter.event_id),
        parent_ids=[letter.event_id],
        stage="dlq-retry",
        **letter.lineage(),
        dead_letter_id=letter.event_id,
        stage_to=letter.stage,
        source_topic=letter.source_topic,
        source_partition=letter.source_partition,
        source_offset=letter.source_offset,
        payload=letter.payload,
    )


def send(retries: list[DlqRetry], lake: Lake, producer: Producer, bus: BusConfig) -> None:
    """Lake first, then the bus (the stages read dlq.retry and take their own)."""
    for i in range(0, len(retries), 500):
        chunk = retries[i : i + 500]
        write_and_send(lake, producer, bus, RETRY_TOPIC, chunk, f"retry-{chunk[0].event_id}")


def _query(lake: Lake, sql: str, params: list) -> list[tuple]:
    con = lake.connect(["dlq", "dlq.retry", "dlq.resolved"])
    try:
        return con.execute(sql, params).fetchall()
    except duckdb.Error as e:  # a bad --where is the usual cause
        raise LakeError(f"cannot select dead letters: {e}") from None
    finally:
        con.close()
