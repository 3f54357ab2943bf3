"""Commands in a Docker container: `docker run --rm --network none`, the checkout at /testbed.

No Docker engine runs where trajlake's tests run: the suite checks the command lines built here
(tests/test_sandbox.py), never a container; the bubblewrap kind is the one run. The image is the
repository environment's (`image:` in its spec, e.g. SWE-smith's published image of it) or
`sandbox.image`; it needs bash. The checkout's patch is taken on the host, so it does not need
git. Each command is one container, named so that it can be killed at the time limit (killing
the docker CLI alone would leave it running).
"""

from __future__ import annotations

import os
import subprocess
import uuid

from trajlake.config import SandboxConfig
from trajlake.errors import SandboxError
from trajlake.sandbox.base import ENV_MOUNT, TESTBED, Mounts, limited_bash
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


def docker_launch(config: SandboxConfig, image: str, mounts: Mounts, command: str) -> Launch:
    """`docker run` of `command` in `image` (else sandbox.image), the checkout at /testbed."""
    name = f"trajlake-{uuid.uuid4().hex[:12]}"
    memory = f"{config.memory_mb}m"
    argv = ["docker", "run", "--rm", "--name", name, "--init"]
    argv += ["--network", "bridge" if mounts.build else "none"]
    argv += ["--memory", memory, "--memory-swap", memory, "--pids-limit", "4096"]
    argv += ["-v", f"{mounts.checkout}:{TESTBED}", "-w", TESTBED, "-v", f"{mounts.tmp}:/tmp"]
    for path in mounts.read_paths:  # the checkout borrows the source repository's objects
        argv += ["-v", f"{path}:{path}:ro"]
    if mounts.environment is not None:
        argv += ["-v", f"{mounts.environment}:{ENV_MOUNT}{'' if mounts.build else ':ro'}"]
    for host, inside in mounts.binds:
        argv += ["-v", f"{host}:{inside}:ro"]
    for host, inside in mounts.writable:
        argv += ["-v", f"{host}:{inside}"]
    for key, value in mounts.env().items():
        argv += ["-e", f"{key}={value}"]
    argv += [image or config.image, *limited_bash(config, command)]
    # The docker CLI needs DOCKER_HOST and the like; the container gets only the -e values.
    return Launch(argv, env=dict(os.environ), stop_argv=["docker", "kill", name])
