"""bench/train.py's GPU part: a clear skip without CUDA, and the goals it checks."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))
import train_gpu  # noqa: E402  (bench/ is a folder of scripts, not a package)

pytestmark = pytest.mark.training


@pytest.mark.skipif(torch.cuda.is_available(), reason="runs the GPU part where CUDA is present")
def test_the_gpu_part_skips_with_a_message_without_cuda() -> None:
    command = [sys.executable, str(BENCH / "train.py"), "--gpu-only"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("GPU part skipped: no CUDA device here")


def test_the_report_checks_the_issues_goals() -> None:
    row = train_gpu.Row
    rows = [
        row("recipe, AC auto", 8192, 30000.0, 0.40, 50.0, ""),
        row("recipe, AC full", 8192, None, None, None, "out of memory"),
        row("plain HF loop", 8192, 18000.0, 0.25, 38.4, ""),
        row("plain HF loop + Liger", 8192, None, None, None, "liger-kernel not installed"),
        row("recipe, AC auto", 32768, 17000.0, 0.44, 120.0, ""),
        row("recipe, AC full", 32768, 15000.0, 0.39, 33.0, ""),
        row("plain HF loop", 32768, 14000.0, 0.31, 92.4, ""),
        row("plain HF loop + Liger", 32768, 17155.0, 0.375, 32.2, ""),
    ]
    lines = train_gpu.report(rows)
    assert len(lines) == 1 + len(rows) + 2
    assert lines[-2] == ("goals at 8192: MFU >= 35%: met, ahead of the baselines that ran: met")
    assert lines[-1] == (
        "goals at 32768: MFU >= 45%: NOT met, peak <= 35 GiB: met, "
        "ahead of the baselines that ran: NOT met"
    )


def test_the_gpu_parts_dry_run_takes_every_loop_through_a_step_on_the_cpu() -> None:
    """`--gpu-dry-run`: the GPU part's code (the recipe's sharded model and step, the plain HF
    loops, the report) end to end with a tiny model, so device time is not lost to a typo."""
    command = [sys.executable, str(BENCH / "train.py"), "--gpu-only", "--gpu-dry-run"]
    done = subprocess.run(
        command + ["--gpu-steps", "1"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    table = [line for line in done.stdout.splitlines() if line.startswith(("plain", "recipe"))]
    rows = [(line[:24].strip(), int(line[25:31]), line[32:42].strip(), line[60:]) for line in table]
    loops = ["plain HF loop", "recipe, AC auto", "recipe, AC full", "plain HF loop + Liger"]
    assert [(loop, n) for loop, n, _, _ in rows] == [(loop, n) for n in (64, 128) for loop in loops]
    for loop, _, rate, note in rows:
        if loop.endswith("Liger"):
            assert rate == "-" and "liger-kernel" in note  # no Liger on the CPU
        else:
            assert float(rate.replace(",", "")) > 0, done.stdout
    assert "loss chunked, activation checkpointing full (2/2 layers)" in done.stdout


def test_gpu_wheels_holds_what_a_bare_cuda_image_lacks(tmp_path: Path) -> None:
    """bench/gpu_wheels.sh: trajlake (with the recipe and its package data) and the pydantic
    and liger-kernel wheels, pinned, for the Python asked for."""
    env = {**os.environ, "PYVER": "3.11"}
    script = BENCH / "gpu_wheels.sh"
    done = subprocess.run([script, tmp_path], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    wheels = {path.name.split("-")[0]: path for path in tmp_path.glob("*.whl")}
    names = ["annotated_types", "liger_kernel", "pydantic", "pydantic_core", "trajlake"]
    assert sorted(wheels) == [*names, "typing_inspection"]
    assert f"pydantic-{version('pydantic')}-" in wheels["pydantic"].name
    assert "cp311" in wheels["pydantic_core"].name
    with zipfile.ZipFile(wheels["trajlake"]) as built:
        files = set(built.namelist())
    assert {"trajlake/training/loss.py", "trajlake/consumers/languages.yaml"} <= files
