"""`python -m trajlake.realmodel fetch|serve` run as a command line, on the paths that need
neither the network nor a llama-server that runs here: usage, a model found in the cache, and
the errors that say what to do (the real download and server are in test_realmodel.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from trajlake.realmodel import MODELS, QWEN_05B

USAGE = f"usage: python -m trajlake.realmodel fetch|serve [{'|'.join(MODELS)}]\n"


def realmodel(*args: str, **env: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "trajlake.realmodel", *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=120, env={**os.environ, **env}
    )


def cached_model(cache: Path) -> Path:
    """A file of the pinned model's name and size in `cache`, as a finished fetch leaves it
    (sparse: the cache trusts the size of what it assembled and checked)."""
    cache.mkdir(parents=True, exist_ok=True)
    gguf = cache / f"{QWEN_05B.name}.gguf"
    with gguf.open("wb") as f:
        f.truncate(QWEN_05B.size)
    return gguf


def test_help_and_wrong_words_print_the_usage() -> None:
    done = realmodel("--help")
    assert (done.returncode, done.stdout) == (0, USAGE)
    for wrong in ((), ("pull",), ("fetch", QWEN_05B.name, "extra")):
        done = realmodel(*wrong)
        assert (done.returncode, done.stdout) == (2, USAGE)


def test_an_unknown_model_is_named_with_the_known_ones() -> None:
    done = realmodel("fetch", "llama-70b")
    assert done.returncode == 2
    assert done.stderr == f"unknown model llama-70b: pick one of {', '.join(MODELS)}\n"


def test_fetch_prints_the_path_of_the_model_in_the_cache(tmp_path: Path) -> None:
    gguf = cached_model(tmp_path / "models")
    done = realmodel("fetch", QWEN_05B.name, TRAJLAKE_MODEL_CACHE=str(gguf.parent))
    assert (done.returncode, done.stdout, done.stderr) == (0, f"{gguf}\n", "")


def test_serve_with_a_server_path_that_is_no_file_says_so(tmp_path: Path) -> None:
    gguf = cached_model(tmp_path / "models")
    missing = tmp_path / "no-such-llama-server"
    env = {"TRAJLAKE_MODEL_CACHE": str(gguf.parent), "TRAJLAKE_LLAMA_SERVER": str(missing)}
    done = realmodel("serve", **env)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        f"error: TRAJLAKE_LLAMA_SERVER={missing} is not a file: give a llama-server path\n"
    )


def test_serve_where_llama_server_dies_of_sigill_says_which_build_to_use(tmp_path: Path) -> None:
    """What happens here with the wheel's llama-server (built for AVX-512): it dies of SIGILL
    at start, and the command says to point TRAJLAKE_LLAMA_SERVER at a build for this CPU and
    that it serves the model with transformers instead, which a file that is no GGUF fails."""
    gguf = cached_model(tmp_path / "models")
    server = tmp_path / "llama-server"
    server.write_text("#!/bin/sh\necho 'illegal instruction ahead'\nkill -ILL $$\n")
    server.chmod(0o755)
    env = {"TRAJLAKE_MODEL_CACHE": str(gguf.parent), "TRAJLAKE_LLAMA_SERVER": str(server)}
    done = realmodel("serve", **env)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith("llama-server died of SIGILL: it was built for ")
    assert "set TRAJLAKE_LLAMA_SERVER to a llama-server built for this machine" in done.stderr
    assert "illegal instruction ahead\n\nserving " in done.stderr  # the log's tail, shown
    assert "with transformers instead\n" in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot serve ") and "with transformers either" in last, last
    log = gguf.parent / "llama-server.log"
    assert f"Log {log}:" in done.stderr and "illegal instruction ahead" in log.read_text()
