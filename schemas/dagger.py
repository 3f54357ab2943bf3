"""DAgger's two record types: a task sent for collection, and the rollout collected on it.

Field docs here are the data dictionary of the `dagger_tasks` and `rollouts_dagger` tables.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from trajlake.schemas.base import Event


class DaggerTaskEvent(Event):
    """A recorded task or PR sent to the dagger stage for one iteration (`dagger collect`)."""

    TOPICS = ("dagger.tasks",)

    source_table: Literal["tasks", "prs"]
    source_event_id: str = Field(description="the recorded task or PR")
    task_id: str = Field(description="the task (for a PR: the task it was written from)")
    pr_id: str = Field("", description="the PR, when collected from prs")
    request: str = Field(description="what the agent is asked: the task request or the PR text")
    iteration: int = Field(ge=1, description="DAgger iteration i (1, 2, …)")
    beta: float = Field(ge=0, le=1, description="probability that the teacher acts at a turn")
    kappa: int = Field(0, ge=0, description="> 0: the student acts for the first kappa turns")
    label_every: int = Field(1, ge=1, description="the teacher labels every k-th student state")
    label_budget_tokens: int = Field(
        0, ge=0, description="tokens the rollout's label calls may spend; 0: no limit"
    )
    seed: int = Field(0, description="coin flips come from (seed, task, iteration, turn)")
    student_id: str = Field(description="which generation of the student acts")
    student_spec: str = Field(description="the student's config (JSON, no secrets)")


class DaggerRolloutEvent(Event):
    """One rollout under the turn-level mix of student and teacher, with a teacher label at
    every visited state the schedule asked to label. `teacher_id` (lineage) is the labeller."""

    TOPICS = ("rollouts.dagger",)

    task_id: str
    pr_id: str = ""
    dagger_task_id: str = Field(description="the DaggerTaskEvent this rollout ran")
    iteration: int = Field(ge=1)
    beta: float
    kappa: int = 0
    label_every: int = 1
    seed: int = 0
    student_id: str
    request: str
    messages_json: str = Field(
        "[]", description="the executed trajectory, OpenAI-format messages as in rollouts_t1"
    )
    tools_json: str = Field("[]", description="tool schemas both policies were offered")
    turns_json: str = Field(
        "[]",
        description="one object per agent turn: turn, actor (teacher|student), message_index "
        "(where the executed assistant message is in messages_json), label (the teacher's "
        "assistant message at that state, null when not asked or malformed), label_error, "
        "agree_tool / agree_exact (student turns with a label), label_tokens (student "
        "tokenizer), and each call's prompt/completion tokens",
    )
    student_turns: int = 0
    teacher_turns: int = 0
    label_budget_tokens: int = 0
    labels: int = Field(0, description="student turns with a usable teacher label")
    invalid_labels: int = Field(
        0,
        description="student turns whose label the scaffold rejects (unknown tool, too many "
        "calls, a missing argument, unreadable calls): kept with label_error, never trained",
    )
    invalid_teacher_turns: int = Field(
        0, description="teacher turns the scaffold rejected: executed as a format error, untrained"
    )
    unlabelled: int = Field(
        0, description="student states left unlabelled because the label budget was spent"
    )
    disagree_tool: int = Field(0, description="labelled student turns calling other tools")
    disagree_exact: int = Field(0, description="labelled student turns not exactly the label")
    message_tokens: list[int] = Field(
        default_factory=list, description="tokens per executed message (student tokenizer)"
    )
    sample_tokens: int = Field(
        0, description="tokens of every training sample this rollout yields, prefixes repeated"
    )
    tokenizer: str = ""
    patch: str = ""
    exit_status: str = Field(description="Submitted, LimitsExceeded, TimeoutError, …")
    error: str = ""
    steps: int = 0
    teacher_prompt_tokens: int = 0
    teacher_completion_tokens: int = 0
    student_prompt_tokens: int = 0
    student_completion_tokens: int = 0
    cost_usd: float = 0.0
    wall_s: float = 0.0
    sandbox: str = ""
    environment_id: str = Field("", description="the repository environment it ran in")
