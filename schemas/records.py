"""One record type per topic. Field docs here are the data dictionary of the lake."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, field_validator

from trajlake.schemas.base import Event


class CommitEvent(Event):
    """A new commit seen on a registered repository."""

    TOPICS = ("commits",)

    branch: str = Field(description="branch the commit was found on")
    parents: list[str] = Field(default_factory=list, description="parent commit shas")
    author: str = ""
    committed_at: datetime | None = None
    message: str = ""
    changed_files: list[str] = Field(default_factory=list, description="paths the commit touched")

    def partition_key(self) -> bytes:
        return self.repo.encode()  # one repository's commits stay in order


class TaskEvent(Event):
    """A function paired with a vague change request (SVG step 1)."""

    TOPICS = ("tasks",)
    SCHEMA_VERSION = 2  # 2: language

    schema_version: int = Field(2, description="version of this record type's schema")
    function_file: str = Field(description="path of the file, relative to the repository root")
    function_name: str = Field(
        description="qualified name, by its language's convention (consumers/languages.yaml): "
        "Class.method, pkg.(*Recv).Method, Type::method, Mod::Class#method"
    )
    line_start: int
    line_end: int
    change_type: str = Field(description="taxonomy entry the request was drawn from")
    request: str = Field(description="the change request the agent receives")
    attempt: int = Field(1, ge=1, description="1 for the first request, 2-3 for re-draws")
    seed: int = 0
    unparsed_files: int = Field(
        0, description="files in the task's language at this commit that did not parse"
    )
    language: str = Field(
        "python",
        description="language of function_file (a key of consumers/languages.yaml: python, go, "
        "typescript, …); schema 2. Rows of schema 1, when only Python was sampled, read as python",
    )

    @field_validator("language", mode="before")
    @classmethod
    def _schema_1_was_python(cls, value: object) -> object:
        return "python" if value is None else value


class RolloutEvent(Event):
    """One agent run (SVG steps 2 and 4): its trajectory, patch and how it ended."""

    TOPICS = ("rollouts.t1", "rollouts.t2")

    rollout: Literal["t1", "t2"]
    task_id: str = Field(description="the task this rollout works on")
    pr_id: str = Field("", description="t2 only: the PR the agent was given")
    attempt: int = Field(1, ge=1)
    request: str = Field(description="what the agent was asked (task request or PR text)")
    messages_json: str = Field(
        "[]",
        description="OpenAI-format messages (JSON): role, content, and for assistant turns "
        "reasoning_content and tool_calls [{id, type, function: {name, arguments}}]; "
        "tool results have role tool and tool_call_id; an assistant turn with calls also "
        "says where they were read (tool_call_source: native, hermes, fenced, bare)",
    )
    tools_json: str = Field("[]", description="tool schemas the agent was offered (JSON)")
    patch: str = Field("", description="git diff --binary of the checkout at the end")
    patch_hash: str = Field("", description="hash of the patch with line-end whitespace removed")
    reference_patch: str = Field("", description="t2: P1, carried from the PR for the verifier")
    t1_id: str = Field("", description="t2: the rollout 1 whose PR this reproduces")
    exit_status: str = Field(description="Submitted, LimitsExceeded, TimeoutError, …")
    error: str = ""
    steps: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    wall_s: float = 0.0
    sandbox: str = ""
    environment_id: str = Field(
        "",
        description="the repository environment the rollout ran in (environments table); "
        "empty for rows from before environments, or a sandbox kind without one",
    )
    self_eval: Literal["yes", "no", ""] = Field("", description="t1: teacher says aligned?")
    duplicate: bool = Field(False, description="t1: same patch already in the lake")

    def topic(self) -> str:
        return f"rollouts.{self.rollout}"


class EnvironmentEvent(Event):
    """One build of a repository's environment on one machine (`trajlake env build`, or the
    first rollout that needs it). Written to the lake by the builder, not through the bus."""

    TOPICS = ("environments",)

    environment_id: str = Field(description="the build key: spec, toolchain and key files")
    spec_id: str = Field(description="NAME-<hash> of the spec that was built")
    source: str = Field(description="where the spec came from: auto, none, swesmith or a file")
    status: Literal["built", "failed"]
    seconds: float = Field(0.0, description="wall-clock seconds the build took")
    size_bytes: int = Field(0, description="bytes of the built environment on disk")
    toolchain: str = Field("", description="python, node or none")
    toolchain_version: str = Field("", description="e.g. Python 3.11.2, v20.19.2")
    packages: list[str] = Field(
        default_factory=list, description="resolved packages: name==version (Python), name@version"
    )
    key_files: list[str] = Field(default_factory=list, description="path:blob of each key file")
    log_tail: str = Field("", description="the end of the build's output")
    host: str = Field("", description="the machine whose cache holds it")
    source_commit: str = Field("", description="swesmith: the commit the profile was written for")


class PrEvent(Event):
    """A synthetic pull-request description written from T1 (SVG step 3)."""

    TOPICS = ("prs",)

    task_id: str
    t1_id: str
    pr_text: str
    p1_patch: str = Field(description="T1's patch, carried so later stages need no lookups")
    demo_id: str = Field("", description="the demonstration PR imitated")


class VerdictEvent(Event):
    """Line-level recall of P1 in P2 (SVG step 5)."""

    TOPICS = ("verdicts",)

    task_id: str
    t1_id: str
    t2_id: str
    matched: int = Field(ge=0, description="P1 changed lines also found in P2 (multiset)")
    total: int = Field(ge=0, description="P1 changed lines")
    recall: float | None = Field(None, description="matched / total; null when total is 0")
    label: Literal["hard", "soft", "unverified", "empty", "unparseable"]


class SampleEvent(Event):
    """Measurements of one trajectory (SVG step 6); selection happens later, in SQL."""

    TOPICS = ("samples",)

    rollout_id: str
    rollout: Literal["t1", "t2"]
    task_id: str
    tokenizer: str = Field(description="student tokenizer the counts were made with")
    message_tokens: list[int] = Field(default_factory=list, description="tokens per message")
    total_tokens: int = 0
    budgets: list[int] = Field(default_factory=list, description="context budgets measured")
    truncation_ratios: list[float] = Field(default_factory=list, description="one per budget")
    patch_lines: int = 0
    tool_tokens_mean: float = 0.0
    tool_tokens_max: int = 0
    steps: int = 0
    exit_status: str = ""


class ReplayEvent(Event):
    """A recorded task or PR sent again, to be run by another teacher."""

    TOPICS = ("replay",)

    source_table: Literal["tasks", "prs"]
    source_event_id: str
    payload_json: str = Field(description="the recorded event, as it was on the bus")
    teacher_json: str = Field(description="the teacher spec to run it with")


class DeadLetter(Event):
    """A record a stage could not process: why, and the original bytes."""

    TOPICS = ("dlq",)

    source_topic: str
    source_partition: int
    source_offset: int
    error_type: str
    error: str
    payload: bytes = Field(description="the input record exactly as it was read")


class DlqRetry(Event):
    """A dead letter sent back to the stage that failed it (`trajlake dlq retry`).

    Every stage reads this topic and takes the records addressed to it (`stage_to`). A failed
    input is identified by where it was read: (stage, source topic, partition, offset).
    """

    TOPICS = ("dlq.retry",)

    dead_letter_id: str = Field(description="the dead letter (the newest one) being retried")
    stage_to: str = Field(description="the stage that failed the record, which runs it again")
    source_topic: str
    source_partition: int
    source_offset: int
    payload: bytes = Field(description="the input record exactly as it was first read")


class DlqResolved(Event):
    """A retried dead letter that went through: `trajlake dlq list` stops counting it."""

    TOPICS = ("dlq.resolved",)

    retry_id: str = Field(description="the DlqRetry that went through")
    dead_letter_id: str
    source_topic: str
    source_partition: int
    source_offset: int
