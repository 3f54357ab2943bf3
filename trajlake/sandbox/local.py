"""Commands run directly on the host, in the checkout: no isolation at all, opt-in only.

The environment is as clean as in the other kinds and the time and memory limits hold, but a
command can read and write anything the user running trajlake can, reach the network, and leave
processes behind by starting a new session. Use it only where nothing else runs. The checkout
stays where it is on the host (there is no /testbed), so a repository environment, built for
/testbed, is not used.
"""

from __future__ import annotations

from trajlake.config import SandboxConfig
from trajlake.errors import SandboxError
from trajlake.sandbox.base import SANDBOX_ENV, Mounts, limited_bash
from trajlake.sandbox.process import Launch


def check_local(config: SandboxConfig) -> None:
    if not config.allow_unsafe_local:
        raise SandboxError(
            "sandbox.kind=local runs agent commands unsandboxed on this machine: accept that "
            "with `--set sandbox.allow_unsafe_local=true`, or use bubblewrap "
            "(`apt-get install -y bubblewrap`, `--set sandbox.kind=bubblewrap`)"
        )


def local_launch(config: SandboxConfig, mounts: Mounts, command: str) -> Launch:
    """`command` under bash in the checkout, with a clean environment and HOME in the sandbox."""
    env = SANDBOX_ENV | {"HOME": str(mounts.tmp), "TMPDIR": str(mounts.tmp)}
    return Launch(limited_bash(config, command), env=env)
