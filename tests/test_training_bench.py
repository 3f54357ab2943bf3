"""bench/train.py's GPU part: a clear skip without CUDA, and the goals it checks."""

from __future__ import annotations

import os
import subprocess
import sys
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
    """`python bench/train.py --gpu-only --gpu-dry-run`, as bench/README.md shows it: the GPU
    part's code (the recipe's sharded model and step, the plain HF loops, the report) end to
    end with a tiny model, so device time is not lost to a typo."""
    command = [sys.executable, str(BENCH / "train.py"), "--gpu-only", "--gpu-dry-run"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert_every_loop_ran(done.stdout)
    assert "loss chunked, activation checkpointing full (2/2 layers)" in done.stdout


def test_gpu_wheels_run_the_gpu_part_as_bench_readme_says(tmp_path: Path) -> None:
    """bench/gpu_wheels.sh, then bench/README.md's install line, then the GPU part (its dry
    run, here) with the installed wheels first on the path: trajlake is taken from its wheel,
    which holds the recipe and its package data; pydantic and liger-kernel come pinned."""
    wheels_dir, site = tmp_path / "whl", tmp_path / "site"
    pyver = f"{sys.version_info.major}.{sys.version_info.minor}"  # installable here
    script = [BENCH / "gpu_wheels.sh", wheels_dir]
    env = {**os.environ, "PYVER": pyver}
    done = subprocess.run(script, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    wheels = {path.name.split("-")[0]: path for path in wheels_dir.glob("*.whl")}
    names = ["annotated_types", "liger_kernel", "pydantic", "pydantic_core", "trajlake"]
    assert sorted(wheels) == [*names, "typing_inspection"]
    assert f"pydantic-{version('pydantic')}-" in wheels["pydantic"].name

    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target"]
    done = subprocess.run([*pip, site, *wheels.values()], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = "import trajlake.training.loss as m; print(m.__file__)"
    run = {"env": env, "cwd": tmp_path, "capture_output": True, "text": True}
    done = subprocess.run([sys.executable, "-c", where], **run)
    assert done.stdout.startswith(str(site)), done.stdout + done.stderr
    bench = [sys.executable, BENCH / "train.py", "--gpu-only", "--gpu-dry-run", "--gpu-steps", "1"]
    done = subprocess.run(bench, **run)
    assert done.returncode == 0, done.stderr[-2000:]
    assert_every_loop_ran(done.stdout)


def assert_every_loop_ran(stdout: str) -> None:
    """The dry run's table: each loop at 64 and 128 tokens, measured, but Liger's (no CUDA)."""
    table = [line for line in stdout.splitlines() if line.startswith(("plain", "recipe"))]
    rows = [(line[:24].strip(), int(line[25:31]), line[32:42].strip(), line[60:]) for line in table]
    loops = ["plain HF loop", "recipe, AC auto", "recipe, AC full", "plain HF loop + Liger"]
    assert [(loop, n) for loop, n, _, _ in rows] == [(loop, n) for n in (64, 128) for loop in loops]
    for loop, _, rate, note in rows:
        if loop.endswith("Liger"):
            assert rate == "-" and "liger-kernel" in note, stdout
        else:
            assert float(rate.replace(",", "")) > 0, stdout
