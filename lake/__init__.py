"""The Parquet lake: atomic writes, deduplicated DuckDB views, compaction, SQL output."""

from trajlake.lake.compact import CompactReport, TableCompaction, compact
from trajlake.lake.query import FORMATS, run_sql
from trajlake.lake.store import Lake
from trajlake.lake.views import connect, refresh

__all__ = [
    "FORMATS",
    "CompactReport",
    "Lake",
    "TableCompaction",
    "compact",
    "connect",
    "refresh",
    "run_sql",
]
