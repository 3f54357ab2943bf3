"""The sandbox interface, and the one implementation every kind shares.

A kind (bubblewrap, docker, local) is only a function from a command line to a `Launch`; the
checkout, the patch, the limits and the clean-up are the same for all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Protocol

from trajlake.config import SandboxConfig
from trajlake.errors import SandboxError
from trajlake.sandbox.checkout import Checkout
from trajlake.sandbox.process import CommandResult, Launch, run_process

# The whole environment a command sees; HOME is added per kind. Nothing comes from os.environ.
SANDBOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SANDBOX_ENV = {"PATH": SANDBOX_PATH, "LANG": "C.UTF-8", "TERM": "dumb", "PAGER": "cat"}
#: Where every sandbox has the checkout (SWE-bench's and SWE-agent's path) and the environment.
TESTBED = "/testbed"
ENV_MOUNT = "/env"


@dataclass(frozen=True)
class EnvironmentMount:
    """A built repository environment as a sandbox mounts it (trajlake.environments makes it).

    Attributes:
        environment_id: recorded on every rollout run in it; "" for no environment.
        root: the host directory mounted at /env; None when there is nothing to mount.
        binds: (host path, sandbox path) pairs mounted read-only, e.g. /testbed/node_modules.
        variables: PATH (the environment's bin directories first) and the spec's variables.
        image: docker: the image the environment names ("" for sandbox.image).
    """

    environment_id: str = ""
    root: Path | None = None
    binds: tuple[tuple[Path, str], ...] = ()
    variables: dict[str, str] = field(default_factory=dict)
    image: str = ""


NO_ENVIRONMENT = EnvironmentMount()


@dataclass(frozen=True)
class Mounts:
    """What one sandbox's commands see, whatever the kind.

    Attributes:
        checkout: the host directory mounted writable at /testbed, the working directory.
        tmp: the host directory mounted writable at /tmp (HOME).
        read_paths: host paths mounted read-only at the same path (the source's git objects).
        environment: the host directory mounted at /env (read-only unless `build`), or None.
        binds: (host path, sandbox path) pairs mounted read-only, e.g. a node_modules.
        writable: (host path, sandbox path) pairs mounted writable (a build's download cache).
        variables: environment variables on top of SANDBOX_ENV (PATH included when changed).
        build: an environment build: /env writable and the network on; never a rollout.
    """

    checkout: Path
    tmp: Path
    read_paths: tuple[Path, ...] = ()
    environment: Path | None = None
    binds: tuple[tuple[Path, str], ...] = ()
    writable: tuple[tuple[Path, str], ...] = ()
    variables: dict[str, str] = field(default_factory=dict)
    build: bool = False

    def env(self) -> dict[str, str]:
        """The whole environment a command gets."""
        return SANDBOX_ENV | {"HOME": "/tmp"} | self.variables


class Sandbox(Protocol):
    """A private checkout of one commit, and a way to run commands in it.

    `run` executes `bash -c COMMAND` with the checkout as the working directory; processes a
    command starts do not outlive it. `diff` is the patch of everything changed since the commit.
    `close` deletes the checkout; a sandbox is also a context manager that closes itself.
    """

    kind: str
    workdir: Path
    environment_id: str

    def run(self, command: str, timeout_s: float | None = None) -> CommandResult: ...

    def diff(self) -> str: ...

    def apply(self, patch: str, skip: list[str] = ()) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Sandbox: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class CheckoutSandbox:
    """A `Sandbox` whose commands start the way `wrap` says (bwrap, docker run, or directly)."""

    def __init__(
        self,
        kind: str,
        checkout: Checkout,
        wrap: Callable[[str], Launch],
        config: SandboxConfig,
        environment_id: str = "",
    ):
        self.kind = kind
        self.workdir = checkout.path
        self._checkout = checkout
        self._wrap = wrap
        self._config = config
        self._closed = False
        self.environment_id = environment_id

    def run(self, command: str, timeout_s: float | None = None) -> CommandResult:
        """Run `command` with bash in the checkout; `timeout_s` defaults to the config's."""
        self._check_open()
        return run_process(
            self._wrap(command),
            cwd=self.workdir,
            timeout_s=self._config.command_timeout_s if timeout_s is None else timeout_s,
            max_output_bytes=self._config.max_output_bytes,
        )

    def launch(self, command: str) -> Launch:
        """How `command` would start in this sandbox (for `trajlake env shell`'s terminal)."""
        self._check_open()
        return self._wrap(command)

    def diff(self) -> str:
        self._check_open()
        return self._checkout.diff()

    def apply(self, patch: str, skip: list[str] = ()) -> None:
        """Apply a patch of `diff`'s making to the checkout (the files in `skip` left out)."""
        self._check_open()
        self._checkout.apply(patch, skip)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._checkout.remove()

    def __enter__(self) -> CheckoutSandbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise SandboxError(
                f"the {self.kind} sandbox for {self.workdir} is closed: open a new one"
            )


def limited_bash(config: SandboxConfig, command: str) -> list[str]:
    """argv that sets the per-process limits, then runs `command` with bash.

    `ulimit -v` caps each process's address space (programs that reserve much more virtual memory
    than they use, such as the JVM or Node, need a higher memory_mb); `ulimit -t` caps CPU seconds.
    """
    limits = [f"ulimit -v {config.memory_mb * 1024}"]
    if config.cpu_time_s:  # SIGXCPU at the soft limit, SIGKILL a second later
        limits += [f"ulimit -S -t {config.cpu_time_s}", f"ulimit -H -t {config.cpu_time_s + 1}"]
    script = " && ".join([*limits, 'exec bash -c "$1"'])
    return ["bash", "-c", script, "trajlake-sandbox", command]
