"""Writing records to the lake and reading them back.

A write checks every record against its topic's schema first, writes each repository's rows
to a temporary file, and only then renames the files into place. The caller picks a
deterministic file name, so writing the same input again after a crash overwrites the file
instead of adding a duplicate. On object storage (an ``s3://`` root) the object is written
under its final name and a manifest written after it makes it visible (trajlake.lake.objects).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from trajlake.errors import LakeError, SchemaError
from trajlake.lake import views
from trajlake.lake.compact import CompactReport, compact
from trajlake.lake.files import (
    PARQUET_SUFFIX,
    check_file_name,
    has_files,
    partition_dir,
    publish,
    temp_path,
)
from trajlake.lake.objects import ObjectLake, is_object_store
from trajlake.schemas import TOPICS, Event, record_type, table_name
from trajlake.schemas.base import describe

_CHECK_ROOT = "check that the lake root is writable and has free space"

P = TypeVar("P", Path, str)


class Lake:
    """A Parquet lake: ``<root>/<table>/repo=…/date=…/*.parquet`` under a local directory or
    an ``s3://bucket/prefix`` root."""

    def __init__(self, root: str | Path) -> None:
        remote = is_object_store(root)
        self.root: Path | str = str(root) if remote else Path(root)
        self.objects = ObjectLake.open(str(root)) if remote else None

    def write(
        self, topic: str, events: list[Event], name: str, date: dt.date | None = None
    ) -> list[Path] | list[str]:
        """Write records of one topic; one file per repository, all under one date.

        Args:
            topic: the bus topic; its record type decides the table and schema.
            events: records of exactly that type.
            name: file name without suffix, chosen deterministically by the caller (e.g.
                ``stage-topic-p3-o000000001200``); writing the same name again replaces the file.
            date: the date partition; today in UTC when not given.

        Returns:
            The paths written (``s3://`` URIs on object storage), one per repository, sorted
            by repository.
        """
        check_file_name(name)
        table = events_table(topic, events)
        if table.num_rows == 0:
            return []
        day = date or dt.datetime.now(dt.timezone.utc).date()
        repos = sorted(table.column("repo").unique().to_pylist())
        if self.objects is not None:  # every object, then the manifests that make them visible
            keys = {r: self.objects.data_path(table_name(topic), r, day, name) for r in repos}
            return self.objects.publish(split_by_repo(table, keys))
        finals = {
            repo: partition_dir(self.root, table_name(topic), repo, day) / f"{name}{PARQUET_SUFFIX}"
            for repo in repos
        }
        staged = _stage(split_by_repo(table, finals))
        _publish_all(staged)
        return [final for _, final in staged]

    def read_events(
        self, topic: str, where: str | None = None, params: list[Any] | None = None
    ) -> list[Event]:
        """Records of a topic as the deduplicated view shows them, oldest first.

        ``where`` is a SQL condition on the view's columns, ``params`` fills its ``?``
        placeholders, e.g. ``read_events("tasks", "event_id = ?", [eid])``.
        """
        cls = record_type(topic)
        table = table_name(topic)
        con = views.connect(self.root, [topic])
        try:
            present = set(con.table(views.quote_ident(table)).columns)
            columns = ", ".join(views.quote_ident(c) for c in cls.model_fields if c in present)
            sql = f"SELECT {columns} FROM {views.quote_ident(table)}"
            sql += f" WHERE {where}" if where else ""
            sql += " ORDER BY created_at NULLS LAST, event_id"
            rows = con.sql(sql, params=params or []).to_arrow_table().to_pylist()
        except duckdb.Error as e:
            raise LakeError(f"cannot read table {table} where {where!r}: {e}") from None
        finally:
            con.close()
        return [cls.from_row(row) for row in rows]

    def connect(self, topics: Iterable[str] | None = None) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection with one deduplicated view per topic (only `topics`
        when given: each view lists its table's files, and views.sql needs them all)."""
        return views.connect(self.root, topics)

    def counts(self) -> dict[str, int]:
        """Rows per topic, as the (deduplicated) views show them: a view shows one row per
        event_id, so this counts distinct event_ids, in one statement over the per-topic views
        only (binding views.sql would open every file once more). Tables without files are 0
        without a view (an empty view costs 0.1 s to make)."""
        present = [
            t for t in TOPICS if self.objects is not None or has_files(self.root, table_name(t))
        ]
        rows: dict[int, int] = {}
        if present:
            con = self.connect(present) if self.objects is not None else duckdb.connect()
            try:  # count(DISTINCT) reads one column and skips the views' window (0.6 s of 0.9)
                union = " UNION ALL ".join(
                    f"SELECT {i} AS i, count(DISTINCT event_id) FROM {self._raw(con, topic)}"
                    for i, topic in enumerate(TOPICS)
                    if topic in present
                )
                rows = dict(con.execute(union).fetchall())
            finally:
                con.close()
        return {topic: rows.get(i, 0) for i, topic in enumerate(TOPICS)}

    def _raw(self, con: duckdb.DuckDBPyConnection, topic: str) -> str:
        """What a topic's view deduplicates: its files (local), or its view (object storage)."""
        if self.objects is not None:
            return views.quote_ident(table_name(topic))
        return views.files_source(Path(self.root).resolve(), topic)

    def compact(self, tables: list[str] | None = None, min_files: int = 2) -> CompactReport:
        """Merge small files per partition; see ``trajlake.lake.compact.compact``."""
        return compact(self.root, tables, min_files)


def events_table(topic: str, events: list[Event]) -> pa.Table:
    """The records as one Arrow table of the topic's schema; SchemaError says which is wrong."""
    cls = record_type(topic)
    rows = []
    for i, event in enumerate(events):
        if type(event) is not cls:
            raise SchemaError(
                f"record {i} is a {type(event).__name__}, but topic {topic!r} takes "
                f"{cls.__name__} records only: write each record type to its own topic"
            )
        row = event.model_dump()
        try:  # records made with model_construct (or mutated) skipped validation
            cls.model_validate(row)
        except ValidationError as e:
            raise SchemaError(f"record {i}: {describe(cls, e)}") from None
        rows.append(row)
    try:
        return pa.Table.from_pylist(rows, schema=cls.arrow_schema())
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise SchemaError(f"records do not fit the {table_name(topic)} schema: {e}") from None


def replace_file(path: Path, table: pa.Table) -> None:
    """Rewrite the committed file `path` to hold `table`, as `Lake.write` writes (temp name,
    then rename): readers see the old file or the new one, never a part."""
    _publish_all(_stage(iter([(table, path)])))


def split_by_repo(table: pa.Table, finals: dict[str, P]) -> Iterator[tuple[pa.Table, P]]:
    import pyarrow.compute as pc  # 0.13 s to import: only writers pay it (not `trajlake status`)

    for repo, final in finals.items():
        yield table.filter(pc.equal(table.column("repo"), repo)), final


def _stage(parts: Iterator[tuple[pa.Table, Path]]) -> list[tuple[Path, Path]]:
    """Write every part under a temporary name; on any failure remove what was written."""
    staged: list[tuple[Path, Path]] = []
    final = None
    try:
        for part, final in parts:
            final.parent.mkdir(parents=True, exist_ok=True)
            staged.append((temp_path(final), final))
            pq.write_table(part, staged[-1][0], compression="zstd")
    except OSError as e:
        _discard(staged)
        raise LakeError(f"cannot write lake file {final}: {e}; {_CHECK_ROOT}") from e
    except BaseException:
        _discard(staged)
        raise
    return staged


def _publish_all(staged: list[tuple[Path, Path]]) -> None:
    for i, (tmp, final) in enumerate(staged):
        try:
            publish(tmp, final)
        except OSError as e:
            _discard(staged[i:])
            raise LakeError(f"cannot publish lake file {final}: {e}; {_CHECK_ROOT}") from e


def _discard(staged: list[tuple[Path, Path]]) -> None:
    for tmp, _ in staged:
        tmp.unlink(missing_ok=True)
