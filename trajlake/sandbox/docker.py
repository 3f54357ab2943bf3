"""Commands in a Docker container: `docker run --rm --network none` with the checkout mounted.

Untested in trajlake's own test suite, which runs where no Docker engine is reachable; the
bubblewrap kind is the tested one. The image (sandbox.image) needs bash; the checkout's patch is
taken on the host, so it does not need git. Each command is one container, named so that it can
be killed at the time limit (killing the docker CLI alone would leave it running).
"""

from __future__ import annotations

import os
import subprocess
import uuid

from trajlake.config import SandboxConfig
from trajlake.errors import SandboxError
from trajlake.sandbox.base import SANDBOX_ENV, limited_bash
from trajlake.sandbox.checkout import Checkout
from trajlake.sandbox.process import Launch


def check_docker() -> None:
    """SandboxError unless `docker info` reaches an engine."""
    try:
        done = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    except (FileNotFoundError, subprocess.TimeoutExpired) as e:
        reason = str(e)
    else:
        if done.returncode == 0:
            return
        reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "no output"
    raise SandboxError(
        f"sandbox.kind=docker, but no Docker engine is reachable (`docker info`: {reason}): "
        "start one, or use bubblewrap, which needs no engine: `apt-get install -y bubblewrap` "
        "and `--set sandbox.kind=bubblewrap`"
    )


def docker_launch(config: SandboxConfig, checkout: Checkout, command: str) -> Launch:
    """`docker run` of `command` in `config.image`, the checkout mounted at the same path."""
    name = f"trajlake-{uuid.uuid4().hex[:12]}"
    memory = f"{config.memory_mb}m"
    argv = ["docker", "run", "--rm", "--name", name, "--network", "none", "--init"]
    argv += ["--memory", memory, "--memory-swap", memory, "--pids-limit", "4096"]
    argv += ["-v", f"{checkout.path}:{checkout.path}", "-w", str(checkout.path)]
    for path in checkout.read_paths:  # the checkout borrows the source repository's objects
        argv += ["-v", f"{path}:{path}:ro"]
    for key, value in (SANDBOX_ENV | {"HOME": "/tmp"}).items():
        argv += ["-e", f"{key}={value}"]
    argv += [config.image, *limited_bash(config, command)]
    # The docker CLI needs DOCKER_HOST and the like; the container gets only the -e values.
    return Launch(argv, env=dict(os.environ), stop_argv=["docker", "kill", name])
