"""Commands in a bubblewrap sandbox: host read-only, checkout writable, no network, no secrets.

Each command is one `bwrap` process:

- a private root (tmpfs, made read-only once everything is mounted) holding the host's top-level
  directories read-only, so that /testbed and /env can be mount points; a private /tmp (the
  checkout's `tmp/`, kept between the commands of one sandbox and deleted with it, so HOME=/tmp
  works), the source repository read-only (the checkout borrows its objects), the checkout
  writable at /testbed, the repository's environment (if any) read-only at /env;
- new user, PID, network (loopback only), IPC and UTS namespaces (`--unshare-all`) and no
  capabilities (`--cap-drop ALL`: run as root, bwrap otherwise keeps them, and a command could
  remount / read-write); only an environment *build* shares the host's network;
- a clean environment (`--clearenv`): nothing from os.environ, so no API key, reaches a command;
- `--die-with-parent` and a PID namespace: when trajlake kills bwrap at the time limit, every
  process the command started dies with it; `--new-session` keeps it off the terminal.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess

from trajlake.config import SandboxConfig
from trajlake.errors import SandboxError
from trajlake.sandbox.base import ENV_MOUNT, SANDBOX_PATH, TESTBED, Mounts, limited_bash
from trajlake.sandbox.process import Launch

INSTALL_HINT = (
    "install it with `apt-get install -y bubblewrap`, or run unsandboxed at your own risk with "
    "`--set sandbox.kind=local --set sandbox.allow_unsafe_local=true`"
)
ISOLATION = ["--unshare-all", "--cap-drop", "ALL", "--die-with-parent", "--new-session"]
#: Top-level host entries a sandbox never takes from the host.
_PRIVATE = {"proc", "dev", "tmp", TESTBED.strip("/"), ENV_MOUNT.strip("/"), "trajlake"}


@functools.cache
def system_mounts() -> tuple[str, ...]:
    """The host's top-level directories (and links) read-only on a tmpfs root, /dev and /proc.

    A read-only bind of / itself cannot take new top-level mount points such as /testbed.
    """
    mounts = ["--tmpfs", "/"]
    for name in sorted(os.listdir("/")):
        if name in _PRIVATE:
            continue
        path = f"/{name}"
        if os.path.islink(path):
            mounts += ["--symlink", os.readlink(path), path]
        elif os.path.exists(path):
            mounts += ["--ro-bind", path, path]
    return (*mounts, "--dev", "/dev", "--proc", "/proc")


def check_bubblewrap() -> str:
    """The path of a working bwrap; SandboxError saying how to get one otherwise."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxError(
            f"sandbox.kind=bubblewrap, but bubblewrap (bwrap) is not on PATH: {INSTALL_HINT}"
        )
    _probe(bwrap)
    return bwrap


@functools.cache
def _probe(bwrap: str) -> None:
    """Start one sandbox as commands get it (mounts, namespaces, clean environment) running
    `true`. Asked once per process (a failure is not cached)."""
    argv = [bwrap, *system_mounts(), *ISOLATION, "--clearenv", "--", "true"]
    try:
        probe = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SandboxError(f"{bwrap} cannot be started ({e}): {INSTALL_HINT}") from None
    if probe.returncode != 0:
        raise SandboxError(
            f"bubblewrap cannot create a sandbox here (`{' '.join(argv)}` said: "
            f"{probe.stderr.strip() or f'exit status {probe.returncode}'}): allow "
            "unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1; on Ubuntu "
            "24.04+ kernel.apparmor_restrict_unprivileged_userns=0), run trajlake as root, or, in "
            "a container, give it its own /proc (docker: --security-opt systempaths=unconfined)"
        )


def bubblewrap_launch(bwrap: str, config: SandboxConfig, mounts: Mounts, command: str) -> Launch:
    """The bwrap argv that runs `command` in /testbed under `config`'s limits."""
    argv = [bwrap, *system_mounts(), "--bind", str(mounts.tmp), "/tmp"]
    for path in mounts.read_paths:
        argv += ["--ro-bind", str(path), str(path)]
    argv += ["--bind", str(mounts.checkout), TESTBED]
    if mounts.environment is not None:
        argv += ["--bind" if mounts.build else "--ro-bind", str(mounts.environment), ENV_MOUNT]
    for host, inside in mounts.binds:
        argv += ["--ro-bind", str(host), inside]
    for host, inside in mounts.writable:
        argv += ["--bind", str(host), inside]
    argv += ["--remount-ro", "/", *ISOLATION]
    if mounts.build:
        argv += ["--share-net"]
    argv += ["--clearenv"]
    for key, value in mounts.env().items():
        argv += ["--setenv", key, value]
    argv += ["--chdir", TESTBED]
    # bwrap itself gets a clean environment too, in case it is a wrapper script.
    return Launch([*argv, "--", *limited_bash(config, command)], env={"PATH": SANDBOX_PATH})
