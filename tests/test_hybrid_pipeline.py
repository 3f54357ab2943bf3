"""Hybrid verification through the whole pipeline on click (its sdist, its own tests): a rollout 1
that breaks the sampled function is caught by the tests whatever its recall, the comment-only
rollout 2 passes them, each baseline test ran once, and a mixture can ask for both."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml
from test_environments_pipeline import cli, pipeline, rows

import trajlake
from trajlake.teacher.double import demo_script_path, serve

#: The demo teacher's note lines, as its rollout-1 scripts write them, and what replaces them:
#: the same notes, then a line that makes the function raise. Rollout 2 reproduces the notes
#: from the PR, so recall finds part of P1 (the notes); only the tests see the function broken.
RAISE = ' + [f"{PAD}raise RuntimeError()\\n"]'
NOTES = {
    note: note + RAISE.replace("PAD", pad)
    for note, pad in (
        ('[f"{pad}{mark} {note}\\n" for note in notes]', "pad"),
        ('[f"{indent}# {note}\\n" for note in notes]', "indent"),
    )
}


def breaking_script(path: Path) -> Path:
    """The demo script, its rollout-1 edits made to raise after their comment lines; rollout 2
    still reproduces the PR ("document the contract") with the comments only."""
    data = yaml.safe_load(demo_script_path().read_text())
    changed = 0
    for session in data["sessions"]:
        if not session["name"].startswith("agent_t1"):
            continue
        for turn in session["turns"]:
            for call in turn.get("tool_calls", []):
                command = call["arguments"].get("command", "")
                for note, raising in NOTES.items():
                    changed += note in command
                    command = command.replace(note, raising)
                call["arguments"]["command"] = command
    assert changed >= 2, "the demo script's note lines moved: update NOTES"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.environments
@pytest.mark.e2e
def test_tests_catch_a_breaking_rollout_that_recall_alone_cannot_see(
    click, tokenizer, tmp_path, capsys
):
    with serve(breaking_script(tmp_path / "script.yaml")) as double:
        config_file = pipeline(tmp_path / "run", double.url, tokenizer, "sampler.mode=1")
        assert cli(config_file, "repo", "add", str(click), "--name", "click") == 0
        assert cli(config_file, "run") == 0
    root = tmp_path / "run" / "data" / "lake"

    found = rows(
        root,
        "SELECT rollout, tests_status, tests_selected, tests_broken, recall, patch "
        "FROM trajectories ORDER BY rollout",
        None,
    )
    [(_, t1_status, t1_selected, t1_broken, recall, t1_patch), t2] = found
    assert "raise RuntimeError" in t1_patch
    assert t1_status == "broken" and recall > 0  # rollout 2 matched the notes; the tests see more
    assert 0 < t1_broken <= t1_selected
    _, t2_status, t2_selected, t2_broken, _, t2_patch = t2
    assert "raise RuntimeError" not in t2_patch
    assert (t2_status, t2_broken) == ("ok", 0) and t2_selected > 0

    # per test: the broken ones failed with the patch after passing at the commit
    [(failed,)] = rows(
        root,
        "SELECT count(*) FROM test_runs WHERE phase = 'patched' AND rollout = 't1' "
        "AND baseline_status = 'passed' AND status IN ('failed', 'error', 'missing')",
        None,
    )
    assert failed == t1_broken
    # each baseline test ran once: T1 ran its files' baselines, T2 (the same files) found them
    [(stored,)] = rows(root, "SELECT count(*) FROM test_baselines", None)
    ran = rows(root, "SELECT rollout, baselines_run FROM tests ORDER BY rollout", None)
    assert ran == [("t1", stored), ("t2", 0)] and stored >= t2_selected

    # a mixture with tests_broken = 0 drops exactly the broken rollout
    lake = trajlake.open(config_file)
    everything = {"name": "all", "context_budget": 32768, "sources": [
        {"name": "t1", "rollout": "t1", "count": 5}, {"name": "t2", "rollout": "t2", "count": 5},
    ]}  # fmt: skip
    unbroken = everything | {"name": "unbroken", "sources": [
        s | {"where": "tests_broken = 0"} for s in everything["sources"]
    ]}  # fmt: skip
    all_ids = set(lake.build_mixture(everything)["sample_id"])
    kept_ids = set(lake.build_mixture(unbroken)["sample_id"])
    [(broken_id,)] = rows(root, "SELECT rollout_id FROM trajectories WHERE tests_broken > 0", None)
    assert all_ids - kept_ids == {broken_id} and len(all_ids) == 2

    capsys.readouterr()
    assert cli(config_file, "tests", "agreement") == 0
    out = capsys.readouterr().out
    assert re.search(r"^soft +\| +2 \| +1 \| +1 \|", out, re.M), out  # label, rollouts, ok, broken
    assert "2 rollouts: the two agree on 50%" in out, out

    # rollouts recorded before the tester: the backfill gives the same rows
    shutil.rmtree(root / "tests")
    assert rows(root, "SELECT count(*) FROM trajectories WHERE tests_status IS NULL", None) == [
        (2,)
    ]
    assert cli(config_file, "tests", "backfill") == 0
    again = rows(root, "SELECT rollout, tests_status, tests_broken FROM trajectories", None)
    assert sorted(again) == [("t1", "broken", t1_broken), ("t2", "ok", 0)]
    assert rows(root, "SELECT sum(baselines_run) FROM tests", None) == [(0,)]  # found, not run
