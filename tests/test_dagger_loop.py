"""The DAgger loop closed for real: collect two iterations with the scripted student, aggregate
them into a mixture, `trajlake train` a tiny student on it, serve that student over HTTP with
`trajlake dagger serve`, collect a third iteration on its own (malformed) actions, and print
`trajlake dagger status`. Plus the SIGKILL and rerun guarantees of the dagger stage."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
import yaml
from test_dagger import build_dagger_mixture, collect, rows
from test_training import CONFIG as TINY_QWEN3  # the tiny model the recipe tests train

from trajlake.config import load_config
from trajlake.lake.files import table_files
from trajlake.teacher.double import demo_script_path, serve

pytestmark = pytest.mark.dagger


def cli(config_file: Path, *args: str, **kw) -> subprocess.Popen:
    command = [sys.executable, "-m", "trajlake.cli", "--config", str(config_file), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, **kw)


def test_iterations_aggregate_train_and_a_real_student_in_the_loop(dagger_demo, tmp_path):
    config_file, teacher, _ = dagger_demo
    collect(config_file, "--iteration", "1", "--limit", "2")  # beta 1: teacher only
    collect(config_file, "--iteration", "2", "--beta", "0", "--limit", "2")  # student only

    def kinds(**source) -> list[str]:
        return sorted(s["rollout"] for s in build_dagger_mixture(config_file, tmp_path, **source))

    assert kinds(iterations=[1]) == ["dagger"] * 2  # the teacher's trajectories, in place
    assert kinds(iterations="last") == ["dagger-label"] * 6  # 3 labelled states each
    capped = kinds(max_label_samples_per_rollout=1)
    assert capped == ["dagger"] * 2 + ["dagger-label"] * 2
    aggregate = build_dagger_mixture(config_file, tmp_path, iterations="all")
    assert sorted(s["rollout"] for s in aggregate) == ["dagger"] * 2 + ["dagger-label"] * 6
    mixtures = Path(load_config(config_file).lake.mixtures)
    manifest = json.loads((mixtures / "dagger-mix" / "manifest.json").read_text())
    stats = manifest["dagger"]["labels"]
    assert (stats["rollouts"], stats["label_samples"], stats["trajectory_samples"]) == (4, 6, 2)
    assert stats["prefix_tokens"] > stats["label_tokens"] > 0  # the blow-up, counted
    check = cli(config_file, "mixture", "check", "dagger-mix", "--style", "hermes")
    assert check.wait(timeout=120) == 0, check.communicate()[1].decode()[-2000:]

    run = tmp_path / "student-run"
    (tmp_path / "tiny.yaml").write_text(TINY_QWEN3)
    tokenizer = load_config(config_file).filter.tokenizer
    train = cli(
        config_file, "train", "--config", str(tmp_path / "tiny.yaml"), "--nproc-per-node", "1",
        f"output_dir={run}", f"mixture={mixtures / 'dagger-mix'}", f"tokenizer={tokenizer}",
        "max_seq_len=4096", "micro_batch_tokens=4096", "epochs=1", "checkpoint_every=1000",
    )  # fmt: skip
    out, err = train.communicate(timeout=900)
    assert train.returncode == 0, err.decode()[-3000:]

    serve = cli(config_file, "dagger", "serve", "--model", str(run / "model"), "--port", "0")
    try:
        first = serve.stdout.readline().decode()
        assert first.startswith("--set student.base_url="), serve.stderr.read().decode()[-2000:]
        url = first.split()[1].split("=", 1)[1]
        data = yaml.safe_load(config_file.read_text())
        data["student"] |= {"base_url": url, "checkpoint": str(run), "temperature": 0.0}
        data["student"]["max_tokens"] = 32
        data["agent"]["step_limit"] = 3
        config_file.write_text(yaml.safe_dump(data, sort_keys=False))
        collect(config_file, "--iteration", "3", "--beta", "0", "--limit", "1")
    finally:
        serve.send_signal(signal.SIGINT)
        serve.wait(timeout=30)
    row = rows(config_file, "SELECT * FROM rollouts_dagger WHERE iteration = 3")[0]
    assert row["student_id"].startswith("student-run-")
    turns = json.loads(row["turns_json"])
    assert [t["actor"] for t in turns] == ["student"] * 3 and row["labels"] == 3
    assert all(t["label"]["tool_calls"] for t in turns)  # the teacher labelled every state
    messages = json.loads(row["messages_json"])
    for t in turns:  # the tiny student's own text, kept; its unreadable calls: format errors
        assert t["calls"]["student"]["completion"] > 0 and t["calls"]["teacher"]["prompt"] > 0
        if not messages[t["message_index"]].get("tool_calls"):
            assert messages[t["message_index"] + 1]["role"] == "user"  # the format error
    assert row["exit_status"] in ("LimitsExceeded", "RepeatedFormatError")
    assert row["disagree_tool"] >= 1

    status = cli(config_file, "dagger", "status")
    out, err = status.communicate(timeout=60)
    assert status.returncode == 0, err.decode()
    table = out.decode().splitlines()
    assert table[0].split(" | ")[:3] == ["iteration", "beta", "students"]
    assert [line.split("|")[0].strip() for line in table[2:5]] == ["1", "2", "3"]


def test_coin_flips_repeat_on_a_rerun_and_a_sigkilled_stage_resumes(demo_copy, tmp_path):
    actors = []
    for run in ("a", "b"):
        with (
            serve(demo_script_path("demo")) as teacher,
            serve(demo_script_path("dagger-student"), latency_s=0.3) as student,
        ):
            demo = demo_copy(tmp_path / run, teacher.url)
            data = yaml.safe_load(demo.config_file.read_text())
            data["student"] = {"base_url": student.url, "model": "student"}
            data["runner"]["concurrency"] = 1
            demo.config_file.write_text(yaml.safe_dump(data, sort_keys=False))
            args = ("--iteration", "1", "--beta", "0.5", "--limit", "3")
            if run == "a":
                collect(demo.config_file, *args)
            else:  # sent, then collected by a stage that is SIGKILLed once it is working
                collect(demo.config_file, *args, "--no-run")
                stage = cli(demo.config_file, "stage", "dagger")
                deadline = time.monotonic() + 120
                while not student.stats() and not teacher.stats():
                    assert time.monotonic() < deadline and stage.poll() is None
                    time.sleep(0.05)
                time.sleep(0.5)
                stage.send_signal(signal.SIGKILL)
                stage.wait()
                assert not _all_collected(demo.config_file), "the kill must land mid-run"
                resumed = cli(demo.config_file, "stage", "dagger", "--idle-timeout", "3")
                assert resumed.wait(timeout=300) == 0, resumed.communicate()[1].decode()[-2000:]
        config = load_config(demo.config_file)
        files = [str(f) for f in table_files(Path(config.lake.root), "rollouts_dagger")]
        written = duckdb.execute("SELECT event_id FROM read_parquet(?)", [files]).fetchall()
        assert len(written) == len(set(written)) == 3  # in the files: no row twice, kill or not
        found = rows(demo.config_file, "SELECT * FROM rollouts_dagger ORDER BY task_id")
        for row in found:
            turns = json.loads(row["turns_json"])
            expected = [coin_actor(config.dagger.seed, row["task_id"], 1, t["turn"]) for t in turns]
            assert [t["actor"] for t in turns] == expected
        actors.append([[t["actor"] for t in json.loads(r["turns_json"])] for r in found])
    assert actors[0] == actors[1]
    assert {a for run in actors[0] for a in run} == {"teacher", "student"}


def coin_actor(seed: int, task_id: str, iteration: int, turn: int, beta: float = 0.5) -> str:
    """Who acts at `turn`: DESIGN item 9's coin, P(teacher) = beta, drawn as
    consumers/dagger_policy.py documents it, from (seed, task, iteration, turn): the first 8
    bytes of a sha256 as a fraction of 2**64, the teacher below beta."""
    digest = hashlib.sha256(f"{seed}\x1f{task_id}:{iteration}\x1f{turn}".encode()).digest()
    return "teacher" if int.from_bytes(digest[:8], "big") / 2**64 < beta else "student"


def _all_collected(config_file: Path) -> bool:
    return len(rows(config_file, "SELECT event_id FROM rollouts_dagger")) >= 3
