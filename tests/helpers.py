"""Shared test helpers that talk to the real bus and the real lake."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

from trajlake.bus import Bus, Message
from trajlake.config import Config


def read_topic(bus: Bus, topic: str, timeout_s: float = 30) -> list[Message]:
    """Every record of `topic`, read by a fresh consumer group from the beginning."""
    ends = {tp: n for tp, n in bus.end_offsets([topic]).items() if n > 0}
    consumer = bus.consumer(f"reader-{uuid.uuid4().hex[:8]}", [topic])
    seen: dict[tuple[str, int], int] = {}
    messages: list[Message] = []
    deadline = time.monotonic() + timeout_s
    try:
        while any(seen.get(tp, 0) < n for tp, n in ends.items()):
            assert time.monotonic() < deadline, f"timed out reading {topic}: {seen} of {ends}"
            for msg in consumer.poll(max_records=1000, timeout_s=0.5):
                messages.append(msg)
                seen[(msg.topic, msg.partition)] = msg.offset + 1
    finally:
        consumer.close()
    return messages


def produce(bus: Bus, topic: str, values: list[bytes], keys: list[bytes | None] | None = None):
    producer = bus.producer()
    for i, value in enumerate(values):
        producer.send(topic, value, keys[i] if keys else None)
    producer.flush()
    producer.close()


def write_config(path, config: Config) -> None:
    """Save a config as YAML for a `trajlake --config` subprocess."""
    import yaml

    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))


def bus_overrides(bus_config) -> list[str]:
    """`--set` style overrides that put a demo or pipeline run on this test's bus."""
    if bus_config.kind == "embedded":
        return []
    return [
        "bus.kind=kafka",
        f"bus.bootstrap_servers={bus_config.bootstrap_servers}",
        f"bus.namespace={bus_config.namespace}",
    ]


def git_repo(path: Path, files: dict[str, str]) -> tuple[Path, str]:
    """A git repository at `path` with `files` (relative path -> text) in one commit on main;
    returns (path, head commit)."""
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    git = ["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    return path, head.stdout.strip()
