"""Compaction: merge the files of each repository into one, deduplicated by event_id.

Per repository (``<table>/repo=*``, all its ``date=*`` partitions): read the files, keep the
rows a view could show (earliest ``created_at`` per event_id, see ``views.KEEP_EARLIEST``),
write one file ``compacted-<hash of the input names>.parquet`` under a temporary name in the
newest date partition it covers, rename it into place, and only then delete the inputs. A crash
in between leaves duplicates that the views deduplicate, so every query answers the same at
every step; the next run merges them.

Why per repository and not per day: every query pays per file it opens (about a millisecond
of DuckDB's time, whatever the file holds), so a table's cost after compaction should depend
on its repositories, not on how many days the pipeline ran (121 repositories over 10 days:
121 files instead of 1,210). The price: each run rewrites the repositories that got new files
(bench/lake_scale.py measures it), and a compacted file's date is the newest day it holds, not
the day of every row in it (``created_at`` says that).

The dedup is decided on (event_id, created_at) alone and the rows are then copied by position,
so no full row is ever hashed, sorted or held in memory: only rows tied at the earliest time
(exact copies, in practice) are compared whole.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from trajlake.errors import LakeError
from trajlake.lake.files import (
    COMPACTED_PREFIX,
    PARQUET_SUFFIX,
    publish,
    table_files,
    temp_path,
)
from trajlake.lake.objects import is_object_store
from trajlake.lake.views import KEEP_EARLIEST, parquet_source, quote_literal, schema_file
from trajlake.schemas import TOPICS, table_name

#: Row groups of at most 64 MB, so that the writer never holds a whole repository in memory.
#: LZ4: a mixture build reads the text of every rollout (DuckDB cannot skip pages for a random
#: eighth of the rows), and DuckDB decodes LZ4 about twice as fast as zstd (for 20-40% more bytes).
_COPY_OPTIONS = "(FORMAT parquet, COMPRESSION lz4_raw, ROW_GROUP_SIZE_BYTES '64MB')"


@dataclass(frozen=True)
class TableCompaction:
    """What compaction did to one table (counts over all of its files)."""

    table: str
    files_before: int
    files_after: int
    rows_before: int
    rows_after: int
    repos_compacted: int


@dataclass(frozen=True)
class CompactReport:
    """Per-table results of one compaction run, keyed by table name."""

    tables: dict[str, TableCompaction] = field(default_factory=dict)

    @property
    def files_removed(self) -> int:
        return sum(t.files_before - t.files_after for t in self.tables.values())

    @property
    def rows_removed(self) -> int:
        return sum(t.rows_before - t.rows_after for t in self.tables.values())

    def __str__(self) -> str:
        """One line per table, e.g. ``tasks: 12 -> 4 files, 24 -> 16 rows (4 partitions)``."""
        width = max((len(name) for name in self.tables), default=0)
        return "\n".join(
            f"{t.table:<{width}}: {t.files_before} -> {t.files_after} files, "
            f"{t.rows_before} -> {t.rows_after} rows ({t.repos_compacted} repositories merged)"
            for t in self.tables.values()
        )


def compact(
    root: str | Path, tables: Iterable[str] | None = None, min_files: int = 2
) -> CompactReport:
    """Compact every repository of a table with at least ``min_files`` data files.

    Args:
        root: the lake root.
        tables: table or topic names (``rollouts_t1`` or ``rollouts.t1``); all when None.
        min_files: repositories with fewer files are left alone. A repository holding only one
            compacted file is always left alone, so a second run is a no-op.
    """
    if min_files < 1:
        raise LakeError(f"min_files must be at least 1, got {min_files}")
    if is_object_store(root):
        raise LakeError(
            f"compaction of an object-storage lake ({root}) is not supported yet; its views "
            "deduplicate without it, so queries answer the same: leave it, or compact a copy"
        )
    root = Path(root).resolve()
    con = duckdb.connect(":memory:")
    try:
        report = {t: _compact_table(con, root, t, min_files) for t in _resolve(tables)}
    finally:
        con.close()
    return CompactReport(report)


def _resolve(tables: Iterable[str] | None) -> list[str]:
    known = [table_name(t) for t in TOPICS]
    if tables is None:
        return known
    chosen = [table_name(t) for t in tables]
    unknown = [t for t in chosen if t not in known]
    if unknown:
        raise LakeError(f"unknown lake tables {unknown}: choose from {', '.join(known)}")
    return chosen


def _compact_table(
    con: duckdb.DuckDBPyConnection, root: Path, table: str, min_files: int
) -> TableCompaction:
    before = table_files(root, table)
    rows_before = _count_rows(before)
    compacted = 0
    schema = schema_file(next(t for t in TOPICS if table_name(t) == table))
    for repo in sorted(p for p in (root / table).glob("repo=*") if p.is_dir()):
        files = sorted(repo.glob(f"date=*/*{PARQUET_SUFFIX}"))
        if _needs_compaction(files, min_files, schema):
            compact_files(con, files, schema)
            compacted += 1
    after = table_files(root, table) if compacted else before
    rows_after = _count_rows(after) if compacted else rows_before
    return TableCompaction(table, len(before), len(after), rows_before, rows_after, compacted)


def _needs_compaction(files: list[Path], min_files: int, schema: Path) -> bool:
    """At least `min_files` files (but not one compacted file), or a lone file that lacks a
    column of the current schema (written by an older trajlake: views cannot read it)."""
    if len(files) >= min_files and not (
        len(files) == 1 and files[0].name.startswith(COMPACTED_PREFIX)
    ):
        return True
    current = set(pq.read_schema(schema).names)
    return any(not current <= set(pq.read_schema(f).names) for f in files)


def compacted_name(files: list[Path]) -> str:
    """Deterministic: the same inputs always give the same output name."""
    names = "\n".join(sorted(f"{f.parent.name}/{f.name}" for f in files))
    return f"{COMPACTED_PREFIX}{hashlib.sha256(names.encode()).hexdigest()[:16]}{PARQUET_SUFFIX}"


def compact_files(
    con: duckdb.DuckDBPyConnection, files: list[Path], schema: Path | None = None
) -> Path:
    """Replace `files` (of one repository) by one deduplicated file in the newest of their
    partitions; returns its path. With a `schema` file (views.schema_file), the merged file
    has all its columns, null where the inputs had none (files of an older trajlake)."""
    final = max(f.parent for f in files) / compacted_name(files)
    tmp = temp_path(final)
    try:
        query = _dedup_query(con, [str(f) for f in ([schema] if schema else []) + files])
        con.execute(f"COPY ({query}) TO {quote_literal(str(tmp))} {_COPY_OPTIONS}")
        publish(tmp, final)
    except (duckdb.Error, OSError) as e:
        tmp.unlink(missing_ok=True)
        raise LakeError(
            f"cannot compact {final.parent}: {e}; the inputs are untouched, fix the cause "
            "and run compaction again"
        ) from e
    for f in files:  # only now: the merged file is visible, so dropping inputs changes nothing
        if f != final:
            f.unlink(missing_ok=True)
    return final


def _dedup_query(con: duckdb.DuckDBPyConnection, files: list[str]) -> str:
    """The rows to keep: those KEEP_EARLIEST keeps, found on (event_id, created_at) and read
    by position; rows tied at the earliest time are compared whole and kept once each."""
    source = parquet_source(files, positions=True)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE keep AS SELECT filename, file_row_number, "
        "count(*) OVER (PARTITION BY event_id, created_at) AS copies "
        f"FROM {source} QUALIFY {KEEP_EARLIEST}"
    )
    position = "(filename, file_row_number)"

    def kept(copies: str, distinct: str = "") -> str:
        return (
            f"SELECT {distinct}* EXCLUDE (filename, file_row_number) FROM {source} "
            f"WHERE {position} IN (SELECT {position} FROM keep WHERE copies {copies})"
        )

    query = kept("= 1")
    if con.execute("SELECT count(*) FROM keep WHERE copies > 1").fetchone()[0]:
        query += " UNION ALL " + kept("> 1", "DISTINCT ")
    return query


def _count_rows(files: list[Path]) -> int:
    return sum(pq.read_metadata(f).num_rows for f in files)
