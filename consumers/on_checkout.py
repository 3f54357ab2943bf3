"""One agent run on a fresh checkout of an event's commit, in its repository's environment.

Shared by the rollout stages and DAgger collection: where the checkout comes from, which
environment it gets, and what of the run is kept (its patch, the sandbox kind, the environment).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trajlake.config import Config
from trajlake.consumers.agent import AgentResult, ModelFactory, run_agent
from trajlake.consumers.scaffold_spec import Scaffold
from trajlake.environments import rollout_mount
from trajlake.repos import local_git_dir
from trajlake.sandbox import Sandbox, open_sandbox
from trajlake.schemas import Event
from trajlake.teacher.client import Teacher


@dataclass(frozen=True)
class Ran:
    """One agent run: how it ended, its patch, and where it ran (sandbox kind, environment)."""

    result: AgentResult
    patch: str
    sandbox: str
    environment_id: str


def run_on_checkout(
    config: Config,
    scaffold: Scaffold,
    teacher: Teacher,
    event: Event,
    rollout_id: str,
    request: str,
    make_model: ModelFactory | None = None,
) -> Ran:
    """The agent on a fresh checkout of the event's commit, in the repository's environment
    (built first if this machine lacks it: a spec that fails to build raises, and the record
    becomes a dead letter). `make_model` builds each attempt's model as in run_agent (DAgger
    mixes in the student)."""
    repo_dir = local_git_dir(event.repo_url, config.producer.mirrors, event.commit)
    environment = rollout_mount(config, event.repo, event.repo_url, event.commit)
    taken: dict[str, str] = {}

    def keep_patch(sandbox: Sandbox, _: AgentResult) -> None:
        taken["patch"], taken["kind"] = sandbox.diff(), sandbox.kind

    result = run_agent(
        teacher,
        lambda: open_sandbox(config.sandbox, repo_dir, event.commit, environment),
        request,
        config.agent,
        scaffold,
        trajectory_file=Path(config.agent.trajectories) / f"{rollout_id}.json",
        on_sandbox_done=keep_patch,
        make_model=make_model,
    )
    return Ran(
        result,
        taken.get("patch", ""),
        taken.get("kind", config.sandbox.kind),
        environment.environment_id,
    )
