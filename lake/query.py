"""Running a SQL query over the lake's views and rendering the result (for ``trajlake sql``)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from trajlake.errors import LakeError
from trajlake.lake.files import publish, temp_path
from trajlake.lake.views import connect, schema_hint

Format = Literal["table", "csv", "json", "parquet"]
FORMATS: tuple[str, ...] = ("table", "csv", "json", "parquet")

#: Cells longer than this are cut (with "…") in the table format.
MAX_CELL_WIDTH = 40

_RESULT = "_trajlake_result"


def run_sql(
    root: str | Path, sql: str, fmt: Format = "table", output: Path | None = None
) -> str | None:
    """Run ``sql`` against the lake's views and render the result.

    Args:
        root: the lake root.
        sql: any DuckDB SQL; every topic is a view named after its table (``rollouts_t1``).
        fmt: ``table`` (fixed-width text, long cells cut), ``csv`` (with a header row),
            ``json`` (one JSON object per line) or ``parquet`` (needs ``output``).
        output: where to write the result. With it, the file is written atomically and None
            is returned; without it, the text is returned.

    Raises:
        LakeError: on an unknown format, parquet without output, or a failing statement
            (the message is DuckDB's).
    """
    if fmt not in FORMATS:
        raise LakeError(f"unknown output format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt == "parquet" and output is None:
        raise LakeError("parquet output is binary: pass --output PATH to write it to a file")
    con = connect(root)
    try:
        result = _execute(con, sql)
        if fmt == "parquet":
            if not result.num_columns:
                raise LakeError("the statement returned no rows to write: use a SELECT")
            _write(output, lambda tmp: pq.write_table(result, tmp, compression="zstd"))
            return None
        text = _render(con, result, fmt) if result.num_columns else ""
    finally:
        con.close()
    if output is None:
        return text
    _write(output, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return None


def _execute(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    try:
        relation = con.sql(sql)
        return relation.to_arrow_table() if relation is not None else pa.table({})
    except duckdb.Error as e:
        raise LakeError(f"SQL failed: {schema_hint(e)}") from None


def _render(con: duckdb.DuckDBPyConnection, result: pa.Table, fmt: str) -> str:
    con.register(_RESULT, result)
    if fmt == "json":
        lines = con.sql(f"SELECT to_json(r)::VARCHAR FROM {_RESULT} AS r").fetchall()
        return "".join(line + "\n" for (line,) in lines)
    as_text = con.sql(f"SELECT COLUMNS(*)::VARCHAR FROM {_RESULT}")
    header, rows = as_text.columns, as_text.fetchall()
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        return buffer.getvalue()
    numeric = [_is_numeric(t) for t in result.schema.types]
    return format_table(header, rows, numeric)


def format_table(
    header: list[str], rows: list[tuple[str | None, ...]], right_align: list[bool]
) -> str:
    """A fixed-width text table: header, rule, rows, and a row count."""
    cells = [[_cell(v) for v in row] for row in rows]
    names = [_cell(h) for h in header]
    widths = [max([len(n)] + [len(r[i]) for r in cells]) for i, n in enumerate(names)]

    def line(values: list[str]) -> str:
        padded = (
            v.rjust(w) if right else v.ljust(w)
            for v, w, right in zip(values, widths, right_align, strict=True)
        )
        return " | ".join(padded).rstrip()

    rule = "-+-".join("-" * w for w in widths)
    count = f"({len(rows)} row{'' if len(rows) == 1 else 's'})"
    return "\n".join([line(names), rule, *(line(r) for r in cells), count]) + "\n"


def _cell(value: str | None) -> str:
    if value is None:
        return "NULL"
    text = value.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return text if len(text) <= MAX_CELL_WIDTH else text[: MAX_CELL_WIDTH - 1] + "…"


def _is_numeric(dtype: pa.DataType) -> bool:
    return pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_decimal(dtype)


def _write(output: Path, write: Callable[[Path], object]) -> None:
    """Write via a temporary file next to ``output``, then rename it into place."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(output)
    try:
        write(tmp)
        publish(tmp, output)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise LakeError(f"cannot write {output}: {e}; check the path is writable") from e
