"""The rollout agent: mini-swe-agent's loop, driven by trajlake's teacher, acting in a sandbox.

mini-swe-agent supplies the loop (`DefaultAgent`: step limit, wall-clock limit, format-error
handling, the trajectory saved after every step); this module supplies its two plug points:
`TeacherModel` (the OpenAI-compatible teacher with token accounting, offering the scaffold's
tools) and `SandboxEnvironment` (each call run by the scaffold's built-in tool in the rollout's
sandbox, see agent_actions.py). The scaffold (consumers/scaffolds/) decides every text the
model sees. `run_agent` adds a watchdog (watchdog.py): a rollout that makes no progress for
`agent.no_progress_s` is abandoned and started again on a fresh sandbox, a bounded number of
times.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from trajlake.config import AgentConfig
from trajlake.consumers.scaffold import render_system, render_task
from trajlake.consumers.scaffold_spec import Scaffold
from trajlake.consumers.watchdog import Abandoned, Progress, watched
from trajlake.errors import ConfigError, Outage, TrajlakeError
from trajlake.sandbox import Sandbox, started
from trajlake.teacher.client import Teacher
from trajlake.teacher.reply import TeacherReply

# mini-swe-agent prints a banner on import unless told not to.
os.environ.setdefault("MSWEA_SILENT_STARTUP", "1")
try:
    from minisweagent.agents.default import DefaultAgent
    from minisweagent.exceptions import FormatError, LimitsExceeded
except ImportError as e:  # the rollout stages need the `agent` extra
    raise ConfigError(
        f"the rollout stages need mini-swe-agent ({e}): pip install -e '.[agent]'"
    ) from None
from trajlake.consumers.agent_actions import Actions, actions_of  # noqa: E402
from trajlake.consumers.agent_messages import (  # noqa: E402
    clean_messages,
    for_api,
    without_calls,
)


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
    #: the model of the attempt this is the result of (DAgger reads its turns); an abandoned
    #: attempt may build its model after the kept one started, so "the last built" is not it
    model: Any = field(default=None, repr=False, compare=False)


def _exit(status: str, content: str = "") -> dict[str, Any]:
    return {"role": "exit", "content": content, "extra": {"exit_status": status, "submission": ""}}


class TeacherModel:
    """mini-swe-agent's Model protocol over trajlake's `Teacher` (tool calling)."""

    def __init__(
        self,
        teacher: Teacher,
        config: AgentConfig,
        progress: Progress,
        scaffold: Scaffold,
        actions: Actions,
    ):
        self.teacher = teacher
        self.config = config
        self.progress = progress
        self.scaffold = scaffold
        self.actions = actions
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost_usd = 0.0

    def query(self, messages: list[dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
        return self.step(self.ask(self.teacher, messages, "agent"))

    def ask(
        self, policy: Teacher, messages: list[dict[str, Any]], purpose: str, counted: bool = True
    ) -> TeacherReply:
        """One call to `policy` for the next turn, counted against the rollout's token limit
        unless `counted` is False (a DAgger label: it has a budget of its own)."""
        self.progress.tick()
        if counted and self.prompt_tokens + self.completion_tokens >= self.config.token_limit:
            raise LimitsExceeded(_exit("LimitsExceeded", "token limit"))
        tools = self.scaffold.tool_schemas()
        reply = policy.chat(for_api(messages), tools=tools, purpose=purpose)
        self.progress.tick()
        if counted:
            self.prompt_tokens += reply.prompt_tokens
            self.completion_tokens += reply.completion_tokens
        self.cost_usd += reply.cost_usd
        return reply

    def step(self, reply: TeacherReply) -> dict[str, Any]:
        """The reply as mini-swe-agent's next message: its actions, or a FormatError."""
        message = dict(reply.message)
        extra = {"cost": reply.cost_usd}
        try:
            actions = actions_of(self.scaffold, reply)
        except FormatError as e:
            problem = e.messages[0].get("extra", {}).get("problem", "")
            raise FormatError(without_calls(message, extra, problem), *e.messages) from None
        return {**message, "extra": {**extra, "actions": actions}}

    def format_message(self, **kwargs: Any) -> dict[str, Any]:
        return dict(kwargs)

    def format_observation_messages(
        self, message: dict, outputs: list[dict], template_vars: dict | None = None
    ) -> list[dict[str, Any]]:
        """Tool messages answering the calls; a text scaffold's results are user messages."""
        answers = []
        for action, out in zip(message["extra"]["actions"], outputs, strict=False):
            content = self.actions.observe(out, self.config.output_chars)
            if self.scaffold.text_actions:
                answers.append({"role": "user", "content": content})
            else:
                answers.append(
                    {"role": "tool", "tool_call_id": action["tool_call_id"], "content": content}
                )
        return answers

    def get_template_vars(self, **kwargs: Any) -> dict[str, Any]:
        return {}

    def serialize(self) -> dict[str, Any]:
        public = {"model": self.teacher.config.model, "teacher_id": self.teacher.teacher_id}
        return {"info": {"config": {"model": public, "model_type": "trajlake.TeacherModel"}}}


#: Builds an attempt's model: (teacher, agent config, progress, scaffold, actions) -> model.
ModelFactory = Callable[[Teacher, AgentConfig, Progress, Scaffold, Actions], TeacherModel]


class SandboxEnvironment:
    """mini-swe-agent's Environment protocol over a trajlake `Sandbox`."""

    def __init__(self, sandbox: Sandbox, progress: Progress, actions: Actions):
        self.sandbox = sandbox
        self.progress = progress
        self.actions = actions
        self.config = SimpleNamespace(kind=sandbox.kind)

    def execute(self, action: dict, cwd: str = "", **kwargs: Any) -> dict[str, Any]:
        self.progress.tick()
        output = self.actions.execute(action)  # raises Submitted when the episode ends
        self.progress.tick()
        return output | {"exception_info": ""}

    def get_template_vars(self, **kwargs: Any) -> dict[str, Any]:
        return {}

    def serialize(self) -> dict[str, Any]:
        return {"info": {"config": {"environment_type": f"trajlake.{self.sandbox.kind}"}}}


def run_agent(
    teacher: Teacher,
    open_sandbox: Callable[[], Sandbox],
    request: str,
    config: AgentConfig,
    scaffold: Scaffold,
    trajectory_file: Path | None = None,
    on_sandbox_done: Callable[[Sandbox, AgentResult], None] | None = None,
    make_model: ModelFactory | None = None,
) -> AgentResult:
    """Run one rollout; restart it on a fresh sandbox when it stalls (at most max_requeues).

    `on_sandbox_done` sees the sandbox before it is closed (to take the patch); it and
    `trajectory_file` get only the kept attempt's. `make_model` builds each attempt's model
    (default: `TeacherModel`; DAgger mixes in a student).
    """
    for restart in range(config.max_requeues + 1):
        result = watched(
            lambda progress, restart=restart: _attempt(
                teacher,
                open_sandbox,
                request,
                config,
                scaffold,
                progress,
                restart,
                trajectory_file,
                on_sandbox_done,
                make_model or TeacherModel,
            ),
            config.no_progress_s,
        )
        if result is not None:
            result.restarts = restart
            return result
    stalled = f"no progress for {config.no_progress_s:g}s, {config.max_requeues + 1} times"
    return AgentResult([], "Abandoned", error=stalled, restarts=config.max_requeues)


def _attempt(
    teacher: Teacher,
    open_sandbox: Callable[[], Sandbox],
    request: str,
    config: AgentConfig,
    scaffold: Scaffold,
    progress: Progress,
    restart: int,
    trajectory_file: Path | None,
    on_sandbox_done: Callable[[Sandbox, AgentResult], None] | None,
    make_model: ModelFactory,
) -> AgentResult:
    start = time.monotonic()
    saved = _attempt_file(trajectory_file, restart) if trajectory_file else None
    with started(open_sandbox, "the rollout's sandbox") as sandbox:
        actions = Actions(scaffold, sandbox)
        model = make_model(teacher, config, progress, scaffold, actions)
        agent = DefaultAgent(
            model,
            SandboxEnvironment(sandbox, progress, actions),
            system_template="{{system}}",  # rendered here: a scaffold's text is not Jinja
            instance_template="{{task}}",
            step_limit=config.step_limit,
            cost_limit=0,
            wall_time_limit_seconds=int(config.wall_time_s),
            output_path=saved,
        )
        error = ""
        try:
            task = render_task(scaffold, request)
            exit_status = agent.run(task, system=render_system(scaffold)).get("exit_status", "")
        except Outage:  # the infrastructure's, not the model's: never a row; redone whole
            if saved is not None:
                saved.unlink(missing_ok=True)
            raise
        except (TrajlakeError, Abandoned) as e:  # the agent already recorded an exit message
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
            model=model,
        )
        kept = progress.finish()  # False: abandoned, another attempt's result is the rollout's
        if kept and on_sandbox_done is not None:
            on_sandbox_done(sandbox, result)
        if trajectory_file is not None:
            _settle_steps(trajectory_file, restart, config.max_requeues + 1, kept)
    return result


def _attempt_file(trajectory_file: Path, restart: int) -> Path:
    """Where an attempt saves its steps as it goes: a file of its own, as an abandoned attempt
    may still save after the attempt that replaced it has finished."""
    return trajectory_file.with_suffix(f".attempt-{restart}.part")


def _settle_steps(trajectory_file: Path, restart: int, attempts: int, kept: bool) -> None:
    """The kept attempt's steps become `trajectory_file`, and every other attempt file of the
    rollout goes (an abandoned attempt's, or one a killed process left); an abandoned attempt
    removes only its own."""
    own = _attempt_file(trajectory_file, restart)
    if not kept:
        own.unlink(missing_ok=True)
        return
    if own.exists():
        own.replace(trajectory_file)
    for other in range(attempts):
        _attempt_file(trajectory_file, other).unlink(missing_ok=True)
