"""Where lake files live, and how one becomes visible: temp name, fsync, rename.

Layout: ``<root>/<table>/repo=<slug>/date=<YYYY-MM-DD>/<name>.parquet``. Readers glob
``*.parquet`` only, so a file under its temporary name (``<name>.parquet.tmp-<hex>``) is never
seen; ``os.replace`` publishes it whole or not at all.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import secrets
from pathlib import Path

from trajlake.errors import LakeError

PARQUET_SUFFIX = ".parquet"
COMPACTED_PREFIX = "compacted-"
NO_REPO_SLUG = "_none"

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=+-]{0,199}")


def repo_slug(repo: str) -> str:
    """A filesystem-safe, readable and unique directory name for a repository.

    The last component of the name or URL (without ``.git``), then 8 hex digits of the
    sha256 of the full name, so ``github.com/a/x`` and ``github.com/b/x`` stay apart.
    """
    if not repo:
        return NO_REPO_SLUG
    last = re.split(r"[/:\\]", repo.rstrip("/\\"))[-1]
    last = last.removesuffix(".git")
    readable = _UNSAFE.sub("_", last).strip("._")[:40] or "repo"
    digest = hashlib.sha256(repo.encode()).hexdigest()[:8]
    return f"{readable}-{digest}"


def partition_dir(root: Path, table: str, repo: str, day: dt.date) -> Path:
    return root / table / f"repo={repo_slug(repo)}" / f"date={day.isoformat()}"


def check_file_name(name: str) -> None:
    """Reject names that would escape the partition, hide, or clash with compaction output."""
    if not _NAME.fullmatch(name):
        raise LakeError(
            f"lake file name {name!r} is not allowed: use 1-200 characters from "
            "A-Z a-z 0-9 . _ = + -, starting with a letter or digit"
        )
    if name.endswith(PARQUET_SUFFIX):
        raise LakeError(f"lake file name {name!r}: pass it without the {PARQUET_SUFFIX} suffix")
    if name.startswith(COMPACTED_PREFIX):
        raise LakeError(
            f"lake file name {name!r}: the prefix {COMPACTED_PREFIX!r} is reserved for compaction"
        )


def table_files(root: Path, table: str) -> list[Path]:
    """The committed data files of a table (temporary files excluded), sorted."""
    return sorted((root / table).rglob(f"*{PARQUET_SUFFIX}"))


def has_files(root: Path, table: str) -> bool:
    return next((root / table).rglob(f"*{PARQUET_SUFFIX}"), None) is not None


def temp_path(final: Path) -> Path:
    """A unique name next to ``final`` that readers do not glob (it does not end in .parquet)."""
    return final.with_name(f"{final.name}.tmp-{secrets.token_hex(8)}")


def publish(tmp: Path, final: Path) -> None:
    """Make a fully written temporary file visible under its final name, durably."""
    _fsync(tmp)
    os.replace(tmp, final)
    if os.name == "posix":  # the rename itself must survive a power cut
        _fsync(final.parent)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
