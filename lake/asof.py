"""The state of the lake a mixture saw, so that it can be built again as it was.

A build records, per table the `trajectories` view reads, the newest ``created_at`` its
deduplicated view showed, the number of rows and a checksum of their (event_id, created_at).
Building "as of" that state shows every table only up to its time (`views.connect(as_of=…)`),
so everything that arrives later is left out, whatever it is:

- new rollouts, tasks, PRs: created after the time, not shown;
- a new verdict for an old T2 (or a better one for a T1's best reproduction): not shown;
- a newer sample of an old rollout (the view takes the newest): not shown;
- a re-processed copy of an old event: it has a later ``created_at``, and the earliest wins
  anyway; compaction keeps the earliest copy of every event (views.KEEP_EARLIEST).

What time alone cannot catch is a row created before the time that was not in the lake when
the mixture was built (a write still in flight, a restored backup). The rows and checksum tell:
`check` refuses to build from a past that changed rather than build something else.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import duckdb

from trajlake.errors import LakeError
from trajlake.lake.views import AsOf, quote_ident


class LakeChanged(LakeError):
    """The lake no longer holds what it held at the recorded state."""


def record(con: duckdb.DuckDBPyConnection, tables: tuple[str, ...]) -> dict[str, Any]:
    """Per table: ``{"newest": ISO time or None, "rows": n, "checksum": "…"}``."""
    state = {}
    for table in tables:
        newest, rows, checksum = _fingerprint(con, table)
        state[table] = {
            "newest": None if newest is None else newest.isoformat(),
            "rows": rows,
            "checksum": checksum,
        }
    return state


def times(state: dict[str, Any]) -> AsOf:
    """The per-table times of a recorded state, for `views.connect(as_of=…)`."""
    try:
        return {
            table: None if entry["newest"] is None else dt.datetime.fromisoformat(entry["newest"])
            for table, entry in state.items()
        }
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise LakeError(f"not a recorded lake state ({e}): {state!r:.200}") from None


def check(con: duckdb.DuckDBPyConnection, state: dict[str, Any]) -> None:
    """Raise LakeChanged unless `con`, made with ``as_of=times(state)``, shows the same rows."""
    for table, entry in state.items():
        _, rows, checksum = _fingerprint(con, table)
        if (rows, checksum) != (entry["rows"], entry["checksum"]):
            raise LakeChanged(
                f"table {table} held {entry['rows']} rows created up to {entry['newest']}, and "
                f"now {rows} rows up to then (or other ones): rows with earlier times were "
                "added (a late write, a restored backup) or removed, so that state cannot be "
                "rebuilt exactly; build without --as-of to use the lake as it is now"
            )


def _fingerprint(con: duckdb.DuckDBPyConnection, table: str) -> tuple[dt.datetime, int, str]:
    """Newest time, rows with a time, and an order-free checksum of their ids and times (md5,
    the same in every DuckDB version)."""
    return con.execute(
        "SELECT max(created_at), count(created_at), coalesce(bit_xor(md5_number(event_id || "
        f"'@' || epoch_us(created_at))), 0)::VARCHAR FROM {quote_ident(table)}"
    ).fetchone()
