"""trajlake: Soft Verified Generation as an event-sourced data lake with streaming stages.

From Python: `lake = trajlake.open("trajlake.yaml")` (see trajlake.lake.api).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trajlake.lake.api import LakeSession

__version__ = "0.1.0"


def open(where: str | Path | None = None, overrides: list[str] = ()) -> LakeSession:
    """The lake a config file names, or the lake at a root directory: SQL, Polars frames and
    built mixtures (see `trajlake.lake.api.LakeSession`). Imports the lake only when called."""
    from trajlake.lake.api import open_lake

    return open_lake(where, overrides)
