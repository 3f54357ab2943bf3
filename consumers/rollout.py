"""Rollout stages: rollout1 (tasks → rollouts.t1) and rollout2 (prs → rollouts.t2).

Rollout 1 runs the agent on a task's change request, asks the teacher whether the change is
aligned with the request, and on "no" tries again with a newly drawn request (up to
`agent.max_attempts`); every attempt is a row. A patch already seen for the same repository is
marked duplicate and goes no further. Rollout 2 runs the agent on the PR text alone, from the
same commit, and carries P1 along for the verifier.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

from trajlake.config import Config
from trajlake.consumers.function_sampler import redraw
from trajlake.consumers.on_checkout import Ran, run_on_checkout
from trajlake.consumers.scaffold_spec import Scaffold, load_scaffold
from trajlake.lake import Lake
from trajlake.schemas import (
    Event,
    PrEvent,
    ReplayEvent,
    RolloutEvent,
    TaskEvent,
    make_event_id,
    record_type,
)
from trajlake.stage import Stage
from trajlake.teacher.client import Teacher, shared_teacher, teacher_for

log = logging.getLogger(__name__)

SELF_EVAL_PROMPT = """\
A coding agent was given this request:

<request>
{request}
</request>

It produced this patch:

<patch>
{patch}
</patch>

Is the change aligned with the request? Answer yes or no, then one sentence why."""


@dataclass
class Rollouts:
    """What a rollout stage keeps between records: teacher, ids, and the patches seen."""

    config: Config
    scaffold: Scaffold
    teacher: Teacher
    patches: PatchRegistry

    @classmethod
    def create(cls, config: Config) -> Rollouts:
        chosen = load_scaffold(config.agent.scaffold)  # a bad scaffold file fails here
        teacher = shared_teacher(config.teacher, chosen.id())
        return cls(config, chosen, teacher, PatchRegistry(Lake(config.lake.root)))

    def for_event(self, event: Event) -> Rollouts:
        """The context for one record: its replayed teacher if it carries one (teacher_spec)."""
        if not event.teacher_spec:
            return self
        return replace(
            self,
            teacher=teacher_for(event.teacher_spec, self.config.teacher, self.scaffold.id()),
        )

    def run(self, event: Event, rollout_id: str, request: str) -> Ran:
        """The agent on a fresh checkout of the event's commit, in its repository's environment."""
        return run_on_checkout(self.config, self.scaffold, self.teacher, event, rollout_id, request)

    def self_evaluate(self, request: str, patch: str) -> str:
        """The teacher's yes/no on whether the patch addresses the request."""
        prompt = SELF_EVAL_PROMPT.format(request=request, patch=patch)
        reply = self.teacher.chat([{"role": "user", "content": prompt}], purpose="self_eval")
        answer = re.search(r"\b(yes|no)\b", (reply.message.get("content") or "").lower())
        return answer.group(1) if answer else "no"

    def record(
        self,
        event: Event,
        rollout: str,
        attempt: int,
        request: str,
        ran: Ran,
        **fields: object,
    ) -> RolloutEvent:
        result = ran.result
        return RolloutEvent(
            event_id=make_event_id(
                event.event_id, f"rollout{rollout[1]}", self.teacher.teacher_id, attempt
            ),
            parent_ids=[event.event_id],
            stage=f"rollout{rollout[1]}",
            **event.lineage()
            | {
                "teacher_id": self.teacher.teacher_id,
                "config_hash": self.config.hash(),
                "scaffold_id": self.scaffold.id(),
            },
            rollout=rollout,
            attempt=attempt,
            request=request,
            messages_json=json.dumps(result.messages),
            tools_json=json.dumps(self.scaffold.tool_schemas()),
            patch=ran.patch,
            patch_hash=patch_hash(ran.patch),
            exit_status=result.exit_status,
            error=result.error,
            steps=result.steps,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            cost_usd=result.cost_usd,
            wall_s=result.wall_s,
            sandbox=ran.sandbox,
            environment_id=ran.environment_id,
            **fields,
        )


def rollout1(ctx: Rollouts, task: TaskEvent) -> list[Event]:
    """Attempts until the teacher says the change is aligned (or the attempts run out)."""
    ctx = ctx.for_event(task)
    outputs: list[Event] = []
    current = task
    for attempt in range(1, ctx.config.agent.max_attempts + 1):
        rollout_id = make_event_id(task.event_id, "rollout1", ctx.teacher.teacher_id, attempt)
        ran = ctx.run(task, rollout_id, current.request)
        submitted = ran.result.exit_status == "Submitted" and ran.patch.strip() != ""
        verdict = ctx.self_evaluate(current.request, ran.patch) if submitted else ""
        duplicate = verdict == "yes" and ctx.patches.is_duplicate(
            (task.repo, ctx.teacher.teacher_id), ran.patch, rollout_id
        )
        outputs.append(
            ctx.record(
                task,
                "t1",
                attempt,
                current.request,
                ran,
                task_id=task.event_id,
                self_eval=verdict,
                duplicate=duplicate,
            )
        )
        if verdict != "no" or attempt == ctx.config.agent.max_attempts:
            break
        current = redraw(task, attempt + 1)
    return outputs


def rollout2(ctx: Rollouts, pr: PrEvent) -> list[Event]:
    """The agent sees only the PR text, starting from the same commit as rollout 1."""
    ctx = ctx.for_event(pr)
    rollout_id = make_event_id(pr.event_id, "rollout2", ctx.teacher.teacher_id, 1)
    ran = ctx.run(pr, rollout_id, pr.pr_text)
    return [
        ctx.record(
            pr,
            "t2",
            1,
            pr.pr_text,
            ran,
            task_id=pr.task_id,
            pr_id=pr.event_id,
            t1_id=pr.t1_id,
            reference_patch=pr.p1_patch,
        )
    ]


def make_rollout1(config: Config) -> Stage:
    ctx = Rollouts.create(config)
    process = with_replay("tasks", lambda task: rollout1(ctx, task))
    return Stage(
        "rollout1",
        ("tasks", "replay"),
        ("rollouts.t1",),
        process,
        skip_if_done=True,
        concurrent=True,
    )


def make_rollout2(config: Config) -> Stage:
    ctx = Rollouts.create(config)
    process = with_replay("prs", lambda pr: rollout2(ctx, pr))
    return Stage(
        "rollout2", ("prs", "replay"), ("rollouts.t2",), process, skip_if_done=True, concurrent=True
    )


def with_replay(table: str, run: Callable[[Event], list[Event]]) -> Callable[[Event], list[Event]]:
    """Run recorded `table` events sent on the replay topic as well, under their new teacher.

    A replayed record keeps its own event id (so outputs are keyed by the recorded input and
    the new teacher: replaying twice adds nothing) and gains the replay's id as a parent.
    """

    def process(event: Event) -> list[Event]:
        if not isinstance(event, ReplayEvent):
            return run(event)
        if event.source_table != table:
            return []  # the other rollout stage's replay
        recorded = record_type(table).decode(event.payload_json.encode())
        outputs = run(
            recorded.model_copy(update=event.lineage() | {"config_hash": recorded.config_hash})
        )
        return [
            o.model_copy(update={"parent_ids": [*o.parent_ids, event.event_id]}) for o in outputs
        ]

    return process


def patch_hash(patch: str) -> str:
    """Equal for patches that differ only in whitespace at line ends."""
    normal = "\n".join(line.rstrip() for line in patch.strip().splitlines())
    return hashlib.sha256(normal.encode()).hexdigest()[:32] if normal else ""


class PatchRegistry:
    """Patches already produced per repository and teacher (from the lake, then as rollouts
    finish). Per teacher, so that a replay with a new teacher is a full parallel generation to
    compare; mixtures can still deduplicate across teachers by `patch_hash`."""

    def __init__(self, lake: Lake):
        self._lake = lake
        self._seen: dict[tuple[str, str, str], str] | None = None  # loaded at first use
        self._lock = threading.Lock()

    def _load(self) -> dict[tuple[str, str, str], str]:
        """(repo, teacher, patch hash) -> the rollout that had it first, as the lake says."""
        con = self._lake.connect(["rollouts.t1"])
        rows = con.execute(
            "SELECT repo, teacher_id, patch_hash, arg_min(event_id, created_at) FROM rollouts_t1 "
            "WHERE patch_hash != '' GROUP BY ALL"
        ).fetchall()
        con.close()
        return {(repo, teacher, digest): first for repo, teacher, digest, first in rows}

    def is_duplicate(self, scope: tuple[str, str], patch: str, rollout_id: str) -> bool:
        """True when another rollout already produced this patch in `scope` (repo, teacher)."""
        key = (*scope, patch_hash(patch))
        with self._lock:
            if self._seen is None:
                self._seen = self._load()
            first = self._seen.setdefault(key, rollout_id)
        return first != rollout_id
