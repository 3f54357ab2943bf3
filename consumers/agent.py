"""The rollout agent: mini-swe-agent's loop, driven by trajlake's teacher, acting in a sandbox.

mini-swe-agent supplies the loop (`DefaultAgent`: step limit, wall-clock limit, format-error
handling, the trajectory saved after every step) and the tool-call parsing; this module
supplies its two plug points: `TeacherModel` (the OpenAI-compatible teacher with token
accounting) and `SandboxEnvironment` (commands run in the rollout's sandbox). `run_agent` adds
a watchdog: a rollout that makes no progress for `agent.no_progress_s` is abandoned and started
again on a fresh sandbox, a bounded number of times.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from trajlake.config import AgentConfig
from trajlake.consumers import scaffold
from trajlake.errors import ConfigError, TrajlakeError
from trajlake.sandbox import Sandbox
from trajlake.teacher.client import Teacher

# mini-swe-agent prints a banner on import unless told not to.
os.environ.setdefault("MSWEA_SILENT_STARTUP", "1")
try:
    from minisweagent.agents.default import DefaultAgent
    from minisweagent.exceptions import FormatError, LimitsExceeded, Submitted
    from minisweagent.models.utils.actions_toolcall import parse_toolcall_actions
except ImportError as e:  # the rollout stages need the `agent` extra
    raise ConfigError(
        f"the rollout stages need mini-swe-agent ({e}): pip install -e '.[agent]'"
    ) from None


@dataclass
class AgentResult:
    messages: list[dict[str, Any]]
    exit_status: str
    error: str = ""
    steps: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    wall_s: float = 0.0
    restarts: int = 0


@dataclass
class _Progress:
    """When the rollout last did something, and whether the watchdog gave up on it."""

    last: float = field(default_factory=time.monotonic)
    abandoned: threading.Event = field(default_factory=threading.Event)

    def tick(self) -> None:
        if self.abandoned.is_set():
            raise _Abandoned()
        self.last = time.monotonic()


class _Abandoned(Exception):
    """Raised inside an abandoned rollout's thread so it stops at its next step."""


def _exit(status: str, content: str = "") -> dict[str, Any]:
    return {"role": "exit", "content": content, "extra": {"exit_status": status, "submission": ""}}


class TeacherModel:
    """mini-swe-agent's Model protocol over trajlake's `Teacher` (tool calling)."""

    def __init__(self, teacher: Teacher, config: AgentConfig, progress: _Progress):
        self.teacher = teacher
        self.config = config
        self.progress = progress
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost_usd = 0.0

    def query(self, messages: list[dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
        self.progress.tick()
        if self.prompt_tokens + self.completion_tokens >= self.config.token_limit:
            raise LimitsExceeded(_exit("LimitsExceeded", "token limit"))
        reply = self.teacher.chat(_for_api(messages), tools=scaffold.TOOLS, purpose="agent")
        self.progress.tick()
        self.prompt_tokens += reply.prompt_tokens
        self.completion_tokens += reply.completion_tokens
        self.cost_usd += reply.cost_usd
        message = dict(reply.message)
        extra = {"cost": reply.cost_usd}
        if reply.format_error:
            raise FormatError(_without_calls(message, extra), _format_error(reply.format_error))
        try:
            calls = [_as_object(c) for c in message.get("tool_calls") or []]
            actions = parse_toolcall_actions(calls, format_error_template="{{ error }}")
        except FormatError as e:
            raise FormatError(_without_calls(message, extra), *e.messages) from None
        return {**message, "extra": {**extra, "actions": actions}}

    def format_message(self, **kwargs: Any) -> dict[str, Any]:
        return dict(kwargs)

    def format_observation_messages(
        self, message: dict, outputs: list[dict], template_vars: dict | None = None
    ) -> list[dict[str, Any]]:
        return [
            {
                "role": "tool",
                "tool_call_id": action["tool_call_id"],
                "content": scaffold.observation(
                    out["output"], out["returncode"], self.config.output_chars
                ),
            }
            for action, out in zip(message["extra"]["actions"], outputs, strict=False)
        ]

    def get_template_vars(self, **kwargs: Any) -> dict[str, Any]:
        return {}

    def serialize(self) -> dict[str, Any]:
        public = {"model": self.teacher.config.model, "teacher_id": self.teacher.teacher_id}
        return {"info": {"config": {"model": public, "model_type": "trajlake.TeacherModel"}}}


class SandboxEnvironment:
    """mini-swe-agent's Environment protocol over a trajlake `Sandbox`."""

    def __init__(self, sandbox: Sandbox, progress: _Progress):
        self.sandbox = sandbox
        self.progress = progress
        self.config = SimpleNamespace(kind=sandbox.kind)

    def execute(self, action: dict, cwd: str = "", **kwargs: Any) -> dict[str, Any]:
        self.progress.tick()
        result = self.sandbox.run(action["command"])
        self.progress.tick()
        output = result.output
        if result.timed_out:
            output += "\n" + scaffold.TIMEOUT_NOTE.format(timeout=result.duration_s)
        first = output.lstrip().splitlines()[:1]
        if first == [scaffold.SUBMIT_MARKER] and result.returncode == 0:
            raise Submitted(_exit("Submitted"))
        return {"output": output, "returncode": result.returncode, "exception_info": ""}

    def get_template_vars(self, **kwargs: Any) -> dict[str, Any]:
        return {}

    def serialize(self) -> dict[str, Any]:
        return {"info": {"config": {"environment_type": f"trajlake.{self.sandbox.kind}"}}}


def run_agent(
    teacher: Teacher,
    open_sandbox: Callable[[], Sandbox],
    request: str,
    config: AgentConfig,
    trajectory_file: Path | None = None,
    on_sandbox_done: Callable[[Sandbox, AgentResult], None] | None = None,
) -> AgentResult:
    """Run one rollout; restart it on a fresh sandbox when it stalls (at most max_requeues).

    `on_sandbox_done` sees the sandbox before it is closed (to take the patch).
    """
    for restart in range(config.max_requeues + 1):
        result = _watched(
            lambda progress: _attempt(
                teacher, open_sandbox, request, config, progress, trajectory_file, on_sandbox_done
            ),
            config.no_progress_s,
        )
        if result is not None:
            result.restarts = restart
            return result
    stalled = f"no progress for {config.no_progress_s:g}s, {config.max_requeues + 1} times"
    return AgentResult([], "Abandoned", error=stalled, restarts=config.max_requeues)


def _watched(
    attempt: Callable[[_Progress], AgentResult], no_progress_s: float
) -> AgentResult | None:
    """Run `attempt` in a thread; None when it stalled (the thread stops at its next step)."""
    progress = _Progress()
    outcome: list[AgentResult | Exception] = []

    def work() -> None:
        try:
            outcome.append(attempt(progress))
        except Exception as e:  # noqa: BLE001 - handed to the caller's thread below
            outcome.append(e)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(timeout=min(1.0, no_progress_s))
        if worker.is_alive() and time.monotonic() - progress.last > no_progress_s:
            progress.abandoned.set()
            return None
    if isinstance(outcome[0], Exception):
        raise outcome[0]
    return outcome[0]


def _attempt(
    teacher: Teacher,
    open_sandbox: Callable[[], Sandbox],
    request: str,
    config: AgentConfig,
    progress: _Progress,
    trajectory_file: Path | None,
    on_sandbox_done: Callable[[Sandbox, AgentResult], None] | None,
) -> AgentResult:
    start = time.monotonic()
    with open_sandbox() as sandbox:
        model = TeacherModel(teacher, config, progress)
        agent = DefaultAgent(
            model,
            SandboxEnvironment(sandbox, progress),
            system_template=scaffold.system_prompt(),
            instance_template="{{task}}",
            step_limit=config.step_limit,
            cost_limit=0,
            wall_time_limit_seconds=int(config.wall_time_s),
            output_path=trajectory_file,
        )
        error = ""
        try:
            exit_status = agent.run(scaffold.task_prompt(request)).get("exit_status", "")
        except (TrajlakeError, _Abandoned) as e:  # the agent already recorded an exit message
            exit_status, error = type(e).__name__, str(e)
        result = AgentResult(
            messages=clean_messages(agent.messages),
            exit_status=exit_status,
            error=error,
            steps=agent.n_calls,
            prompt_tokens=model.prompt_tokens,
            completion_tokens=model.completion_tokens,
            cost_usd=model.cost_usd,
            wall_s=time.monotonic() - start,
        )
        if on_sandbox_done is not None:
            on_sandbox_done(sandbox, result)
    return result


def clean_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The trajectory in plain OpenAI format: no mini-swe-agent bookkeeping, no exit marker."""
    keep = ("role", "content", "reasoning_content", "tool_calls", "tool_call_id")
    return [
        {k: m[k] for k in keep if m.get(k) not in (None, "", [])}
        | {"content": m.get("content") or ""}
        for m in messages
        if m.get("role") != "exit"
    ]


def _for_api(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What is sent back to the teacher: earlier reasoning stays out, as chat templates do."""
    drop = ("extra", "reasoning_content")
    return [{k: v for k, v in m.items() if k not in drop} for m in messages]


def _without_calls(message: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """A malformed reply kept in the trajectory as text (its calls cannot be answered)."""
    return {k: v for k, v in message.items() if k != "tool_calls"} | {"extra": extra}


def _format_error(error: str) -> dict[str, Any]:
    return {
        "role": "user",
        "content": scaffold.format_error(error),
        "extra": {"interrupt_type": "FormatError"},
    }


def _as_object(call: dict[str, Any]) -> SimpleNamespace:
    function = call.get("function") or {}
    return SimpleNamespace(
        id=call.get("id", ""),
        function=SimpleNamespace(
            name=function.get("name", ""), arguments=function.get("arguments", "")
        ),
    )
