"""A mixture's data files: data.parquet and data.jsonl, and a styled JSONL per export style.

data.parquet and data.jsonl hold the rows as built (messages with tool_calls, tools as JSON);
data.<style>.jsonl holds {sample_id, messages} per row, the messages written in a chat style
(lake/chat_styles.py) as {role, content, train}, the shape axolotl's and LLaMA-Factory's
chat-template datasets read. Every file follows the mixture's order, so the same rows give the
same bytes; `check_styled` holds a styled file to the parquet it was written from.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

from trajlake.errors import TrajlakeError
from trajlake.lake.chat_parse import difference
from trajlake.lake.chat_styles import StyleError, check_style, render
from trajlake.lake.views import quote_literal

DATA_PARQUET = "data.parquet"
DATA_JSONL = "data.jsonl"
#: Rows read from data.parquet at a time.
BATCH_ROWS = 256


class MixtureError(TrajlakeError):
    """A mixture cannot be built or read as asked."""


def styled_name(style: str) -> str:
    return f"data.{style}.jsonl"


def export(con: duckdb.DuckDBPyConnection, out: Path, styles: Sequence[str] = ()) -> dict[str, str]:
    """Write the `mixture` table's files into `out`; returns their sha256, by file name.

    DuckDB writes each of Parquet and JSONL on one thread, so both are written at once, each on
    a cursor of its own (which sees the `mixture` table, a TEMP one it would not). The styled
    files are rendered in Python from data.parquet, in its order."""
    formats = {DATA_PARQUET: "FORMAT parquet, COMPRESSION zstd", DATA_JSONL: "FORMAT json"}

    def copy(name: str) -> str:
        cursor = con.cursor()
        try:
            cursor.execute(f"COPY mixture TO {quote_literal(str(out / name))} ({formats[name]})")
        finally:
            cursor.close()
        return sha256(out / name)

    with ThreadPoolExecutor(max_workers=len(formats)) as pool:
        digests = dict(zip(formats, pool.map(copy, formats), strict=True))
    for style in styles:
        write_styled(out, style)
        digests[styled_name(style)] = sha256(out / styled_name(style))
    return digests


def write_styled(directory: Path, style: str) -> None:
    """data.<style>.jsonl from the mixture's data.parquet: one JSON line per row, in its order."""
    check_style(style)
    with (directory / styled_name(style)).open("w", encoding="utf-8") as f:
        for row in _rows(directory):
            tools = json.loads(row["tools"] or "[]")
            try:
                turns = render(row["messages"], tools, style)
            except StyleError as e:
                raise StyleError(f"sample {row['sample_id']}: {e}") from None
            line = {"sample_id": row["sample_id"], "messages": turns}
            f.write(json.dumps(line, ensure_ascii=False) + "\n")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class StyledCheck:
    """What `check_styled` found: rows compared, rows that differ and the first difference."""

    rows: int = 0
    differ: int = 0
    first: str = ""


def check_styled(directory: Path, style: str) -> StyledCheck:
    """Does every row of data.<style>.jsonl parse back to the messages and tools of the
    data.parquet row in the same place? MixtureError when the mixture has no such file."""
    path = styled_file(directory, style)
    report = StyledCheck()
    with path.open(encoding="utf-8") as lines:
        for number, (row, line) in enumerate(zip_longest(_rows(directory), lines), start=1):
            report.rows += 1
            problem = _compare(row, line, style)
            if problem:
                report.differ += 1
                report.first = report.first or f"{path.name} line {number}: {problem}"
    return report


def styled_file(directory: Path, style: str) -> Path:
    """The mixture's data.<style>.jsonl; StyleError or MixtureError saying how to get it."""
    check_style(style)
    path = directory / styled_name(style)
    if not path.is_file():
        raise MixtureError(
            f"mixture {directory} has no {path.name}: add `export: {{styles: [{style}]}}` to its "
            "spec and build it again (`trajlake mixture build SPEC.yaml --force`)"
        )
    return path


def _rows(directory: Path) -> Iterator[dict[str, Any]]:
    parquet = pq.ParquetFile(directory / DATA_PARQUET)
    for batch in parquet.iter_batches(BATCH_ROWS, columns=["sample_id", "messages", "tools"]):
        yield from batch.to_pylist()


def _compare(row: dict[str, Any] | None, line: str | None, style: str) -> str | None:
    if row is None or line is None:
        return f"{'data.parquet' if row is None else 'the styled file'} has no row here"
    try:
        styled = json.loads(line)
        turns = styled["messages"]
    except (ValueError, KeyError, TypeError) as e:
        return f"not a JSON object with messages ({e})"
    if styled.get("sample_id") != row["sample_id"]:
        return f"sample {styled.get('sample_id')!r}, but data.parquet has {row['sample_id']!r}"
    problem = difference(row["messages"], json.loads(row["tools"] or "[]"), turns, style)
    return f"sample {row['sample_id']}: {problem}" if problem else None
