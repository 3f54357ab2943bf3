"""bench/sampler.py runs (a quick size) and both methods find the same functions (the script
exits 1 unless they find the same ones: file, name and lines)."""

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
    tables: list[dict[str, list[str]]] = []
    for line in done.stdout.splitlines():
        if line.endswith("cpus"):  # a table's title
            tables.append({})
        elif line.startswith(("sampler", "plain loop")):
            tables[-1][line[:12].strip()] = line[12:].split()
    assert len(tables) == 2, done.stdout  # the commit, then the next one
    for table in tables:
        assert set(table) == {"sampler", "plain loop"}, done.stdout
        assert table["sampler"][0] == table["plain loop"][0] != "0", done.stdout  # same functions
    assert done.stdout.startswith("300 files at one commit")
    assert "the next commit (3 files changed)" in done.stdout
