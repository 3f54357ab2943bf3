"""Replay: regenerate recorded tasks with another teacher; both generations side by side."""

from __future__ import annotations

import pytest
import yaml
from helpers import bus_overrides, write_config

from trajlake.bus import open_bus
from trajlake.cli import main
from trajlake.demo import run_demo
from trajlake.lake import Lake
from trajlake.pipeline import run_pipeline
from trajlake.teacher.double import demo_script_path, serve

pytestmark = pytest.mark.replay


def teacher_b_script(tmp_path):
    """The demo script, except that rollout 2 always reproduces half the change."""
    script = yaml.safe_load(demo_script_path().read_text())
    partial = next(s for s in script["sessions"] if s["name"] == "agent_t2_partial")
    demo = dict(partial)
    partial["match"] = partial["match"].replace("[a-mA-M_][^`.:#)]*", "[^`.:#)]+")
    assert partial["match"] != demo["match"], "the demo's a-m rule moved: update this helper"
    path = tmp_path / "teacher-b-script.yaml"
    path.write_text(yaml.safe_dump(script))
    return path


def test_replay_adds_a_parallel_generation_once(bus_config, tmp_path, capsys):
    first = run_demo(tmp_path / "demo", bus_overrides(bus_config))
    config, root = first.config, first.config.lake.root
    config_file = tmp_path / "trajlake.yaml"
    write_config(config_file, config)
    tasks = first.counts["tasks"]
    teacher_a = (
        Lake(root).connect().execute("SELECT any_value(teacher_id) FROM rollouts_t1").fetchone()[0]
    )

    with serve(teacher_b_script(tmp_path)) as double_b:
        teacher_file = tmp_path / "teacher-b.yaml"
        teacher_file.write_text(
            yaml.safe_dump(
                {"base_url": double_b.url, "model": "teacher-b", "endpoint_kind": "double"}
            )
        )
        replay = [
            "--config",
            str(config_file),
            "replay",
            "--from",
            "tasks",
            "--teacher",
            str(teacher_file),
        ]
        for round_ in (1, 2):
            assert main(replay) == 0
            bus = open_bus(config.bus)
            run_pipeline(config, bus)
            bus.close()
            if round_ == 1:
                after_first, calls = Lake(root).counts(), sum(double_b.stats().values())
        assert sum(double_b.stats().values()) == calls  # the second replay ran nothing again
    assert Lake(root).counts() | {"replay": 0} == after_first | {"replay": 0}  # and added no row

    con = Lake(root).connect()
    per_teacher = con.execute(
        "SELECT teacher_id, count(*) FROM rollouts_t1 GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert len(per_teacher) == 2 and {n for _, n in per_teacher} == {tasks}
    teacher_b = next(t for t, _ in per_teacher if t != teacher_a)
    assert teacher_b.startswith("teacher-b-")
    for table in ("prs", "rollouts_t2", "verdicts"):  # the whole chain followed teacher B
        rows = con.execute(f"SELECT teacher_id, count(*) FROM {table} GROUP BY 1").fetchall()
        assert dict(rows) == {teacher_a: tasks, teacher_b: tasks}, table
    assert con.execute("SELECT count(*) FROM samples").fetchone()[0] == 4 * tasks
    assert con.execute("SELECT count(*) FROM dlq").fetchone()[0] == 0

    compare = con.execute(
        "SELECT task_id, teacher_id, recall FROM teacher_compare ORDER BY task_id"
    ).fetchall()
    assert len(compare) == 2 * tasks
    recall = {(task, teacher): r for task, teacher, r in compare}
    assert {r for (_, t), r in recall.items() if t == teacher_b} == {0.5}
    differs = [
        task for task, t in recall if t == teacher_a and recall[task, t] != recall[task, teacher_b]
    ]
    assert differs  # the n-z functions: 1.0 under A, 0.5 under B

    capsys.readouterr()
    assert main(["--config", str(config_file), "teachers"]) == 0
    listing = capsys.readouterr().out
    assert f"{teacher_b} | verdicts    | soft" in listing and teacher_a in listing


def test_dry_run_and_errors_say_what_is_wrong(tmp_path, capsys):
    first = run_demo(tmp_path / "demo")
    config_file = tmp_path / "trajlake.yaml"
    write_config(config_file, first.config)
    teacher_file = tmp_path / "t.yaml"
    teacher_file.write_text("model: other\n")
    base = ["--config", str(config_file), "replay", "--teacher", str(teacher_file)]

    assert main([*base, "--from", "tasks", "--limit", "2", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 tasks to replay with teacher other-") and out.count("->") == 2
    assert Lake(first.config.lake.root).counts()["replay"] == 0  # a dry run sends nothing

    assert main([*base, "--from", "verdicts"]) == 2
    assert "choose one of tasks, prs" in capsys.readouterr().err
    assert main([*base, "--from", "tasks", "--where", "nonsense ((("]) == 2
    assert "cannot read table tasks" in capsys.readouterr().err
    teacher_file.write_text("modle: typo\n")
    assert main([*base, "--from", "tasks"]) == 2
    assert "modle" in capsys.readouterr().err


def test_replaying_prs_reruns_only_rollout_2_under_the_new_teacher(tmp_path):
    first = run_demo(tmp_path / "demo")
    config, root = first.config, first.config.lake.root
    config_file = tmp_path / "trajlake.yaml"
    write_config(config_file, config)
    with serve(teacher_b_script(tmp_path)) as double_b:
        teacher_file = tmp_path / "teacher-b.yaml"
        teacher_file.write_text(yaml.safe_dump({"base_url": double_b.url, "model": "teacher-b"}))
        assert (
            main(
                [
                    "--config",
                    str(config_file),
                    "replay",
                    "--from",
                    "prs",
                    "--teacher",
                    str(teacher_file),
                ]
            )
            == 0
        )
        bus = open_bus(config.bus)
        run_pipeline(config, bus)
        bus.close()
        assert set(double_b.stats()) == {"agent_t2_partial"}  # no T1, no PR, no self-eval
    con = Lake(root).connect()
    prs = first.counts["prs"]
    rows = con.execute("SELECT teacher_id, count(*) FROM rollouts_t2 GROUP BY 1").fetchall()
    assert sorted(n for _, n in rows) == [prs, prs]
    assert (
        con.execute("SELECT count(*) FROM rollouts_t1").fetchone()[0] == first.counts["rollouts.t1"]
    )
    labels = con.execute(
        "SELECT DISTINCT v.label FROM verdicts v JOIN rollouts_t2 r ON r.event_id = v.t2_id "
        "WHERE r.teacher_id LIKE 'teacher-b-%'"
    ).fetchall()
    assert labels == [("soft",)]


@pytest.mark.scaffold
def test_replaying_into_a_new_scaffold_is_a_new_generation(tmp_path):
    """The same teacher, replayed into swe-agent: a second generation, compared side by side."""
    first = run_demo(tmp_path / "demo")
    tasks = first.counts["tasks"]
    config = first.config.model_copy(
        update={"agent": first.config.agent.model_copy(update={"scaffold": "swe-agent"})}
    )
    config_file = tmp_path / "trajlake.yaml"
    write_config(config_file, config)
    with serve(demo_script_path("demo-swe-agent")) as double:
        teacher_file = tmp_path / "same-teacher.yaml"
        same = first.config.teacher.model_dump(mode="json") | {"base_url": double.url}
        teacher_file.write_text(yaml.safe_dump(same))
        argv = ["--config", str(config_file), "replay", "--from", "tasks", "--teacher"]
        assert main([*argv, str(teacher_file)]) == 0
        bus = open_bus(config.bus)
        run_pipeline(config, bus)
        bus.close()

    con = Lake(config.lake.root).connect()
    generations = con.execute(
        "SELECT scaffold_id, teacher_id, count(*) FROM teacher_compare GROUP BY ALL ORDER BY 1"
    ).fetchall()
    mini, swe = (row[0] for row in generations)
    assert mini.startswith("mini-swe-agent-bash-") and swe.startswith("swe-agent-")
    assert {n for *_, n in generations} == {tasks}
    assert generations[0][1] != generations[1][1]  # the scaffold is part of the teacher id
    labels = con.execute(
        "SELECT DISTINCT label FROM teacher_compare WHERE scaffold_id = ? ORDER BY 1", [swe]
    ).fetchall()
    assert labels == [("hard",), ("soft",)]  # the swe-agent script's verdicts
