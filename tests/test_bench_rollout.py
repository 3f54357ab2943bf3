"""bench/rollout_concurrency.py runs as documented (its quick size): the real rollout1 stage
in bubblewrap against the double, every rollout committed, and a ratio printed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.bench
ROOT = Path(__file__).resolve().parents[1]


def test_the_rollout_bench_runs_every_rollout_and_prints_the_ratio():
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "rollout_concurrency.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]  # it exits 1 unless all were submitted
    [row] = [line.split() for line in done.stdout.splitlines() if re.match(r"\s+8\s+16\s", line)]
    rollouts, calls, ratio = int(row[1]), int(row[2]), float(row[6])
    assert (rollouts, calls) == (16, 48)  # N = 8, 2 rounds, 3 teacher calls each
    assert 0 < ratio <= 1.05
