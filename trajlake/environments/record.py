"""What a build leaves behind besides its folder: its row in the lake's `environments` table,
with the packages it resolved and its size."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from trajlake.config import Config
from trajlake.environments.resolve import Resolved
from trajlake.schemas import EnvironmentEvent, make_event_id, utc_now


def installed_packages(root: Path) -> list[str]:
    """name==version of every Python distribution and name@version of every npm package."""
    found = set()
    for info in root.glob("**/site-packages/*.dist-info"):
        name, _, version = info.name.removesuffix(".dist-info").partition("-")
        found.add(f"{name}=={version}")
    for manifest in [
        *root.glob("node_modules/*/package.json"),
        *root.glob("node_modules/@*/*/package.json"),
    ]:
        try:
            data = json.loads(manifest.read_text())
            found.add(f"{data['name']}@{data['version']}")
        except (ValueError, KeyError, OSError):
            continue
    return sorted(found)


def disk_size(root: Path) -> int:
    return sum(p.lstat().st_size for p in root.rglob("*") if not p.is_symlink() and p.is_file())


def record_build(
    config: Config,
    resolved: Resolved,
    status: str,
    seconds: float,
    size: int,
    packages: list[str],
    tail: str,
) -> None:
    """The build's row in the lake (`environments`), in a file named by its id."""
    from trajlake.lake import Lake

    host = socket.gethostname()
    now = utc_now()
    # A build of a key on a machine has one id (the same pipeline run twice leaves the same
    # rows); each failed attempt is a row of its own.
    attempt = now.isoformat() if status == "failed" else ""
    event = EnvironmentEvent(
        event_id=make_event_id("environment", resolved.key, host, status, attempt),
        stage="environment",
        repo=resolved.repo,
        repo_url=resolved.repo_url,
        commit=resolved.commit,
        created_at=now,
        environment_id=resolved.key,
        spec_id=resolved.spec.spec_id(),
        source=resolved.source,
        status=status,
        seconds=round(seconds, 3),
        size_bytes=size,
        toolchain=resolved.spec.toolchain,
        toolchain_version=resolved.toolchain_version,
        packages=packages,
        key_files=list(resolved.key_files),
        log_tail=tail,
        host=host,
        source_commit=resolved.spec.source_commit,
    )
    Lake(config.lake.root).write("environments", [event], name=f"env-{event.event_id}")
