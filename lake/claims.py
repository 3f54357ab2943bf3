"""Fields of one lake row, fetched by the file that holds it: the read side of claim checks.

A record too big for the bus travels as a reference (see trajlake.envelope): the file its
row was written to, relative to the lake root, and the fields left out. The row is read back
from that file; when the file is gone (compaction merged it) or was rewritten without the
row, the table's deduplicated view is searched instead.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

from trajlake.errors import LakeError
from trajlake.lake.store import Lake
from trajlake.lake.views import quote_ident
from trajlake.schemas import table_name

#: A reference can reach a consumer before a re-run of the producing stage has rewritten the
#: row (a crash between publish and commit): wait this long for it before giving up.
WAIT_FOR_ROW_S = 20.0


def relative_path(lake: Lake, path: str | Path) -> str:
    """`path` as Lake.write returned it, relative to the lake root (``table/repo=…/…``)."""
    if lake.objects is not None:
        return str(path).removeprefix("s3://").removeprefix(f"{lake.objects.base}/")
    return Path(path).relative_to(lake.root).as_posix()


def fetch_fields(
    lake: Lake, topic: str, file: str, event_id: str, fields: list[str]
) -> dict[str, Any]:
    """The named fields of the row `event_id`, from `file` or else from the topic's view."""
    deadline = time.monotonic() + WAIT_FOR_ROW_S
    while True:
        row = _from_file(lake, file, event_id, fields) or _from_view(lake, topic, event_id, fields)
        if row is not None:
            return row
        if time.monotonic() >= deadline:
            raise LakeError(
                f"record {event_id} refers to its {table_name(topic)} row in {file}, but the "
                "lake has no such row: restore the lake, or re-run the stage that wrote it "
                "(`trajlake dlq retry`)"
            )
        time.sleep(0.5)


def _from_file(lake: Lake, file: str, event_id: str, fields: list[str]) -> dict | None:
    if not file:  # re-sent from the lake by a stage that found its work done
        return None
    if lake.objects is not None:
        path, filesystem = f"{lake.objects.base}/{file}", lake.objects.filesystem
    else:
        path, filesystem = str(Path(lake.root) / file), None
    try:
        table = pq.read_table(path, columns=["event_id", *fields], filesystem=filesystem)
    except (FileNotFoundError, OSError):
        return None
    rows = table.filter(pc.equal(table.column("event_id"), event_id)).slice(0, 1)
    return rows.select(fields).to_pylist()[0] if rows.num_rows else None


def _from_view(lake: Lake, topic: str, event_id: str, fields: list[str]) -> dict | None:
    columns = ", ".join(quote_ident(f) for f in fields)
    con = lake.connect([topic])
    try:
        table = con.sql(
            f"SELECT {columns} FROM {quote_ident(table_name(topic))} WHERE event_id = ?",
            params=[event_id],
        ).to_arrow_table()
    finally:
        con.close()
    return table.to_pylist()[0] if table.num_rows else None
