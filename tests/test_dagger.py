"""DAgger: the turn-level mix of a scripted student and the scripted teacher, over real HTTP, in
the real sandbox on the demo's real git checkout; labels rendered as training samples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from test_lake import task  # a TaskEvent with every field filled

from trajlake.cli import main
from trajlake.config import load_config
from trajlake.consumers.dagger_policy import Mix
from trajlake.lake import Lake
from trajlake.producers.dagger import collect_events
from trajlake.training.chat import IGNORE_INDEX, tokenize_chat

pytestmark = pytest.mark.dagger

STUDENT_EDIT = "# {function}: reviewed"  # the scripted student's wrong edit (turn 2)


def collect(config_file: Path, *args: str) -> None:
    assert main(["--config", str(config_file), "dagger", "collect", "--from", "tasks", *args]) == 0


def rows(config_file: Path, sql: str) -> list[dict]:
    con = Lake(load_config(config_file).lake.root).connect()
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]


def calls(messages_json: str) -> list[tuple[str, str]]:
    return [
        (c["function"]["name"], c["function"]["arguments"])
        for m in json.loads(messages_json)
        if m["role"] == "assistant"
        for c in m.get("tool_calls") or []
    ]


def test_beta_one_reproduces_the_teachers_rollout(dagger_demo):
    config_file, _, student = dagger_demo
    collect(config_file, "--iteration", "1", "--limit", "2")  # beta_1 = 1.0 (the paper's)
    dagger = rows(config_file, "SELECT * FROM rollouts_dagger ORDER BY task_id")
    assert len(dagger) == 2 and student.stats() == {}  # the student was never asked
    for row in dagger:
        t1 = rows(
            config_file,
            f"SELECT messages_json FROM rollouts_t1 WHERE task_id = '{row['task_id']}' "
            "AND attempt = 1",
        )[0]
        assert calls(row["messages_json"]) == calls(t1["messages_json"])
        turns = json.loads(row["turns_json"])
        assert [t["actor"] for t in turns] == ["teacher"] * len(turns) == ["teacher"] * row["steps"]
        assert row["beta"] == 1.0 and row["student_turns"] == row["labels"] == 0
        assert row["exit_status"] == "Submitted"


def test_beta_zero_records_the_students_states_labelled_by_the_teacher(dagger_demo, tmp_path):
    config_file, teacher, student = dagger_demo
    collect(config_file, "--iteration", "2", "--beta", "0", "--limit", "1")
    row = rows(config_file, "SELECT * FROM rollouts_dagger")[0]
    turns = json.loads(row["turns_json"])
    assert [t["actor"] for t in turns] == ["student"] * 3 and row["exit_status"] == "Submitted"
    executed = calls(row["messages_json"])
    assert "reviewed' >>" in executed[1][1]  # the student's wrong edit is a recorded state
    assert "reviewed" in row["patch"] and "Note:" not in row["patch"]
    label = turns[1]["label"]["tool_calls"][0]["function"]["arguments"]
    assert "python3 - " in label and "Note: " in label  # the teacher's action at that state
    assert [t["agree_exact"] for t in turns] == [True, False, False]
    assert (row["labels"], row["disagree_tool"], row["disagree_exact"]) == (3, 0, 2)
    assert student.stats() == {"student_agent": 3} and teacher.stats()["agent_t1"] == 3

    samples = build_dagger_mixture(config_file, tmp_path)  # the three labels, no trajectory
    assert [(s["rollout"], len(s["messages"])) for s in samples] == [
        ("dagger-label", 3 + 2 * k) for k in range(3)
    ]
    at_wrong_edit, after_it = samples[1], samples[2]
    assert after_it["messages"][4]["content"] == "I will add the note."  # the student's state
    assert [m["train"] for m in after_it["messages"] if m["role"] == "assistant"] == [
        False,
        False,
        True,
    ]
    tokenizer = demo_tokenizer(config_file)
    for sample, teacher_says in ((at_wrong_edit, "python3 - "), (after_it, "git diff")):
        chat = tokenize_chat(tokenizer, sample["messages"], json.loads(sample["tools"]))
        trained = tokenizer.decode([t for t in chat.labels if t != IGNORE_INDEX])
        label = sample["messages"][-1]["tool_calls"][0]["function"]["arguments"]
        assert teacher_says in label and squash(label) in squash(trained)  # the teacher's tokens
        for student_wrote in ("Let me look", "I will add the note", "reviewed' >>"):
            assert squash(student_wrote) not in squash(trained)  # and none of the student's
        assert chat.labels[: len(chat.labels) - len(squash(trained))].count(IGNORE_INDEX) > 0


def squash(text: str) -> str:
    return "".join(text.split())


def build_dagger_mixture(config_file: Path, tmp_path: Path, **source) -> list[dict]:
    spec = {
        "name": "dagger-mix",
        "context_budget": 32768,
        "sources": [{"name": "labels", "kind": "dagger", "count": 100, **source}],
        "export": {"styles": ["hermes"]},
    }
    path = tmp_path / "dagger-mix.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["--config", str(config_file), "mixture", "build", str(path), "--force"]) == 0
    import pyarrow.parquet as pq

    out = Path(load_config(config_file).lake.mixtures) / "dagger-mix" / "data.parquet"
    samples = pq.read_table(out).to_pylist()
    return sorted(samples, key=lambda s: len(s["messages"]))


def demo_tokenizer(config_file: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(load_config(config_file).filter.tokenizer)


def test_coin_flips_are_fixed_by_seed_task_and_turn():
    mix = Mix(beta=0.5, seed=3, key="task-a")
    flips = [mix.actor(t) for t in range(200)]
    assert flips == [Mix(beta=0.5, seed=3, key="task-a").actor(t) for t in range(200)]
    assert flips != [Mix(beta=0.5, seed=4, key="task-a").actor(t) for t in range(200)]
    assert 0.4 < flips.count("teacher") / 200 < 0.6
    assert [Mix(beta=0.5, kappa=2).actor(t) for t in range(4)] == [
        "student",
        "student",
        "teacher",
        "teacher",
    ]
    assert [Mix(beta=0, label_every=3).labels(k) for k in range(4)] == [True, False, False, True]


def test_collections_differing_only_in_label_every_are_two_collections():
    sent = [
        collect_events([task(1)], load_config(None, [f"dagger.label_every={k}"]), iteration=1)[0]
        for k in (1, 2)
    ]
    assert [e.label_every for e in sent] == [1, 2]
    assert sent[0].event_id != sent[1].event_id  # else the second is taken as already done


def test_kappa_prefix_and_label_every_trade_labels_for_calls(dagger_demo):
    config_file, teacher, student = dagger_demo
    overrides = ["--set", "dagger.kappa=2", "--set", "dagger.label_every=2"]
    command = ["--config", str(config_file), *overrides, "dagger", "collect", "--from", "tasks"]
    assert main([*command, "--iteration", "1", "--limit", "1"]) == 0
    row = rows(config_file, "SELECT * FROM rollouts_dagger")[0]
    turns = json.loads(row["turns_json"])
    assert [t["actor"] for t in turns][:3] == ["student", "student", "teacher"]
    assert row["kappa"] == 2 and row["label_every"] == 2
    labelled = [t["turn"] for t in turns if t["actor"] == "student" and t["label"]]
    assert labelled == [0] and row["labels"] == 1  # the 2nd student state went unlabelled
    assert student.stats() == {"student_agent": 2}
    assert teacher.stats()["agent_t1"] == 1 + row["teacher_turns"]  # a label, then the rest
    assert row["student_prompt_tokens"] > 0 and row["teacher_prompt_tokens"] > 0
