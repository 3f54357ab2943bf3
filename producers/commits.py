"""The commits producer: new commits of registered repositories → lake + `commits` topic.

Order per batch: write the lake file (deterministic name), produce and flush, THEN record the
newest commit in the registry. A clean restart therefore emits nothing twice, and a crash
between producing and recording re-emits the same event ids (deterministic: repository URL and
sha), which the lake deduplicates.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trajlake.bus import Producer, open_bus
from trajlake.config import Config
from trajlake.lake import Lake
from trajlake.producers.git import (
    CommitInfo,
    GitError,
    changed_files,
    commit_infos,
    has_commit,
    rev_list,
)
from trajlake.redact import Redactor
from trajlake.repos import Registry, Repo, RepoError, refresh
from trajlake.schemas import CommitEvent, make_event_id

log = logging.getLogger(__name__)

STAGE = "commits"
TOPIC = "commits"
CHUNK = 1000  # commits per lake file / registry update, so a long backfill makes progress


@dataclass(frozen=True)
class PollResult:
    """What one poll of one repository did: commits emitted, or why it could not."""

    repo: str
    emitted: list[str]
    error: str = ""


def poll_new_commits(repo: Repo, git_dir: Path, config_hash: str = "") -> list[CommitEvent]:
    """Commits on the branch after `last_emitted`, oldest first, as CommitEvents.

    The first poll (nothing emitted yet) returns the newest `repo.backfill` commits. When
    `last_emitted` is gone from the repository (history rewritten and pruned), it starts over
    from the backfill; ids are deterministic, so commits seen before are not duplicated.
    """
    head = f"refs/heads/{repo.branch}"
    try:
        if repo.last_emitted and has_commit(git_dir, repo.last_emitted):
            shas = rev_list(git_dir, f"{repo.last_emitted}..{head}")
        else:
            if repo.last_emitted:
                log.warning(
                    "%s: last emitted commit %s is gone; emitting the last %d again",
                    repo.name,
                    repo.last_emitted,
                    repo.backfill,
                )
            shas = rev_list(git_dir, head, limit=repo.backfill)
    except GitError as e:
        raise RepoError(f"cannot list commits of {repo.name} branch {repo.branch}: {e}") from None
    return [
        _commit_event(
            repo, info, changed_files(git_dir, info.sha, _first(info.parents)), config_hash
        )
        for info in commit_infos(git_dir, shas)
    ]


def emit(
    repo: Repo, events: list[CommitEvent], lake: Lake, producer: Producer, registry: Registry
) -> None:
    """Publish commit events (lake, then bus, then registry), in chunks of CHUNK."""
    redactor = Redactor()  # a token pasted into a commit message stays out of bus and lake
    events = [redactor.redact_event(e) for e in events]
    for i in range(0, len(events), CHUNK):
        chunk = events[i : i + CHUNK]
        lake.write(TOPIC, chunk, name=f"commits-{repo.name}-{chunk[0].commit[:12]}")
        for event in chunk:
            producer.send(TOPIC, event.encode(), event.partition_key())
        producer.flush()
        registry.mark_emitted(repo.name, chunk[-1].commit)


def poll_repo(
    repo: Repo, registry: Registry, lake: Lake, producer: Producer, config: Config
) -> PollResult:
    """Fetch (URL repositories), poll and emit one repository; its failures become the result."""
    try:
        git_dir = refresh(repo.url, config.producer.mirrors) if repo.is_remote else Path(repo.url)
        events = poll_new_commits(repo, git_dir, config.hash())
    except RepoError as e:  # one repository's trouble must not stop the others
        log.warning("%s", e)
        return PollResult(repo.name, [], str(e))
    emit(repo, events, lake, producer, registry)
    return PollResult(repo.name, [e.commit for e in events])


def watch(
    config: Config,
    interval_s: float | None = None,
    once: bool = False,
    stop_event: threading.Event | None = None,
    on_poll: Callable[[PollResult], None] | None = None,
) -> None:
    """Poll every registered repository, every `interval_s`, until `stop_event` (or once).

    Repositories registered while it runs are picked up at the next round. On the embedded
    bus the `commits` topic is created on demand; on Kafka create it with `trajlake topics
    create`.
    """
    interval = config.producer.interval_s if interval_s is None else interval_s
    stop = stop_event or threading.Event()
    registry = Registry(config.producer.registry, config.producer.mirrors)
    lake = Lake(config.lake.root)
    bus = open_bus(config.bus, [TOPIC])
    try:
        producer = bus.producer()
        try:
            while not stop.is_set():
                for repo in registry.list():
                    if stop.is_set():
                        break
                    result = poll_repo(repo, registry, lake, producer, config)
                    if on_poll:
                        on_poll(result)
                if once or stop.wait(interval):
                    break
        finally:
            producer.close()
    finally:
        bus.close()


def _commit_event(repo: Repo, info: CommitInfo, files: list[str], config_hash: str) -> CommitEvent:
    return CommitEvent(
        event_id=make_event_id(repo.url, info.sha),
        stage=STAGE,
        repo=repo.name,
        repo_url=repo.url,
        commit=info.sha,
        config_hash=config_hash,
        branch=repo.branch,
        parents=info.parents,
        author=info.author,
        committed_at=info.committed_at,
        message=info.message,
        changed_files=files,
    )


def _first(parents: list[str]) -> str | None:
    return parents[0] if parents else None
