"""Mixtures rebuilt as of an earlier lake state: same spec, same bytes, after the lake moved on.

The lake is real (Lake.write, Parquet files, DuckDB views), and so are the commands: the
mixture is built with `trajlake mixture build`, the lake compacted with `trajlake lake compact`.
What arrives after the first build is every kind of change that would alter its data: new
rollouts that rank first, a newer sample of a chosen rollout (the view takes the newest), a
better verdict for a chosen T1, and a re-processed copy of a chosen T2.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import shutil
from pathlib import Path

import pytest
import yaml

from trajlake.cli import main
from trajlake.lake import Lake
from trajlake.lake.mixtures import _as_of_times, recorded_state
from trajlake.lake.views import connect
from trajlake.schemas import (
    DaggerRolloutEvent,
    PrEvent,
    RolloutEvent,
    SampleEvent,
    TaskEvent,
    VerdictEvent,
    make_event_id,
)

pytestmark = pytest.mark.mixture

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.timezone.utc)
LATER = T0 + dt.timedelta(days=1)
REPOS = ("github.com/acme/widgets", "github.com/acme/gears")
BUDGETS = [2048, 32768]
DATA = ("data.parquet", "data.jsonl")


def messages(i: int, steps: int) -> str:
    turns = [
        {"role": "system", "content": "You are an engineer."},
        {"role": "user", "content": "fix"},
    ]
    for k in range(steps):
        call = {"id": f"c{k}", "type": "function", "function": {"name": "bash", "arguments": "{}"}}
        turns.append({"role": "assistant", "content": f"step {k} of {i}", "tool_calls": [call]})
        turns.append({"role": "tool", "tool_call_id": f"c{k}", "content": f"out {i}.{k}"})
    return json.dumps([*turns, {"role": "assistant", "content": "done"}])


def lineage(i: int, at: dt.datetime, stage: str) -> dict:
    return {"created_at": at, "stage": stage, "repo": REPOS[i % 2], "commit": f"c{i}"}


def generation(i: int, at: dt.datetime, recall: float, ratio: float) -> dict[str, list]:
    """Task i through the pipeline: task, T1, PR, T2, verdict, a sample of each rollout."""
    task_id, t1_id, pr_id, t2_id = (make_event_id(k, i) for k in ("task", "t1", "pr", "t2"))
    task = TaskEvent(
        event_id=task_id, **lineage(i, at, "function_sampler"), function_file="f.py",
        function_name=f"f{i}", line_start=1, line_end=9, change_type="naming", request="fix f",
    )  # fmt: skip
    rollouts = [
        RolloutEvent(
            event_id=rid, **lineage(i, at, "rollout"), rollout=kind, task_id=task_id,
            pr_id=pr_id if kind == "t2" else "", t1_id=t1_id if kind == "t2" else "",
            request="fix f", messages_json=messages(i, 2 + i % 3),
            patch=f"--- a/f.py\n+++ b/f.py\n+x = {i}\n", patch_hash=f"{kind}{i}",
            exit_status="Submitted", self_eval="yes" if kind == "t1" else "",
        )
        for rid, kind in ((t1_id, "t1"), (t2_id, "t2"))
    ]  # fmt: skip
    return {
        "tasks": [task],
        "rollouts.t1": rollouts[:1],
        "rollouts.t2": rollouts[1:],
        "prs": [
            PrEvent(
                event_id=pr_id,
                **lineage(i, at, "pr_writer"),
                task_id=task_id,
                t1_id=t1_id,
                pr_text=f"PR {i}",
                p1_patch="+x",
            )
        ],  # fmt: skip
        "verdicts": [verdict(i, at, recall)],
        "samples": [sample(r, at, ratio) for r in rollouts],
    }


def verdict(i: int, at: dt.datetime, recall: float, attempt: int = 0) -> VerdictEvent:
    return VerdictEvent(
        event_id=make_event_id("verdict", i, attempt), **lineage(i, at, "verifier"),
        task_id=make_event_id("task", i), t1_id=make_event_id("t1", i),
        t2_id=make_event_id("t2", i), matched=round(recall * 10), total=10, recall=recall,
        label="soft",
    )  # fmt: skip


def sample(rollout: RolloutEvent, at: dt.datetime, ratio: float, tokenizer="tok") -> SampleEvent:
    n = len(json.loads(rollout.messages_json))
    return SampleEvent(
        event_id=make_event_id("sample", rollout.event_id, tokenizer), created_at=at,
        stage="filter", repo=rollout.repo, rollout_id=rollout.event_id,
        rollout=rollout.rollout, task_id=rollout.task_id, tokenizer=tokenizer,
        message_tokens=[100] * n, budgets=BUDGETS, truncation_ratios=[ratio, 1.0],
        patch_lines=1,
    )  # fmt: skip


def write(lake: Lake, events: dict[str, list], name: str, day: dt.date) -> None:
    for topic, group in events.items():
        lake.write(topic, group, name=name, date=day)


def merged(*generations: dict[str, list]) -> dict[str, list]:
    out: dict[str, list] = {}
    for events in generations:
        for topic, group in events.items():
            out.setdefault(topic, []).extend(group)
    return out


@pytest.fixture
def lake_config(tmp_path: Path) -> tuple[Path, Lake]:
    """12 generations in several files over two days, and a config naming the lake."""
    lake = Lake(tmp_path / "lake")
    first = [generation(i, T0 + dt.timedelta(minutes=i), 0.3 + 0.05 * i, 0.4) for i in range(12)]
    write(lake, merged(*first[:6]), "batch-p0-o000000000000", T0.date())
    write(lake, merged(*first[6:]), "batch-p1-o000000000000", (T0 + dt.timedelta(hours=15)).date())
    config = tmp_path / "trajlake.yaml"
    mixtures = tmp_path / "mixtures"
    config.write_text(yaml.safe_dump({"lake": {"root": str(lake.root), "mixtures": str(mixtures)}}))
    return config, lake


def cli(config: Path, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["--config", str(config), *args])
    return rc, out.getvalue(), err.getvalue()


def spec_file(path: Path) -> Path:
    spec = {
        "name": "mix",
        "seed": 3,
        "context_budget": 2048,
        "sources": [
            {"name": "t2", "rollout": "t2", "min_recall": 0.5, "count": 4},
            {"name": "t1", "rollout": "t1", "count": 4},
        ],
    }
    path.write_text(yaml.safe_dump(spec))
    return path


def move_on(lake: Lake, chosen: list[dict]) -> None:
    """Everything a day later that would change the mixture's data if it were seen."""
    new = merged(*(generation(i, LATER, 1.0, 1.0) for i in range(12, 20)))  # would rank first
    t1 = next(r for r in chosen if r["rollout"] == "t1")
    t2 = next(r for r in chosen if r["rollout"] == "t2")
    i1 = next(i for i in range(12) if make_event_id("t1", i) == t1["sample_id"])
    old_t2 = generation(next(i for i in range(12) if make_event_id("t2", i) == t2["sample_id"]),
                        LATER, 0.9, 1.0)["rollouts.t2"][0]  # fmt: skip
    rollout_t1 = generation(i1, T0, 0.0, 0.0)["rollouts.t1"][0]
    new["samples"].append(sample(rollout_t1, LATER, 1.0, tokenizer="newer"))  # newest sample
    new["verdicts"].append(verdict(i1, LATER, 1.0, attempt=1))  # a better reproduction
    recopied = old_t2.model_copy(update={"messages_json": messages(99, 1)})  # re-processed
    write(lake, new, "later-p0-o000000000000", LATER.date())
    lake.write("rollouts.t2", [recopied], name="later-p1-o000000000000", date=LATER.date())


def test_as_of_rebuilds_identical_bytes_after_new_events_and_compaction(lake_config, tmp_path):
    config, lake = lake_config
    spec = spec_file(tmp_path / "spec.yaml")
    assert cli(config, "mixture", "build", str(spec))[0] == 0
    built = tmp_path / "mixtures" / "mix"
    first = tmp_path / "first"
    shutil.copytree(built, first)
    manifest = json.loads((first / "manifest.json").read_text())
    assert manifest["lake_state"]["rollouts_t1"]["rows"] == 12
    chosen = [json.loads(line) for line in (first / "data.jsonl").read_text().splitlines()]
    assert len(chosen) == 8

    move_on(lake, chosen)
    rc, out, _ = cli(config, "lake", "compact")
    assert rc == 0 and "repositories merged" in out
    files = list((lake.root / "rollouts_t2").rglob("*.parquet"))
    assert len(files) == 2 and all(f.name.startswith("compacted-") for f in files)  # per repo

    now = cli(config, "mixture", "build", str(spec), "--force")  # the lake as it is now
    assert now[0] == 0
    assert all((built / f).read_bytes() != (first / f).read_bytes() for f in DATA)

    rc, out, err = cli(
        config, "mixture", "build", str(spec), "--force", "--as-of", str(first / "manifest.json")
    )
    assert rc == 0, err
    assert "byte-identical to mixture mix" in out
    for name in DATA:
        assert (built / name).read_bytes() == (first / name).read_bytes(), name
    again = json.loads((built / "manifest.json").read_text())
    assert again["lake_state"] == manifest["lake_state"] and again["as_of"] == "mix"
    assert again["lake_files"] != manifest["lake_files"]  # compacted files, not the originals


def test_as_of_refuses_a_past_that_changed(lake_config, tmp_path):
    config, lake = lake_config
    spec = spec_file(tmp_path / "spec.yaml")
    assert cli(config, "mixture", "build", str(spec))[0] == 0
    manifest = tmp_path / "first.json"
    shutil.copy(tmp_path / "mixtures" / "mix" / "manifest.json", manifest)
    late = generation(40, T0 + dt.timedelta(minutes=3), 1.0, 1.0)  # made before, written after
    write(lake, late, "late-p0-o000000000000", T0.date())
    rc, _, err = cli(config, "mixture", "build", str(spec), "--force", "--as-of", str(manifest))
    assert rc == 2
    assert "held 12 rows created up to" in err and "now 13 rows" in err


def test_as_of_needs_a_manifest_with_a_lake_state(lake_config, tmp_path):
    config, _ = lake_config
    spec = spec_file(tmp_path / "spec.yaml")
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"name": "old", "spec": {}}))
    rc, _, err = cli(config, "mixture", "build", str(spec), "--as-of", str(old))
    assert rc == 2 and "records no lake state" in err


def test_a_manifest_from_before_dagger_sees_no_dagger_rows(lake_config, tmp_path):
    """A manifest written before rollouts_dagger was a source table does not name it: that
    build read none of its rows, so a rebuild as of it shows none either (not all of them)."""
    config, lake = lake_config
    assert cli(config, "mixture", "build", str(spec_file(tmp_path / "spec.yaml")))[0] == 0
    manifest = json.loads((tmp_path / "mixtures" / "mix" / "manifest.json").read_text())
    del manifest["lake_state"]["rollouts_dagger"]  # as a trajlake before DAgger wrote it
    dagger = DaggerRolloutEvent(
        event_id="d1", stage="dagger", created_at=T0, task_id="t", dagger_task_id="dt",
        iteration=1, beta=0.5, student_id="s", request="fix", exit_status="Submitted",
    )  # fmt: skip
    lake.write("rollouts.dagger", [dagger], name="dagger-1")
    con = connect(lake.root, as_of=_as_of_times(recorded_state(manifest)))
    assert con.execute("SELECT count(*) FROM rollouts_dagger").fetchone() == (0,)
    assert con.execute("SELECT count(*) FROM rollouts_t1").fetchone() == (12,)
