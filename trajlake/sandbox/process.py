"""Run one command line as a process group: merged, capped output; a wall-clock limit.

Every kind of sandbox ends here. The process starts in a new session (its own process group), so
at the time limit, and after a normal exit too, one `killpg` ends everything it started that stayed
in the group. Bubblewrap goes further: its children live in a PID namespace that dies with them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO


@dataclass(frozen=True)
class CommandResult:
    """What one command did.

    Attributes:
        output: stdout and stderr merged in the order written, decoded as UTF-8 (errors replaced);
            past `sandbox.max_output_bytes` the middle is cut out and a marker says how much.
        returncode: the exit status. -9 when trajlake killed the command at its time limit;
            128+N (bash's convention) when a process inside a sandbox died of signal N, e.g. 137
            (SIGKILL) or 152 (SIGXCPU, past `sandbox.cpu_time_s`).
        timed_out: True when the command was killed at its time limit.
        duration_s: wall-clock seconds from start to the end of the last process.
    """

    output: str
    returncode: int
    timed_out: bool
    duration_s: float


@dataclass(frozen=True)
class Launch:
    """How to start one command: the argv, its environment, and what stops it at the limit.

    `stop_argv`, when set, runs after the process group is killed at the time limit (docker: the
    container outlives the killed CLI, so `docker kill NAME`).
    """

    argv: list[str]
    env: dict[str, str]
    stop_argv: list[str] | None = None


def run_process(
    launch: Launch, cwd: Path, timeout_s: float, max_output_bytes: int
) -> CommandResult:
    """Run `launch` in `cwd`; kill its process group at `timeout_s` seconds."""
    start = time.monotonic()
    proc = subprocess.Popen(
        launch.argv,
        cwd=cwd,
        env=launch.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    output = _CappedOutput(max_output_bytes)
    reader = threading.Thread(target=output.drain, args=(proc.stdout,), daemon=True)
    reader.start()
    timed_out = False
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        _kill_group(proc.pid)
        proc.wait()
    if timed_out and launch.stop_argv:
        subprocess.run(launch.stop_argv, capture_output=True, timeout=60, check=False)
    # A process that left the group (setsid) can hold the pipe open: stop waiting for it.
    reader.join(timeout=5)
    return CommandResult(
        output=output.text(),
        returncode=-signal.SIGKILL if timed_out else proc.returncode,
        timed_out=timed_out,
        duration_s=time.monotonic() - start,
    )


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is already gone
        os.killpg(pgid, signal.SIGKILL)


class _CappedOutput:
    """The first and the last `limit / 2` bytes of a stream, and how many bytes were in between."""

    def __init__(self, limit: int):
        self._half = limit // 2
        self._head = bytearray()
        self._tail = bytearray()
        self._dropped = 0
        self._lock = threading.Lock()

    def drain(self, stream: IO[bytes]) -> None:
        for chunk in iter(lambda: stream.read1(65536), b""):
            with self._lock:
                self._add(chunk)
        stream.close()

    def _add(self, chunk: bytes) -> None:
        room = self._half - len(self._head)
        if room > 0:
            self._head += chunk[:room]
            chunk = chunk[room:]
        self._tail += chunk
        if len(self._tail) > 2 * self._half:
            self._trim()

    def _trim(self) -> None:
        cut = max(0, len(self._tail) - self._half)
        self._dropped += cut
        del self._tail[:cut]

    def text(self) -> str:
        with self._lock:
            self._trim()
            return self._decode()

    def _decode(self) -> str:
        if self._dropped:
            marker = f"\n[… {self._dropped} bytes of output cut …]\n".encode()
            data = bytes(self._head) + marker + bytes(self._tail)
        else:
            data = bytes(self._head + self._tail)
        return data.decode("utf-8", errors="replace")
