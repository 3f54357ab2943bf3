"""The dagger stage (dagger.tasks → rollouts.dagger): rollouts under the student/teacher mix.

Each DaggerTaskEvent (sent by `trajlake dagger collect`) runs the agent once on a fresh
checkout of its commit, as rollout 1 does, with the turn-level mix of consumers/dagger_policy.py
in place of the teacher alone. Everything the rollout stages guarantee holds: a sandbox per
rollout, the stall watchdog, the token limit (executed calls of both models; labels have a
budget of their own, `dagger.label_budget_tokens`), a failure is a row, and
a rerun or a resumed stage re-emits what the lake already has (`skip_if_done`, deterministic
ids). Token counts are taken here with the student tokenizer (`filter.tokenizer`), for the
executed messages and for every label, so mixtures and `dagger status` need no other pass.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from itertools import accumulate
from typing import Any

from trajlake.config import Config, StudentConfig
from trajlake.consumers.agent import TeacherModel
from trajlake.consumers.dagger_policy import (
    BUDGET_SPENT,
    STUDENT,
    TEACHER,
    Mix,
    MixedModel,
    Turn,
)
from trajlake.consumers.filter import measure, render_message
from trajlake.consumers.on_checkout import Ran, run_on_checkout
from trajlake.consumers.scaffold_spec import Scaffold, load_scaffold
from trajlake.lake.dagger_mixture import label_sample_tokens
from trajlake.schemas import DaggerRolloutEvent, DaggerTaskEvent, Event, make_event_id
from trajlake.stage import Stage
from trajlake.teacher.client import Teacher, teacher_for
from trajlake.teacher.student import shared_student
from trajlake.tokenizer import TokenCounter, open_counter

NAME = "dagger"
INPUTS = ("dagger.tasks",)
OUTPUTS = ("rollouts.dagger",)


@dataclass
class Collector:
    """What the stage keeps between records: config, scaffold, teacher, token counter."""

    config: Config
    scaffold: Scaffold
    counter: TokenCounter

    def teacher(self, event: Event) -> Teacher:
        return teacher_for(event.teacher_spec, self.config.teacher, self.scaffold.id())

    def student(self, task: DaggerTaskEvent) -> Teacher:
        return shared_student(
            StudentConfig.model_validate_json(task.student_spec), self.scaffold.id()
        )

    def collect(self, task: DaggerTaskEvent) -> DaggerRolloutEvent:
        teacher, student = self.teacher(task), self.student(task)
        key = f"{task.source_event_id}:{task.iteration}"  # the same flips for any student
        mix = Mix(task.beta, task.kappa, task.label_every, task.seed, key, task.label_budget_tokens)

        def make_model(*args: Any) -> TeacherModel:
            return MixedModel(student, mix, *args)

        rollout_id = make_event_id(task.event_id, NAME, teacher.teacher_id)
        ran = run_on_checkout(
            self.config, self.scaffold, teacher, task, rollout_id, task.request, make_model
        )
        model = ran.result.model  # the kept attempt's (None when every attempt was abandoned)
        turns = model.turns if model and ran.result.messages else []
        return self.record(task, rollout_id, teacher, ran, turns, model)

    def record(
        self,
        task: DaggerTaskEvent,
        rollout_id: str,
        teacher: Teacher,
        ran: Ran,
        turns: list[Turn],
        model: MixedModel | None,
    ) -> DaggerRolloutEvent:
        result = ran.result
        tokens = measure(result.messages, self.counter).message_tokens
        executed = [m.get("role") for m in result.messages]
        turns = [  # a turn cut short (token limit, a failed call) left no message behind
            t
            for t in turns
            if t.message_index < len(executed) and executed[t.message_index] == "assistant"
        ]
        labels = [t.label for t in turns]
        label_tokens = self.counter.count([render_message(m) for m in labels if m is not None])
        counted = iter(label_tokens)
        rows = [asdict(t) | {"label_tokens": next(counted) if t.label else 0} for t in turns]
        by_model = model.by_model if model else {TEACHER: [0, 0], STUDENT: [0, 0]}
        labelled = [t for t in turns if t.actor == STUDENT and t.label is not None]
        rejected = [t for t in turns if t.label is None and t.label_error not in ("", BUDGET_SPENT)]
        return DaggerRolloutEvent(
            event_id=rollout_id,
            parent_ids=[task.event_id],
            stage=NAME,
            **task.lineage()
            | {
                "teacher_id": teacher.teacher_id,
                "config_hash": self.config.hash(),
                "scaffold_id": self.scaffold.id(),
            },
            task_id=task.task_id,
            pr_id=task.pr_id,
            dagger_task_id=task.event_id,
            iteration=task.iteration,
            beta=task.beta,
            kappa=task.kappa,
            label_every=task.label_every,
            seed=task.seed,
            student_id=task.student_id,
            request=task.request,
            messages_json=json.dumps(result.messages),
            tools_json=json.dumps(self.scaffold.tool_schemas()),
            turns_json=json.dumps(rows),
            student_turns=sum(t.actor == STUDENT for t in turns),
            teacher_turns=sum(t.actor == TEACHER for t in turns),
            label_budget_tokens=task.label_budget_tokens,
            labels=len(labelled),
            invalid_labels=sum(t.actor == STUDENT for t in rejected),
            invalid_teacher_turns=sum(t.actor == TEACHER for t in rejected),
            unlabelled=sum(t.label_error == BUDGET_SPENT for t in turns),
            disagree_tool=sum(not t.agree_tool for t in labelled),
            disagree_exact=sum(not t.agree_exact for t in labelled),
            message_tokens=tokens,
            sample_tokens=sample_tokens(tokens, rows),
            tokenizer=getattr(self.counter, "id", ""),
            patch=ran.patch,
            exit_status=result.exit_status,
            error=result.error,
            steps=result.steps,
            teacher_prompt_tokens=by_model[TEACHER][0],
            teacher_completion_tokens=by_model[TEACHER][1],
            student_prompt_tokens=by_model[STUDENT][0],
            student_completion_tokens=by_model[STUDENT][1],
            cost_usd=result.cost_usd,
            wall_s=result.wall_s,
            sandbox=ran.sandbox,
            environment_id=ran.environment_id,
        )


def sample_tokens(message_tokens: list[int], turns: list[dict[str, Any]]) -> int:
    """Tokens of every sample the rollout yields with every label kept: the trajectory itself
    (when a teacher turn the scaffold accepted trains in place) plus, per labelled student
    state, its history and the label (the blow-up that repeated prefixes cost)."""
    prefix = [0, *accumulate(message_tokens)]
    trains_in_place = any(t["actor"] == TEACHER and t["label"] is not None for t in turns)
    total = prefix[-1] if trains_in_place else 0
    for t in turns:
        if t["actor"] == STUDENT and t["label"] is not None and t["message_index"] < len(prefix):
            total += label_sample_tokens(prefix, t)
    return total


def make_stage(config: Config) -> Stage:
    """The dagger stage; the scaffold and the student tokenizer are opened once, here."""
    collector = Collector(
        config, load_scaffold(config.agent.scaffold), open_counter(config.filter.tokenizer)
    )

    def process(event: Event) -> list[Event]:
        return [collector.collect(event)]

    return Stage(NAME, INPUTS, OUTPUTS, process, skip_if_done=True, concurrent=True)
