"""Chaos: the six stages as their own processes, SIGKILLed at random moments, on both buses.

A repository of 50 functions in 5 commits goes through the whole pipeline (commits → tasks →
T1 → PR → T2 → verdict → samples) with the scripted teacher double over HTTP, real bubblewrap
sandboxes, the real bus and lake. Working stage processes (they have committed work since they
started and have more to do) are SIGKILLed at least KILLS times and restarted after a random
pause; the others keep running. When every stage is idle, each table must hold exactly the
event ids of an undisturbed run (all stages in one process, nothing killed), no id twice in
the raw Parquet files (not only in the deduplicating views), and no dead letter.

The undisturbed run uses the same repository (the same path: a commit's id is made from the
repository's URL and the sha), the same tokenizer and the same config but for its paths.
"""

from __future__ import annotations

import random
import time

import pytest
from chaos_helpers import Fleet, build_repo, chaos_config, duplicates, emit_commits, raw_ids
from helpers import write_config

from trajlake.bus import open_bus
from trajlake.config import BusConfig
from trajlake.demo import ensure_tokenizer
from trajlake.pipeline import run_pipeline
from trajlake.teacher.double import demo_script_path, serve

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

COMMITS = 5
PER_COMMIT = 10  # functions added per commit: one task each (sampler.mode=changed)
KILLS = 10
LATENCY_S = 0.3  # per teacher call in the chaos runs: the teacher, not the CPU, sets the pace


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("chaos")
    repo = build_repo(base / "repo", COMMITS, PER_COMMIT)
    ensure_tokenizer(repo, base / "tokenizer")
    return {"repo": repo, "tokenizer": base / "tokenizer"}


@pytest.fixture(scope="module")
def reference(shared: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Raw event ids per table of an undisturbed run: `trajlake run`'s loop, embedded bus."""
    workdir = tmp_path_factory.mktemp("reference")
    with serve(demo_script_path()) as double:
        config = chaos_config(workdir, BusConfig(), double.url, shared["tokenizer"])
        emit_commits(config, shared["repo"], COMMITS)
        bus = open_bus(config.bus)
        try:
            run_pipeline(config, bus)
        finally:
            bus.close()
    return raw_ids(config.lake.root)


def test_random_sigkills_leave_exactly_the_lake_of_an_undisturbed_run(
    bus_config, shared, reference, tmp_path
):
    assert len(set(reference["tasks"])) == COMMITS * PER_COMMIT
    assert len(set(reference["samples"])) == 2 * COMMITS * PER_COMMIT  # one per T1 and T2
    assert not any(duplicates(ids) for ids in reference.values())
    assert reference["dlq"] == []

    logs = tmp_path / "logs"
    logs.mkdir()
    with serve(demo_script_path(), latency_s=LATENCY_S) as double:
        config = chaos_config(tmp_path / "chaos", bus_config, double.url, shared["tokenizer"])
        config_file = tmp_path / "trajlake.yaml"
        write_config(config_file, config)
        emit_commits(config, shared["repo"], COMMITS)
        rng = random.Random(f"chaos-{bus_config.kind}")
        fleet = Fleet(config, config_file, logs, rng)
        started = time.monotonic()
        try:
            fleet.run(KILLS, fleet.records(reference), timeout_s=400)
            fleet.stop()
        finally:
            fleet.close()
    kills = sum(fleet.kills.values())
    per_stage = ", ".join(f"{n} {k}" for n, k in fleet.kills.most_common())
    print(
        f"chaos[{bus_config.kind}]: {kills} kills ({per_stage}) "
        f"in {time.monotonic() - started:.0f}s"
    )
    print("\n".join(f"  killed at {line}" for line in fleet.timeline))

    chaos = raw_ids(config.lake.root)
    for table, expected in reference.items():
        got = chaos[table]
        assert not duplicates(got), f"{table}: raw duplicate rows {duplicates(got)}"
        missing, extra = set(expected) - set(got), set(got) - set(expected)
        assert not missing and not extra, f"{table}: {len(missing)} missing, {len(extra)} extra"
    assert kills >= KILLS, f"the work ran out after {kills} kills: make it last longer"
