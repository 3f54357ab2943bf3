"""Sandboxes for rollouts: a fresh checkout of a commit, commands run isolated inside it.

with open_sandbox(config.sandbox, "/data/repos/requests", "0a1b2c3") as box:
    result = box.run("python -m pytest -q tests/test_utils.py", timeout_s=120)
    patch = box.diff()
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from trajlake.config import SandboxConfig
from trajlake.errors import SandboxError
from trajlake.sandbox.base import CheckoutSandbox, Sandbox
from trajlake.sandbox.checkout import create_checkout
from trajlake.sandbox.process import CommandResult


def open_sandbox(config: SandboxConfig, repo: str | Path, commit: str) -> Sandbox:
    """A sandbox of the kind `config` names, on a new checkout of `commit` of the git repo `repo`.

    `repo` is a local work tree or bare repository; it is only read. Raises SandboxError when the
    kind cannot run here (no bwrap, no Docker engine, local without opt-in), when `repo` is not a
    git repository, or when `commit` is not in it.
    """
    if config.kind == "bubblewrap":
        from trajlake.sandbox.bubblewrap import bubblewrap_launch, check_bubblewrap

        wrap = partial(bubblewrap_launch, check_bubblewrap(), config)
    elif config.kind == "docker":
        from trajlake.sandbox.docker import check_docker, docker_launch

        check_docker()
        wrap = partial(docker_launch, config)
    elif config.kind == "local":
        from trajlake.sandbox.local import check_local, local_launch

        check_local(config)
        wrap = partial(local_launch, config)
    else:
        raise SandboxError(f"unknown sandbox.kind {config.kind!r}: use bubblewrap, docker or local")
    checkout = create_checkout(repo, commit)
    return CheckoutSandbox(config.kind, checkout, partial(wrap, checkout), config)


__all__ = ["CommandResult", "Sandbox", "SandboxError", "open_sandbox"]
