"""A small real stage for runner tests: each commit becomes one task.

Loaded by `trajlake stage echo_stage:STAGE` with this folder on PYTHONPATH. `ECHO_SLEEP_S`
stretches each record's work so that kills land in the middle of processing.
"""

from __future__ import annotations

import os
import time

from trajlake.schemas import CommitEvent, Event, TaskEvent, make_event_id
from trajlake.stage import Stage

NAME = "echo"


def expected_id(commit_event_id: str) -> str:
    return make_event_id(commit_event_id, NAME)


def process(event: Event) -> list[Event]:
    assert isinstance(event, CommitEvent)
    if event.message == "boom":
        raise RuntimeError("this commit message always fails")
    time.sleep(float(os.environ.get("ECHO_SLEEP_S", "0")))
    return [
        TaskEvent(
            event_id=expected_id(event.event_id),
            parent_ids=[event.event_id],
            stage=NAME,
            repo=event.repo,
            commit=event.commit,
            function_file="pkg/mod.py",
            function_name="f",
            line_start=1,
            line_end=2,
            change_type="error handling",
            request=f"Look at f for commit {event.commit}",
        )
    ]


STAGE = Stage(name=NAME, inputs=("commits",), outputs=("tasks",), process=process, concurrent=True)


def commit_event(i: int, repo: str = "demo/repo", message: str = "") -> CommitEvent:
    commit = f"{i:040x}"
    return CommitEvent(
        event_id=make_event_id(repo, commit),
        stage="test",
        repo=repo,
        commit=commit,
        branch="main",
        message=message or f"commit {i}",
    )
