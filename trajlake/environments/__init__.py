"""Repositories' own environments: their dependencies installed, their code and tests runnable.

    env = environment_for(config, "click", "/data/click", sha)      # built once per machine
    with open_sandbox(config.sandbox, "/data/click", sha, env.mount()) as box:
        box.run("python -m pytest -q tests/test_basic.py")           # click's own python, pytest

A spec (spec.py) says what to install and how to run the tests; `resolve` ties it to a commit
and a build key; `ensure_environment` (build.py) builds it into this machine's cache unless it is
there; the sandbox mounts it read-only at /env with the checkout at /testbed.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from trajlake.config import Config
from trajlake.environments.build import Environment, ensure_environment
from trajlake.environments.resolve import Resolved, resolve
from trajlake.environments.spec import EnvSpec, check_source, read_spec
from trajlake.producers.git import git
from trajlake.repos import local_git_dir
from trajlake.sandbox import NO_ENVIRONMENT, EnvironmentMount

log = logging.getLogger(__name__)


def resolve_for(config: Config, repo: str, repo_url: str, commit: str) -> Resolved:
    """The spec and build key of `repo` at `commit` (any revision git understands)."""
    git_dir = local_git_dir(repo_url, config.producer.mirrors, commit)
    sha = git(git_dir, "rev-parse", "--verify", f"{commit}^{{commit}}").decode().strip()
    return resolve(config, repo, repo_url, git_dir, sha)


def environment_for(
    config: Config,
    repo: str,
    repo_url: str,
    commit: str,
    progress: Callable[[str], None] | None = None,
) -> Environment:
    """The built environment of `repo` at `commit`, built first unless this machine has it."""
    return ensure_environment(config, resolve_for(config, repo, repo_url, commit), progress)


def rollout_mount(config: Config, repo: str, repo_url: str, commit: str) -> EnvironmentMount:
    """What a rollout on `commit` mounts. The local sandbox kind has no /testbed to build for,
    so it runs without an environment (said once in the log)."""
    if config.sandbox.kind == "local":
        _say_local_has_none()
        return NO_ENVIRONMENT
    return environment_for(config, repo, repo_url, commit).mount()


@functools.cache
def _say_local_has_none() -> None:
    log.warning("sandbox.kind=local: rollouts run without their repository's environment")


__all__ = [
    "EnvSpec",
    "Environment",
    "Resolved",
    "check_source",
    "environment_for",
    "read_spec",
    "resolve_for",
    "rollout_mount",
]
