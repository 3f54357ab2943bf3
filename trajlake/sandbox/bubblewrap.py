"""Commands in a bubblewrap sandbox: host read-only, checkout writable, no network, no secrets.

Each command is one `bwrap` process:

- the host file system read-only (`--ro-bind / /`), a private /tmp (the checkout's `tmp/`, kept
  between the commands of one sandbox and deleted with it, so HOME=/tmp works), the source
  repository read-only (the checkout borrows its objects), the checkout writable;
- new user, PID, network (loopback only), IPC and UTS namespaces (`--unshare-all`) and no
  capabilities (`--cap-drop ALL`: run as root, bwrap otherwise keeps them, and a command could
  remount / read-write);
- a clean environment (`--clearenv`): nothing from os.environ, so no API key, reaches a command;
- `--die-with-parent` and a PID namespace: when trajlake kills bwrap at the time limit, every
  process the command started dies with it; `--new-session` keeps it off the terminal.
"""

from __future__ import annotations

import functools
import shutil
import subprocess

from trajlake.config import SandboxConfig
from trajlake.errors import SandboxError
from trajlake.sandbox.base import SANDBOX_ENV, SANDBOX_PATH, limited_bash
from trajlake.sandbox.checkout import Checkout
from trajlake.sandbox.process import Launch

INSTALL_HINT = (
    "install it with `apt-get install -y bubblewrap`, or run unsandboxed at your own risk with "
    "`--set sandbox.kind=local --set sandbox.allow_unsafe_local=true`"
)
ISOLATION = ["--unshare-all", "--cap-drop", "ALL", "--die-with-parent", "--new-session"]
#: What every command's sandbox mounts besides the checkout; the probe mounts the same.
SYSTEM_MOUNTS = ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]


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
    argv = [bwrap, *SYSTEM_MOUNTS, *ISOLATION, "--clearenv", "--", "true"]
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


def bubblewrap_launch(
    bwrap: str, config: SandboxConfig, checkout: Checkout, command: str
) -> Launch:
    """The bwrap argv that runs `command` in `checkout` under `config`'s limits."""
    mounts = [*SYSTEM_MOUNTS, "--bind", str(checkout.tmp), "/tmp"]
    for path in checkout.read_paths:
        mounts += ["--ro-bind", str(path), str(path)]
    mounts += ["--bind", str(checkout.path), str(checkout.path)]
    env = ["--clearenv"]
    for key, value in (SANDBOX_ENV | {"HOME": "/tmp"}).items():
        env += ["--setenv", key, value]
    argv = [bwrap, *mounts, *ISOLATION, *env, "--chdir", str(checkout.path)]
    # bwrap itself gets a clean environment too, in case it is a wrapper script.
    return Launch([*argv, "--", *limited_bash(config, command)], env={"PATH": SANDBOX_PATH})
