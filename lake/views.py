"""DuckDB views over the lake: one per topic, deduplicated by event_id.

The rule, shared with compaction: of the rows with one event_id, the one with the earliest
``created_at`` wins. Re-processing after a crash re-creates an event with the same id and a
later ``created_at``, so the first version written is the one every query sees.

A view takes its columns from the topic's record type, not from its files: a zero-row
*schema file* of the current schema is listed first (see `schema_file`), and DuckDB reads the
other files by those names. Asking DuckDB to union the files' own schemas instead makes it keep
a reader per file (~90 KB each, for every reference to the view): a mixture build over 120,000
uncompacted files needed more than 24 GB. A file from an older trajlake that lacks a column
fails the query with a "schema mismatch"; `trajlake lake compact` rewrites such files with
every current column (missing ones null).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from trajlake.errors import LakeError
from trajlake.lake.files import PARQUET_SUFFIX, has_files
from trajlake.lake.objects import ObjectLake, is_object_store
from trajlake.schemas import TOPICS, record_type, table_name

#: Rows of one event_id that compaction must keep so that no view's answer can change: those
#: tied at the earliest created_at (the view picks one of them). Exact copies collapse to one.
KEEP_EARLIEST = "created_at IS NOT DISTINCT FROM min(created_at) OVER (PARTITION BY event_id)"


#: Views derived from the per-topic ones (trajectories, teacher_compare), kept as plain SQL so
#: that the duckdb CLI can run them too (see `standalone_sql`).
VIEWS_SQL = Path(__file__).with_name("views.sql")


@functools.cache
def derived_views() -> str:
    """The text of views.sql, read once per process."""
    return VIEWS_SQL.read_text()


#: Per table, the newest ``created_at`` a view may show (None: no rows at all); see ``connect``.
AsOf = dict[str, dt.datetime | None]


def connect(
    root: str | Path, topics: Iterable[str] | None = None, as_of: AsOf | None = None
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with a view per topic (all topics unless given).

    A view over a table that has files sees files committed later too (the glob is expanded
    per query); a table that had none when the view was made shows zero rows until
    ``refresh`` is called or a new connection is made.

    ``as_of`` (table -> newest created_at) shows those tables as they were: only rows created
    at or before their table's time, deduplicated among themselves (see trajlake.lake.asof).
    """
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")  # DuckDB would print it to our stdout
    refresh(con, root, topics, as_of)
    if topics is None:
        con.execute(derived_views())
    return con


def refresh(
    con: duckdb.DuckDBPyConnection,
    root: str | Path,
    topics: Iterable[str] | None = None,
    as_of: AsOf | None = None,
) -> None:
    """(Re)create the views, e.g. after the first file of a table was written.

    On object storage (``s3://``) a view reads the objects its table's manifests named when it
    was made (see trajlake.lake.objects): refresh to see later ones.
    """
    topics = list(TOPICS if topics is None else topics)
    if is_object_store(root):
        sources = ObjectLake.open(str(root)).register(con, topics)
        for topic in topics:
            source = sources.get(topic) or f"({empty_select(con, topic)})"
            view = quote_ident(table_name(topic))
            where = as_of_condition(as_of, table_name(topic))
            con.execute(f"CREATE OR REPLACE VIEW {view} AS {dedup_select(source, where)}")
        return
    root = Path(root).resolve()
    for topic in topics:
        con.execute(view_statement(con, root, topic, as_of_condition(as_of, table_name(topic))))


def standalone_sql(root: str | Path) -> str:
    """A script for the plain duckdb CLI: the per-topic views of the lake at `root` (absolute
    paths), then views.sql. Tables without files yet get empty views of the right columns."""
    if is_object_store(root):
        raise LakeError(
            f"{root}: the duckdb CLI script is for a local lake (on object storage its views "
            "read a PyArrow dataset); query it with `trajlake sql` instead"
        )
    con = duckdb.connect(":memory:")
    root = Path(root).resolve()
    statements = [f"{view_statement(con, root, topic, schema_first=False)};" for topic in TOPICS]
    return "\n".join(["SET TimeZone = 'UTC';", *statements, "", derived_views()])


def view_statement(
    con: duckdb.DuckDBPyConnection,
    root: Path,
    topic: str,
    where: str | None = None,
    schema_first: bool = True,
) -> str:
    """CREATE VIEW for one topic: its files deduplicated, or no rows while it has none.
    Without `schema_first` (a script for another machine) DuckDB unions the files' schemas."""
    table = table_name(topic)
    if has_files(root, table):
        source = files_source(root, topic, schema_first)
    else:
        source = f"({empty_select(con, topic)})"
    return f"CREATE OR REPLACE VIEW {quote_ident(table)} AS {dedup_select(source, where)}"


def files_source(root: Path, topic: str, schema_first: bool = True) -> str:
    """read_parquet over every committed file of the topic's table (not deduplicated)."""
    files = [str(root / table_name(topic) / "**" / f"*{PARQUET_SUFFIX}")]
    return parquet_source(files, schema=str(schema_file(topic)) if schema_first else None)


def dedup_select(source: str, where: str | None = None) -> str:
    """One row per event_id: the earliest created_at (rows with none come last), among the
    rows that satisfy `where` when given."""
    return (
        f"SELECT * FROM {source} {f'WHERE {where} ' if where else ''}QUALIFY row_number() OVER "
        "(PARTITION BY event_id ORDER BY created_at ASC NULLS LAST) = 1"
    )


def as_of_condition(as_of: AsOf | None, table: str) -> str | None:
    """The rows of `table` a view as of `as_of` shows (None: all of them)."""
    if as_of is None or table not in as_of:
        return None
    newest = as_of[table]
    return "false" if newest is None else f"created_at <= {timestamp_literal(newest)}"


def timestamp_literal(moment: dt.datetime) -> str:
    """A TIMESTAMPTZ literal, exact to the microsecond."""
    return f"TIMESTAMPTZ {quote_literal(moment.astimezone(dt.timezone.utc).isoformat())}"


def parquet_source(paths: list[str], positions: bool = False, schema: str | None = None) -> str:
    """read_parquet over files or globs; columns come from the files (the union of their
    schemas), or from the `schema` file when given; never from the directories. With
    `positions`, also each row's `filename` and `file_row_number`."""
    listed = ", ".join(quote_literal(p) for p in ([schema] if schema else []) + paths)
    union = "false" if schema else "true"
    extra = ", filename = true, file_row_number = true" if positions else ""
    return f"read_parquet([{listed}], union_by_name = {union}, hive_partitioning = false{extra})"


def schema_file(topic: str) -> Path:
    """A zero-row Parquet file with the topic's current schema, in a per-user temporary
    directory (written once per schema; its name is a hash of it)."""
    schema = record_type(topic).arrow_schema()
    digest = hashlib.sha256(schema.serialize().to_pybytes()).hexdigest()[:16]
    user = os.getuid() if hasattr(os, "getuid") else "user"
    path = Path(tempfile.gettempdir()) / f"trajlake-schemas-{user}" / f"{digest}.parquet"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        pq.write_table(schema.empty_table(), tmp)
        os.replace(tmp, path)
    return path


def schema_hint(error: duckdb.Error) -> str:
    """DuckDB's message, and what to do when a file lacks a column of the current schema."""
    text = str(error)
    if "schema mismatch" in text:  # DuckDB's advice after the first line does not apply
        text = text.split("\n")[0] + (
            "; files written by an older trajlake lack columns of the current schema: run "
            "`trajlake lake compact` to rewrite them with every column"
        )
    return text


def empty_select(con: duckdb.DuckDBPyConnection, topic: str) -> str:
    """A zero-row SELECT with the columns and types of the topic's record schema."""
    empty = con.from_arrow(record_type(topic).arrow_schema().empty_table())
    columns = ", ".join(
        f"CAST(NULL AS {dtype}) AS {quote_ident(name)}"
        for name, dtype in zip(empty.columns, empty.types, strict=True)
    )
    return f"SELECT {columns} WHERE false"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
