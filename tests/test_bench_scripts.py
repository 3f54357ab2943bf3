"""The benchmark scripts that have no test of their own run at a small size, as documented in
bench/README.md, and print their verdict line: a bench that stopped running would go unseen."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.bench
ROOT = Path(__file__).resolve().parents[1]

RUNS = {  # script: (small-size arguments, a line its report always prints)
    "verifier.py": (["--pairs", "300", "--repeat", "1"], "r identical on 300/300 pairs"),
    "filter.py": (["--trajectories", "50", "--naive", "10", "--repeat", "1"], "batched / loop:"),
    "mixture.py": (["--rows", "20000", "--data", "{tmp}"], "selection "),
    "lake_scale.py": (
        ["--rollouts", "2000", "--repos", "5", "--days", "2", "--workdir", "{tmp}"],
        "mixture data byte-identical before and after compaction: yes",
    ),
}


@pytest.mark.parametrize("script", sorted(RUNS))
def test_the_bench_runs_at_a_small_size(script: str, tmp_path: Path) -> None:
    arguments, expected = RUNS[script]
    arguments = [a.format(tmp=tmp_path / "data") for a in arguments]
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *arguments],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert expected in done.stdout, done.stdout[-3000:]
