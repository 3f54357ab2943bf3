"""DAgger labels as the scaffold would take them, and a label budget of their own: a label the
scaffold rejects is never trained, and labelling never cuts the student's rollout short."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import duckdb
import pytest
import yaml
from test_dagger import build_dagger_mixture, rows
from test_lake import task

from trajlake.cli import main
from trajlake.config import load_config
from trajlake.consumers.dagger_policy import BUDGET_SPENT
from trajlake.consumers.scaffold_spec import load_scaffold, scaffold_path
from trajlake.lake.dagger_mixture import condition, render
from trajlake.lake.mixture_spec import MixtureSpec, Source
from trajlake.policy_config import TeacherConfig
from trajlake.producers.dagger import collect_events
from trajlake.teacher.client import teacher_id
from trajlake.teacher.double import demo_script_path, serve

pytestmark = pytest.mark.dagger


def collect(config_file: Path, *settings: str) -> None:
    sets = [arg for s in settings for arg in ("--set", s)]
    argv = ["--config", str(config_file), *sets, "dagger", "collect", "--from", "tasks"]
    assert main([*argv, "--iteration", "2", "--beta", "0", "--limit", "1"]) == 0


def rejecting_teacher(path: Path) -> Path:
    """The demo teacher, its rollout-1 turn 1 calling a tool no scaffold has and its turn 2
    making two calls: labels a one-call scaffold rejects. Turn 3 (`git diff`) stays valid."""
    data = yaml.safe_load(demo_script_path().read_text())
    [agent] = [s for s in data["sessions"] if s["name"] == "agent_t1"]
    agent["turns"][0]["tool_calls"][0]["name"] = "frobnicate"
    agent["turns"][1]["tool_calls"] *= 2
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def one_call_scaffold(path: Path) -> Path:
    text = scaffold_path("mini-bash").read_text()
    assert "tool_calls_per_turn: 0" in text
    path.write_text(text.replace("tool_calls_per_turn: 0", "tool_calls_per_turn: 1"))
    return path


def use(config_file: Path, **settings: dict) -> None:
    data = yaml.safe_load(config_file.read_text())
    for section, values in settings.items():
        data[section] = {**data.get(section, {}), **values}
    config_file.write_text(yaml.safe_dump(data, sort_keys=False))


def test_labels_the_scaffold_rejects_are_counted_and_never_trained(dagger_demo, tmp_path, capsys):
    config_file, _, _ = dagger_demo
    with serve(rejecting_teacher(tmp_path / "teacher.yaml")) as teacher:
        use(config_file, teacher={"base_url": teacher.url},
            agent={"scaffold": str(one_call_scaffold(tmp_path / "one-call.yaml"))})  # fmt: skip
        collect(config_file)
    [row] = rows(config_file, "SELECT * FROM rollouts_dagger")
    turns = json.loads(row["turns_json"])
    assert [t["actor"] for t in turns] == ["student"] * 3 and row["exit_status"] == "Submitted"
    assert [t["label"] is None for t in turns] == [True, True, False]
    assert [t["label_error"] for t in turns[:2]] == [
        "Unknown tool 'frobnicate'.",
        "Your reply made 2 tool calls; make exactly 1 per reply.",
    ]
    assert (row["labels"], row["invalid_labels"], row["unlabelled"]) == (1, 2, 0)

    samples = build_dagger_mixture(config_file, tmp_path)
    assert len(samples) == 1  # the valid label only
    [trained] = [m for m in samples[0]["messages"] if m["train"]]
    assert "git diff" in trained["tool_calls"][0]["function"]["arguments"]

    capsys.readouterr()
    assert main(["--config", str(config_file), "dagger", "status"]) == 0
    header, _, shown, *_ = capsys.readouterr().out.splitlines()
    status = dict(
        zip(
            [c.strip() for c in header.split("|")],
            [v.strip() for v in shown.split("|")],
            strict=True,
        )
    )
    assert (status["trained_labels"], status["invalid_labels"], status["unlabelled"]) == (
        "1", "2", "0"
    )  # fmt: skip


def test_a_tiny_label_budget_leaves_states_unlabelled_not_the_rollout_shorter(dagger_demo):
    config_file, _, _ = dagger_demo
    collect(config_file)  # no label budget: every student state labelled
    [free] = rows(config_file, "SELECT * FROM rollouts_dagger")
    student_tokens = free["student_prompt_tokens"] + free["student_completion_tokens"]
    assert free["labels"] == 3 and free["teacher_prompt_tokens"] > 0

    # the student's own calls fit the token limit; counted with the labels they would not
    limit = f"agent.token_limit={student_tokens}"
    collect(config_file, limit, "dagger.seed=1")  # another collection: labels, no budget
    [limited] = rows(config_file, "SELECT * FROM rollouts_dagger WHERE seed = 1")
    assert (limited["steps"], limited["exit_status"], limited["labels"]) == (
        free["steps"], "Submitted", 3
    )  # fmt: skip

    collect(config_file, limit, "dagger.label_budget_tokens=1")
    [tight] = rows(config_file, "SELECT * FROM rollouts_dagger WHERE label_budget_tokens = 1")
    assert (tight["steps"], tight["exit_status"]) == (free["steps"], "Submitted")
    assert (tight["labels"], tight["unlabelled"]) == (1, 2)  # the first label spent the budget
    turns = json.loads(tight["turns_json"])
    assert [t["label_error"] for t in turns] == ["", BUDGET_SPENT, BUDGET_SPENT]


def test_iterations_last_is_the_newest_iteration_of_the_rows_the_source_chose():
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE rollouts_dagger AS SELECT * FROM (VALUES "
        "('a', 1, 'r'), ('a', 2, 'r'), ('b', 3, 'r'), ('a', 4, 'other')) "
        "t(student_id, iteration, repo)"
    )
    source = Source(name="d", kind="dagger", count=9, students=["a"], repos=["r"],
                    iterations="last")  # fmt: skip
    chosen = con.execute(f"SELECT student_id, iteration FROM rollouts_dagger "
                         f"WHERE {condition(source)}").fetchall()  # fmt: skip
    assert chosen == [("a", 2)]  # not iteration 3 (student b) nor 4 (another repository)


def test_a_rollout_without_token_counts_is_left_out_and_counted():
    messages = [{"role": "user", "content": "do it"}, {"role": "assistant", "content": "done"}]
    row = {"event_id": "e", "messages_json": json.dumps(messages), "message_tokens": None,
           "turns_json": json.dumps([{"turn": 0, "actor": "teacher", "message_index": 1,
                                      "label": messages[1]}])}  # fmt: skip
    spec = MixtureSpec(name="m", context_budget=10, sources=[Source(name="d", kind="dagger",
                                                                    count=1)])  # fmt: skip
    counts: Counter[str] = Counter()
    assert render(row, spec.sources[0], spec, counts) == [] and counts["unmeasured"] == 1


def test_the_labeller_is_the_collecting_commands_teacher_wherever_the_stage_runs(tmp_path):
    collecting = load_config(None, ["teacher.model=big-teacher", "teacher.base_url=http://t:1/v1"])
    [sent] = collect_events([task(1)], collecting, iteration=1)
    worker = load_config(None, ["teacher.model=other", f"filter.tokenizer={tmp_path}"])
    labeller = TeacherConfig.model_validate_json(sent.teacher_spec)
    assert (labeller.model, labeller.base_url) == ("big-teacher", "http://t:1/v1")
    assert worker.teacher.model == "other"  # a stage worker's own config does not decide it
    assert teacher_id(labeller, load_scaffold(collecting.agent.scaffold).id()) == sent.teacher_id
