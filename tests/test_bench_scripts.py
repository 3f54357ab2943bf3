"""The benchmark scripts run at a small size, as bench/README.md documents them, and print their
report: a bench that stopped running would otherwise go unseen. (sampler.py and train.py have
tests of their own, which also check what they measure.)"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.bench
ROOT = Path(__file__).resolve().parents[1]

RUNS = {  # script: (small-size arguments, a line its report always prints)
    "verifier.py": (["--pairs", "300", "--repeat", "1"], "r identical on 300/300 pairs"),
    "filter.py": (["--trajectories", "50", "--naive", "10", "--repeat", "1"], "batched / loop:"),
    "mixture.py": (
        ["--rows", "20000", "--data", "{tmp}", "--no-goals"],
        "same rows both ways: yes",
    ),
    "environments.py": (["--quick", "--no-goals"], "cache hit (the same cache again)"),
    "tester.py": (["--quick"], "share of click's suite selected"),
    "lake_scale.py": (
        ["--rollouts", "2000", "--repos", "5", "--days", "2", "--workdir", "{tmp}"],
        "mixture data byte-identical before and after compaction: yes",
    ),
}


def run_bench(script: str, *arguments: str, cwd: Path | None = None) -> str:
    """`python bench/SCRIPT ARGUMENTS`; its standard output, once it exits 0."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *arguments],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.parametrize("script", sorted(RUNS))
def test_the_bench_runs_at_a_small_size(script: str, tmp_path: Path) -> None:
    arguments, expected = RUNS[script]
    out = run_bench(script, *[a.format(tmp=tmp_path / "data") for a in arguments], cwd=tmp_path)
    assert expected in out, out[-3000:]


@pytest.mark.kafka
def test_the_bus_bench_times_every_backend_and_prints_the_ratios():
    out = run_bench("bus.py", "--quick")
    rows = {}
    for line in out.splitlines():
        row = re.match(r"(raw kafka-python|runner hop, kafka|runner hop, embedded)\s+(\d+)", line)
        if row:
            rows[row[1]] = int(row[2])
    backends = ["raw kafka-python", "runner hop, kafka", "runner hop, embedded"]
    assert rows == dict.fromkeys(backends, 3000)
    assert re.search(r"runner kafka hop / raw kafka-python \(time\):\s+\d+\.\d+x", out)
    assert re.search(r"embedded hop events/s: [\d,]+", out)


def test_the_rollout_bench_runs_every_rollout_and_prints_the_ratio():
    """The real rollout1 stage in bubblewrap against the double; the script exits 1 unless every
    rollout was committed, submitted and self-evaluated."""
    out = run_bench("rollout_concurrency.py", "--quick")
    [row] = [line.split() for line in out.splitlines() if re.match(r"\s+8\s+16\s", line)]
    rollouts, calls, ratio = int(row[1]), int(row[2]), float(row[6])
    assert (rollouts, calls) == (16, 48)  # N = 8, 2 rounds, 3 teacher calls each
    assert 0 < ratio <= 1.05
