"""bench/bus.py runs as documented (its quick size) and prints every backend and both ratios."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.bench, pytest.mark.kafka]
ROOT = Path(__file__).resolve().parents[1]


def test_the_bus_bench_times_every_backend_and_prints_the_ratios():
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bus.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {}
    for line in done.stdout.splitlines():
        row = re.match(r"(raw kafka-python|runner hop, kafka|runner hop, embedded)\s+(\d+)", line)
        if row:
            rows[row[1]] = int(row[2])
    assert rows == dict.fromkeys(
        ["raw kafka-python", "runner hop, kafka", "runner hop, embedded"], 3000
    )
    assert re.search(r"runner kafka hop / raw kafka-python \(time\):\s+\d+\.\d+x", done.stdout)
    assert re.search(r"embedded hop events/s: [\d,]+", done.stdout)
