"""DuckDB views over the lake: one per topic, deduplicated by event_id.

The rule, shared with compaction: of the rows with one event_id, the one with the earliest
``created_at`` wins. Re-processing after a crash re-creates an event with the same id and a
later ``created_at``, so the first version written is the one every query sees.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import duckdb

from trajlake.lake.files import PARQUET_SUFFIX, has_files
from trajlake.schemas import TOPICS, record_type, table_name

#: Rows of one event_id that compaction must keep so that no view's answer can change: those
#: tied at the earliest created_at (the view picks one of them). Exact copies collapse to one.
KEEP_EARLIEST = "created_at IS NOT DISTINCT FROM min(created_at) OVER (PARTITION BY event_id)"


#: One row per task and teacher: how each teacher's generation of the task came out (the last
#: rollout-1 attempt, its rollout 2, verdict and sample), for comparing teachers after a replay.
TEACHER_COMPARE = """
CREATE OR REPLACE VIEW teacher_compare AS
WITH t1 AS (
  SELECT * FROM rollouts_t1
  QUALIFY row_number() OVER (PARTITION BY task_id, teacher_id ORDER BY attempt DESC) = 1
), sample AS (
  SELECT * FROM samples
  QUALIFY row_number() OVER (PARTITION BY rollout_id ORDER BY created_at DESC) = 1
)
SELECT t1.task_id, t1.teacher_id, t1.attempt AS attempts, t1.exit_status AS t1_exit_status,
       t1.self_eval, v.recall, v.label, s.truncation_ratios[1] AS truncation_ratio,
       s.patch_lines, t1.prompt_tokens + t1.completion_tokens AS t1_tokens,
       r2.exit_status AS t2_exit_status, r2.prompt_tokens + r2.completion_tokens AS t2_tokens
  FROM t1
  LEFT JOIN rollouts_t2 r2 ON r2.t1_id = t1.event_id
  LEFT JOIN verdicts v ON v.t2_id = r2.event_id
  LEFT JOIN sample s ON s.rollout_id = t1.event_id
"""


def connect(root: str | Path, topics: Iterable[str] | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with a view per topic (all topics unless given).

    A view over a table that has files sees files committed later too (the glob is expanded
    per query); a table that had none when the view was made shows zero rows until
    ``refresh`` is called or a new connection is made.
    """
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    refresh(con, root, topics)
    if topics is None:
        con.execute(TEACHER_COMPARE)
    return con


def refresh(
    con: duckdb.DuckDBPyConnection, root: str | Path, topics: Iterable[str] | None = None
) -> None:
    """(Re)create the views, e.g. after the first file of a table was written."""
    root = Path(root).resolve()
    for topic in TOPICS if topics is None else topics:
        create_view(con, root, topic)


def create_view(con: duckdb.DuckDBPyConnection, root: Path, topic: str) -> None:
    table = table_name(topic)
    if has_files(root, table):
        source = parquet_source([str(root / table / "**" / f"*{PARQUET_SUFFIX}")])
    else:
        source = f"({empty_select(con, topic)})"
    con.execute(f"CREATE OR REPLACE VIEW {quote_ident(table)} AS {dedup_select(source)}")


def dedup_select(source: str) -> str:
    """One row per event_id: the earliest created_at (rows with none come last)."""
    return (
        f"SELECT * FROM {source} QUALIFY row_number() OVER "
        "(PARTITION BY event_id ORDER BY created_at ASC NULLS LAST) = 1"
    )


def parquet_source(paths: list[str]) -> str:
    """read_parquet over files or globs; columns come from the files, not the directories."""
    listed = ", ".join(quote_literal(p) for p in paths)
    return f"read_parquet([{listed}], union_by_name = true, hive_partitioning = false)"


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
