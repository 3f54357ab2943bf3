"""PR writer stage: rollouts.t1 → prs (SVG step 3).

The teacher turns rollout 1 (its request, the commands it ran and the files it viewed while
reproducing the problem, whatever the tools of its scaffold, and its patch) into a pull-request
description written in the style and length of a demonstration PR, without giving away the fix.
Demonstrations come from `pr_writer.demos` (JSONL of {id, title, body}), else from the
repository's own history (commit messages with a body), else from the defaults shipped here.
The `prs` event carries P1 for rollout 2 and the verifier.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from trajlake.config import Config
from trajlake.consumers import scaffold
from trajlake.errors import ConfigError
from trajlake.patches import changed_lines
from trajlake.repos import local_git_dir
from trajlake.schemas import Event, PrEvent, RolloutEvent, make_event_id
from trajlake.stage import Stage
from trajlake.teacher.client import teacher_for

MIN_BODY_CHARS = 120  # a commit body shorter than this says too little to imitate
MAX_COMMANDS = 20

PR_PROMPT = """\
Write a pull request description for a change to this repository.

Imitate the style and length of this example pull request:
<example>
# {demo_title}

{demo_body}
</example>

What the change is about (the original request):
<request>
{request}
</request>

Commands the developer ran while investigating:
<commands>
{commands}
</commands>

The patch (for your understanding only):
<patch>
{patch}
</patch>

Describe the problem, its symptoms and how to reproduce it, as the example does. Do NOT reveal \
the fix: no code from the patch, no description of the exact edit. Reply with the title on the \
first line, then the body."""


@dataclass(frozen=True)
class Demo:
    id: str
    title: str
    body: str


def read_demos(path: Path) -> list[Demo]:
    demos = []
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(
            f"pr_writer.demos: cannot read {path} ({e.strerror}): give a JSONL file of "
            "{title, body} demonstration PRs, or leave it empty to use the repository's history"
        ) from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            demos.append(
                Demo(str(row.get("id", f"{path.name}:{number}")), row["title"], row["body"])
            )
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ConfigError(
                f"{path}:{number}: a demo needs JSON with title and body ({e})"
            ) from None
    return demos


def default_demos() -> list[Demo]:
    return read_demos(Path(str(resources.files("trajlake.consumers") / "demos" / "default.jsonl")))


@cache
def history_demos(repo_dir: Path, commit: str, limit: int = 200) -> tuple[Demo, ...]:
    """Commit messages with a substantial body, up to `commit`, as demonstrations."""
    log = subprocess.run(
        ["git", "-C", str(repo_dir), "log", f"-n{limit}", "--format=%H%x00%s%x00%b%x1e", commit],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    demos = []
    for entry in log.split("\x1e"):
        sha, _, rest = entry.strip().partition("\x00")
        title, _, body = rest.partition("\x00")
        if len(body.strip()) >= MIN_BODY_CHARS:
            demos.append(Demo(sha[:12], title.strip(), body.strip()))
    return tuple(demos)


def commands_run(messages_json: str) -> list[str]:
    """What rollout 1 ran to investigate, in order, whatever its scaffold's tools: each bash
    command, and each file viewed with an editor tool (`str_replace_editor view PATH`). Edits
    are left out (they are the fix, which the patch shows), and so is what ends the episode
    (the submit tool, `echo MARKER`)."""
    commands = []
    for message in json.loads(messages_json):
        for call in message.get("tool_calls") or []:
            if line := _investigation(call):
                commands.append(line)
    return commands[:MAX_COMMANDS]


def _investigation(call: dict) -> str:
    """One tool call as a command line, or "" when it is not investigation."""
    try:
        name = call["function"]["name"]
        arguments = json.loads(call["function"]["arguments"])
    except (json.JSONDecodeError, KeyError, TypeError):
        return ""
    if not isinstance(arguments, dict):
        return ""
    command = arguments.get("command")
    if not isinstance(command, str) or not command.strip():
        return ""
    if "path" not in arguments:  # a shell command
        return "" if command.strip() == f"echo {scaffold.SUBMIT_MARKER}" else command
    if command != "view":
        return ""
    shown = arguments.get("view_range")
    lines = f" --view_range {' '.join(map(str, shown))}" if isinstance(shown, list) else ""
    return f"{name} view {arguments['path']}{lines}"


def without_fix(text: str, patch: str) -> str:
    """Drop any line of the PR that repeats an added line of the patch (the fix leaking)."""
    added = {line[1:].strip() for line in changed_lines(patch) if line.startswith("+")}
    added.discard("")
    return "\n".join(line for line in text.splitlines() if line.strip() not in added).strip()


def wants_pr(t1: RolloutEvent) -> bool:
    """Only aligned, new, finished rollouts with a patch go on to rollout 2."""
    return (
        t1.self_eval == "yes"
        and not t1.duplicate
        and t1.exit_status == "Submitted"
        and t1.patch.strip() != ""
    )


class PrWriter:
    def __init__(self, config: Config):
        self.config = config
        self.fixed = read_demos(Path(config.pr_writer.demos)) if config.pr_writer.demos else None

    def demo_for(self, t1: RolloutEvent) -> Demo:
        demos = self.fixed
        if demos is None:
            repo_dir = local_git_dir(t1.repo_url, self.config.producer.mirrors, t1.commit)
            demos = list(history_demos(repo_dir, t1.commit)) or default_demos()
        return demos[int(t1.event_id[:8], 16) % len(demos)]  # deterministic per rollout

    def process(self, event: Event) -> list[Event]:
        if not isinstance(event, RolloutEvent) or not wants_pr(event):
            return []
        demo = self.demo_for(event)
        prompt = PR_PROMPT.format(
            demo_title=demo.title,
            demo_body=demo.body,
            request=event.request,
            commands="\n".join(commands_run(event.messages_json)) or "(none)",
            patch=event.patch,
        )
        # a replayed generation keeps its own teacher
        teacher = teacher_for(
            event.teacher_spec, self.config.teacher, event.scaffold_id or scaffold.scaffold_id()
        )
        reply = teacher.chat([{"role": "user", "content": prompt}], purpose="pr_writer")
        return [
            PrEvent(
                event_id=make_event_id(event.event_id, "pr_writer", teacher.teacher_id),
                parent_ids=[event.event_id],
                stage="pr_writer",
                **event.lineage()
                | {"teacher_id": teacher.teacher_id, "config_hash": self.config.hash()},
                task_id=event.task_id,
                t1_id=event.event_id,
                pr_text=without_fix(reply.message.get("content") or "", event.patch),
                p1_patch=event.patch,
                demo_id=demo.id,
            )
        ]


def make_stage(config: Config) -> Stage:
    writer = PrWriter(config)
    return Stage(  # a teacher call per record: re-delivered rollouts re-emit the lake's PR
        "pr_writer", ("rollouts.t1",), ("prs",), writer.process, skip_if_done=True, concurrent=True
    )
