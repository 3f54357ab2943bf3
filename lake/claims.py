"""Fields of one lake row, fetched by the file that holds it: the read side of claim checks.

A record too big for the bus travels as a reference (see trajlake.envelope): the file its
row was written to, relative to the lake root, the fields left out, and the sha256 of their
values (`fields_digest`), which names the exact version of the row that was published. A stage
re-run after a rebalance can write the same event_id again with other content (another LLM
rollout), so the event_id alone does not name a row.

The row is read back from that file, where it must have that digest. When the file is gone
(compaction merged it) or was rewritten without that version, every row of the table with the
event_id is searched (not the deduplicated view, which shows only the earliest version); when
the lake holds other versions only, that is an error, never a silent swap. A claim without a
digest (from an older trajlake) takes the row in its file, or else the one the view shows.
Only a missing file counts as "not there yet"; any other storage error is raised at once.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from trajlake.errors import LakeError
from trajlake.lake.files import has_files
from trajlake.lake.store import Lake
from trajlake.lake.views import files_source, quote_ident, schema_hint
from trajlake.schemas import table_name

#: A reference can reach a consumer before a re-run of the producing stage has rewritten the
#: row (a crash between publish and commit): wait this long for it before giving up.
WAIT_FOR_ROW_S = 20.0

_RETRY = "fix the cause, then send the record again with `trajlake dlq retry`"


class ClaimStorageError(LakeError):
    """The lake's storage refused to read a claimed row (not a missing file: permissions,
    network, a damaged file); raised at once rather than waited out."""


class ClaimVersionMissing(LakeError):
    """The lake holds the claimed event_id, but not the version of it that was published."""


class ClaimSizeMismatch(LakeError):
    """A record reassembled from its claim check is not as long as the one published."""


def relative_path(lake: Lake, path: str | Path) -> str:
    """`path` as Lake.write returned it, relative to the lake root (``table/repo=…/…``)."""
    if lake.objects is not None:
        return str(path).removeprefix("s3://").removeprefix(f"{lake.objects.base}/")
    return Path(path).relative_to(lake.root).as_posix()


def fields_digest(values: dict[str, Any]) -> str:
    """sha256 (hex) of field values (str, bytes or None), in order, with their names: what a
    claim check records so that the reader can tell one version of a row from another."""
    digest = hashlib.sha256()
    for name, value in values.items():
        data = value.encode() if isinstance(value, str) else value
        kind = type(value).__name__
        digest.update(f"{name}\0{kind}\0{-1 if data is None else len(data)}\0".encode())
        digest.update(data or b"")
    return digest.hexdigest()


def fetch_fields(
    lake: Lake,
    topic: str,
    file: str,
    event_id: str,
    fields: list[str],
    digest: str | None = None,
) -> dict[str, Any]:
    """The named fields of the row `event_id` whose `fields_digest` is `digest` (any version
    when None), from `file` or else from all rows of the topic's table.

    Raises:
        ClaimStorageError: the storage refused a read (at once, no waiting).
        ClaimVersionMissing: the table has the event_id, but only other versions of it.
        LakeError: no row of that event_id appeared within WAIT_FOR_ROW_S.
    """
    deadline = time.monotonic() + WAIT_FOR_ROW_S
    while True:
        row = _from_file(lake, file, event_id, fields, digest)
        if row is None:
            versions = _all_versions(lake, topic, event_id, fields)
            row = next((v for v in versions if _matches(v, fields, digest)), None)
            if row is None and versions:
                raise ClaimVersionMissing(
                    _other_versions(topic, event_id, fields, digest, versions)
                )
        if row is not None:
            return {name: row[name] for name in fields}
        if time.monotonic() >= deadline:
            raise LakeError(
                f"record {event_id} refers to its {table_name(topic)} row in {file}, but the "
                "lake has no such row: restore the lake, or re-run the stage that wrote it "
                "(`trajlake dlq retry`)"
            )
        time.sleep(0.5)


def _matches(row: dict[str, Any], fields: list[str], digest: str | None) -> bool:
    return digest is None or fields_digest({name: row[name] for name in fields}) == digest


def _from_file(
    lake: Lake, file: str, event_id: str, fields: list[str], digest: str | None
) -> dict | None:
    """The row from its file; None when the file is gone or no longer holds that version."""
    if not file:  # re-sent from the lake by a stage that found its work done
        return None
    if lake.objects is not None:
        path, filesystem = f"{lake.objects.base}/{file}", lake.objects.filesystem
        shown = f"s3://{path}"
    else:
        path, filesystem = str(Path(lake.root) / file), None
        shown = path
    try:
        table = pq.read_table(path, columns=["event_id", *fields], filesystem=filesystem)
    except FileNotFoundError:  # also what pyarrow's S3 filesystem raises for a missing key
        return None
    except (OSError, pa.ArrowException) as e:
        raise ClaimStorageError(
            f"cannot read {shown}, which holds the {', '.join(fields)} of record {event_id}: "
            f"{e}; {_RETRY}"
        ) from e
    rows = table.filter(pc.equal(table.column("event_id"), event_id)).to_pylist()
    return next((row for row in rows if _matches(row, fields, digest)), None)


def _all_versions(lake: Lake, topic: str, event_id: str, fields: list[str]) -> list[dict]:
    """Every committed row of `event_id` in the topic's table, earliest created_at first."""
    table = table_name(topic)
    con = duckdb.connect(":memory:")
    try:
        if lake.objects is not None:
            source = lake.objects.register(con, [topic]).get(topic)
            where = f"s3://{lake.objects.base}/{table}"
        else:
            root = Path(lake.root).resolve()
            source = files_source(root, topic) if has_files(root, table) else None
            where = str(root / table)
        if source is None:
            return []
        columns = ", ".join(quote_ident(f) for f in dict.fromkeys([*fields, "created_at"]))
        return (
            con.sql(
                f"SELECT {columns} FROM {source} WHERE event_id = ? "
                "ORDER BY created_at ASC NULLS LAST",
                params=[event_id],
            )
            .to_arrow_table()
            .to_pylist()
        )
    except (duckdb.Error, OSError, pa.ArrowException) as e:
        cause = schema_hint(e) if isinstance(e, duckdb.Error) else str(e)
        raise ClaimStorageError(
            f"cannot read the rows of record {event_id} in {where}: {cause}; {_RETRY}"
        ) from e
    finally:
        con.close()


def _other_versions(
    topic: str, event_id: str, fields: list[str], digest: str | None, versions: list[dict]
) -> str:
    held = ", ".join(
        f"sha256 {fields_digest({n: v[n] for n in fields})[:12]} created {v['created_at']}"
        for v in versions
    )
    return (
        f"record {event_id} was published with {', '.join(fields)} of sha256 "
        f"{(digest or '')[:12]}, but that version is not in the lake: {table_name(topic)} "
        f"holds only {len(versions)} other version(s) of it ({held}), e.g. because a re-run "
        "wrote the event again and compaction kept the earliest. The record that published "
        "the version the lake keeps carries it, so this dead letter can be left; retrying it "
        "fails the same way: to have the work redone, re-run the stage that wrote it on its "
        "input"
    )
