"""bench/sampler.py runs (a quick size) and both methods find the same functions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.bench, pytest.mark.languages]
ROOT = Path(__file__).resolve().parents[1]


def test_the_sampler_bench_prints_both_methods_with_equal_counts():
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "sampler.py"), "--files", "300", "--repeat", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    rows = {line[:12].strip(): line.split() for line in done.stdout.splitlines()[2:]}
    assert set(rows) == {"sampler", "plain loop"}, done.stdout
    assert rows["sampler"][1] == rows["plain loop"][2] != "0", done.stdout  # same functions
    assert "300 files at one commit" in done.stdout
