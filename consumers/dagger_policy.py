"""DAgger's turn-level mix: who acts at each turn, and the teacher's label at every state.

At turn t the coin b_t ~ Bernoulli(beta) picks the actor: the teacher when b_t = 1, else the
student ("Revisiting DAgger in the Era of LLM-Agents"). At a student turn the teacher is asked
too, on the same messages, and its answer is the label (a student turn costs two calls); at a
teacher turn the executed action *is* the label (one call). With `kappa` > 0 the student acts
for the first kappa turns and the teacher completes the trajectory (the AggreVaTe-style
variant). `label_every` = k labels only every k-th student state, to trade labels for cost.

A label is what the scaffold would accept as a turn: a reply it rejects (no call, too many, an
unknown tool, a missing argument, unreadable calls) is kept as `label_error` and never trained,
at a student state and at a teacher's own turn alike. Label calls have their own budget
(`label_budget` tokens per rollout, 0: none) and never count against the rollout's token
limit, so labelling does not cut the student's rollout short; past the budget the rollout goes
on and its student states stay unlabelled (`label_error` is `BUDGET_SPENT`).

The coin for (seed, task, iteration, turn) is a hash, not a stream: a rerun, a restarted
rollout and a resumed stage draw the same flips.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from minisweagent.exceptions import FormatError

from trajlake.consumers.agent import TeacherModel
from trajlake.consumers.agent_actions import actions_of
from trajlake.consumers.agent_messages import clean_messages
from trajlake.consumers.scaffold_spec import Scaffold
from trajlake.teacher.client import Teacher
from trajlake.teacher.reply import TeacherReply

TEACHER, STUDENT = "teacher", "student"
#: label_error of a student state left unlabelled because the label budget was spent
BUDGET_SPENT = "label budget spent"


@dataclass(frozen=True)
class Mix:
    """Who acts when, for one rollout."""

    beta: float
    kappa: int = 0
    label_every: int = 1
    seed: int = 0
    key: str = ""  # the task and iteration, as the coin knows them
    label_budget: int = 0  # tokens the label calls of one rollout may spend; 0: no limit

    def coin(self, turn: int) -> float:
        """A uniform draw in [0, 1) for `turn`, fixed by (seed, key, turn)."""
        digest = hashlib.sha256(f"{self.seed}\x1f{self.key}\x1f{turn}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def actor(self, turn: int) -> str:
        if self.kappa > 0:
            return STUDENT if turn < self.kappa else TEACHER
        return TEACHER if self.coin(turn) < self.beta else STUDENT

    def labels(self, student_turn: int) -> bool:
        """Is the `student_turn`-th student state (0-based) labelled by the teacher?"""
        return student_turn % self.label_every == 0


@dataclass
class Turn:
    """What happened at one state: see DaggerRolloutEvent.turns_json."""

    turn: int
    actor: str
    message_index: int
    label: dict[str, Any] | None = None
    label_error: str = ""
    agree_tool: bool | None = None
    agree_exact: bool | None = None
    calls: dict[str, dict[str, int]] = field(default_factory=dict)


class MixedModel(TeacherModel):
    """mini-swe-agent's Model: each turn executed by the policy the coin picks, the teacher's
    label kept at every state it was asked for. The executed calls (both models) count against
    the rollout's token limit; label calls against the label budget only."""

    def __init__(self, student: Teacher, mix: Mix, *args: Any):
        super().__init__(*args)
        self.student = student
        self.mix = mix
        self.turns: list[Turn] = []
        self.by_model = {TEACHER: [0, 0], STUDENT: [0, 0]}  # prompt, completion tokens
        self.label_tokens = 0  # spent by label calls, against mix.label_budget

    def query(self, messages: list[dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
        t = len(self.turns)
        actor = self.mix.actor(t)
        turn = Turn(t, actor, message_index=len(messages))
        self.turns.append(turn)
        if actor == TEACHER:
            executed = self._call(self.teacher, messages, "agent", turn, TEACHER)
            label: TeacherReply | None = executed
        else:
            executed = self._call(self.student, messages, "dagger_student", turn, STUDENT)
            student_turn = sum(x.actor == STUDENT for x in self.turns) - 1
            label = None
            if self.mix.labels(student_turn):
                if self.mix.label_budget and self.label_tokens >= self.mix.label_budget:
                    turn.label_error = BUDGET_SPENT
                else:
                    label = self._call(self.teacher, messages, "dagger_label", turn, TEACHER)
                    self.label_tokens += label.prompt_tokens + label.completion_tokens
        if label is not None:
            turn.label, turn.label_error = _label(label, self.scaffold)
        if actor == STUDENT and turn.label is not None:
            turn.agree_tool, turn.agree_exact = agreement(executed, label)
        return self.step(executed)

    def _call(
        self, policy: Teacher, messages: list[dict[str, Any]], purpose: str, turn: Turn, who: str
    ) -> TeacherReply:
        reply = self.ask(policy, messages, purpose, counted=purpose != "dagger_label")
        turn.calls[who] = {"prompt": reply.prompt_tokens, "completion": reply.completion_tokens}
        self.by_model[who][0] += reply.prompt_tokens
        self.by_model[who][1] += reply.completion_tokens
        return reply


def _label(reply: TeacherReply, scaffold: Scaffold) -> tuple[dict[str, Any] | None, str]:
    """The label as a trajectory message, or None and why the scaffold would reject it."""
    try:
        actions_of(scaffold, reply)
    except FormatError as e:
        return None, e.messages[0].get("extra", {}).get("problem") or "rejected"
    return clean_messages([{**reply.message, "role": "assistant"}])[0], ""


def agreement(student: TeacherReply, teacher: TeacherReply) -> tuple[bool, bool]:
    """(same tools in the same order, same calls exactly: names and parsed arguments). A
    student reply whose calls could not be read agrees with nothing."""
    if student.format_error:
        return False, False
    mine, theirs = _calls(student.message), _calls(teacher.message)
    return [n for n, _ in mine] == [n for n, _ in theirs], mine == theirs


def _calls(message: dict[str, Any]) -> list[tuple[str, Any]]:
    """(tool, parsed arguments) of each call; for a reply without calls (a text scaffold's),
    ("block", command) of each fenced block in its text."""
    if not message.get("tool_calls"):
        text = message.get("content") or ""
        blocks = re.findall(r"```[\w.+-]*[ \t]*\n(.*?)\n```", text, re.DOTALL)
        return [("block", block.strip()) for block in blocks]
    out = []
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        arguments = function.get("arguments")
        try:
            parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
        except json.JSONDecodeError:
            parsed = arguments
        out.append((function.get("name") or "", parsed))
    return out
