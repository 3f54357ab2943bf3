"""Sandboxes for rollouts: a fresh checkout of a commit, commands run isolated inside it.

with open_sandbox(config.sandbox, "/data/repos/requests", "0a1b2c3") as box:
    result = box.run("python -m pytest -q tests/test_utils.py", timeout_s=120)
    patch = box.diff()

Every kind runs commands in the checkout at /testbed; with a repository environment
(trajlake.environments) its files are at /env, read-only, and its bin directories on PATH.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from trajlake.config import SandboxConfig
from trajlake.errors import SandboxDown, SandboxError
from trajlake.sandbox.base import (
    NO_ENVIRONMENT,
    TESTBED,
    CheckoutSandbox,
    EnvironmentMount,
    Mounts,
    Sandbox,
)
from trajlake.sandbox.checkout import Checkout, create_checkout
from trajlake.sandbox.process import CommandResult, Launch


def open_sandbox(
    config: SandboxConfig,
    repo: str | Path,
    commit: str,
    environment: EnvironmentMount = NO_ENVIRONMENT,
) -> Sandbox:
    """A sandbox of the kind `config` names, on a new checkout of `commit` of the git repo `repo`.

    `repo` is a local work tree or bare repository; it is only read. `environment` is mounted
    read-only. Raises SandboxError when the kind cannot run here (see `check_sandbox`), when
    `repo` is not a git repository, or when `commit` is not in it.
    """
    wrap = _launcher(config, environment.image)
    checkout = create_checkout(repo, commit)
    inside = [where.removeprefix(f"{TESTBED}/") for _, where in environment.binds]
    checkout.exclude([path for path in inside if not path.startswith("/")])
    mounts = Mounts(
        checkout.path,
        checkout.tmp,
        checkout.read_paths,
        environment.root,
        environment.binds,
        variables=environment.variables,
    )
    return CheckoutSandbox(
        config.kind, checkout, partial(wrap, mounts), config, environment.environment_id
    )


def started(open_: Callable[[], Sandbox], what: str) -> Sandbox:
    """`open_()`; a sandbox that does not start (its checkout or its launcher failed) is an
    outage, SandboxDown: the record is tried again later, never recorded as a result."""
    try:
        return open_()
    except SandboxError as e:
        raise SandboxDown(f"{what} did not start: {e}") from e


def open_build_sandbox(
    config: SandboxConfig,
    repo: str | Path,
    commit: str,
    environment_dir: Path,
    binds: tuple[tuple[Path, str], ...],
    writable: tuple[tuple[Path, str], ...],
    variables: dict[str, str],
    image: str = "",
) -> Sandbox:
    """A sandbox that builds an environment: like a rollout's, but /env (`environment_dir`) and
    `writable` (the installer's download cache) are writable, `binds` (the installer) read-only,
    and the network is on."""
    wrap = _launcher(config, image)
    checkout = create_checkout(repo, commit)
    mounts = Mounts(
        checkout.path,
        checkout.tmp,
        checkout.read_paths,
        environment_dir,
        binds=binds,
        writable=writable,
        variables=variables,
        build=True,
    )
    return CheckoutSandbox(config.kind, checkout, partial(wrap, mounts), config)


def check_sandbox(config: SandboxConfig) -> None:
    """SandboxError, saying how to fix it, unless the kind `config` names can run commands here:
    bubblewrap installed and able to start a sandbox (it is started once), a Docker engine that
    `docker info` reaches, or local with its opt-in."""
    _launcher(config)


def _launcher(config: SandboxConfig, image: str = "") -> Callable[[Mounts, str], Launch]:
    """How commands of `config.kind` start, once that kind is known to work here."""
    if config.kind == "bubblewrap":
        from trajlake.sandbox.bubblewrap import bubblewrap_launch, check_bubblewrap

        return partial(bubblewrap_launch, check_bubblewrap(), config)
    if config.kind == "docker":
        from trajlake.sandbox.docker import check_docker, docker_launch

        check_docker()
        return partial(docker_launch, config, image)
    if config.kind == "local":
        from trajlake.sandbox.local import check_local, local_launch

        check_local(config)
        return partial(local_launch, config)
    raise SandboxError(
        f"unknown sandbox.kind {config.kind!r}: use bubblewrap, docker or local "
        "(--set sandbox.kind=bubblewrap)"
    )


__all__ = [
    "NO_ENVIRONMENT",
    "started",
    "Checkout",
    "CommandResult",
    "EnvironmentMount",
    "Sandbox",
    "SandboxError",
    "check_sandbox",
    "open_build_sandbox",
    "open_sandbox",
]
