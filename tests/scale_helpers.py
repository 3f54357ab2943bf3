"""What the scale-out and teacher-pool tests share: a repository of many functions, one task per
function, a quick teacher script, and teacher doubles running as their own processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from helpers import git_repo

from trajlake.bus import partition_for
from trajlake.schemas import TaskEvent, make_event_id

SUBMIT = {"name": "bash", "arguments": {"command": "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"}}


def make_repo(path: Path, functions: int) -> tuple[Path, str]:
    """A git repository with `functions` small functions in pkg/mod.py; (path, head commit)."""
    body = "".join(f"def f{i}(x):\n    return x + {i}\n\n\n" for i in range(functions))
    return git_repo(path, {"pkg/mod.py": body})


def make_tasks(repo: Path, commit: str, functions: int) -> list[TaskEvent]:
    """One task per function of `make_repo`'s module."""
    return [
        TaskEvent(
            event_id=make_event_id("scale-test", i),  # not the commit: same partitions each run
            parent_ids=[make_event_id("scale-test")],
            stage="function_sampler",
            repo="scale-repo",
            repo_url=str(repo),
            commit=commit,
            function_file="pkg/mod.py",
            function_name=f"f{i}",
            line_start=4 * i + 1,
            line_end=4 * i + 2,
            change_type="error_handling",
            request=f"Look at `f{i}` in `pkg/mod.py`.",
        )
        for i in range(functions)
    ]


def balanced(tasks: list[TaskEvent], partitions: int, per_partition: int) -> list[TaskEvent]:
    """The first `per_partition` tasks that land on each of `partitions` partitions."""
    chosen: dict[int, list[TaskEvent]] = {p: [] for p in range(partitions)}
    for task in tasks:
        bucket = chosen[partition_for(task.partition_key(), partitions)]
        if len(bucket) < per_partition:
            bucket.append(task)
    if any(len(bucket) < per_partition for bucket in chosen.values()):
        raise ValueError(f"{len(tasks)} tasks do not fill {partitions} x {per_partition}")
    return [task for bucket in chosen.values() for task in bucket]


def quick_script(path: Path) -> Path:
    """A teacher that edits the named function's file (a patch unique per function), submits,
    and says yes to the self-evaluation: three calls per rollout."""
    edit = {"command": "echo '# touched {{function}}' >> {{path}}"}
    sessions = [
        {
            "name": "self_eval",
            "match": "aligned with the request",
            "match_on": "last_user",
            "turns": [{"content": "yes"}],
        },
        {
            "name": "agent",
            "match": "`(?P<function>\\w+)` in `(?P<path>[^`]+)`",
            "turns": [
                {"reasoning": "Edit.", "tool_calls": [{"name": "bash", "arguments": edit}]},
                {"tool_calls": [SUBMIT]},
            ],
        },
    ]
    path.write_text(yaml.safe_dump({"sessions": sessions}))
    return path


def start_double(script: Path, latency_s: float) -> tuple[subprocess.Popen, str]:
    """`trajlake teacher-double` as its own process on a free port: (process, base URL)."""
    command = [sys.executable, "-m", "trajlake.teacher.double", "--script", str(script)]
    command += ["--port", "0", "--latency", str(latency_s)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    url = proc.stdout.readline().strip()
    if not url.startswith("http://"):
        proc.kill()
        raise RuntimeError(f"the teacher double did not start (printed {url!r})")
    return proc, url


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()
