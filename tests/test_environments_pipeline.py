"""Repositories' environments in the pipeline: rollouts run in them, a bad spec dead-letters its
repository's tasks only, and several workers build one environment once.

- click's sdist (its tests included) through `trajlake run`: rollout 1 runs click's own tests
  with the environment's `python` (the sandbox has none without it), the rows name the one
  environment built, and the patches hold nothing of it;
- two repositories in one run, one with a spec whose install fails: its tasks become dead
  letters carrying the build's log (an `environments` row says failed), the other goes all the
  way; after `trajlake repo set --env` and `trajlake dlq retry` the first does too, no row twice;
- two `trajlake stage rollout1` processes in one consumer group on Kafka, over tasks whose
  environment takes seconds to build: one build, one `environments` row, every rollout on it.

Real git, bubblewrap, uv, embedded bus or Tansu, lake; the teacher is the scripted double.
"""

from __future__ import annotations

import json
import re
import signal
import uuid
from pathlib import Path

import duckdb
import pytest
import yaml
from helpers import git_repo, write_config
from scale_helpers import balanced, make_repo, make_tasks, quick_script, stop
from test_scaleout import start_worker, wait_for, workers_seen

from trajlake.bus import open_bus
from trajlake.cli import main
from trajlake.config import (
    AgentConfig,
    BusConfig,
    Config,
    LakeConfig,
    ProducerConfig,
    RunnerConfig,
    TeacherConfig,
)
from trajlake.demo import demo_config
from trajlake.environments.build import cache_root
from trajlake.lake import Lake
from trajlake.pipeline import stage_lags
from trajlake.producers.redrive import open_counts
from trajlake.schemas import TOPICS, make_event_id, table_name
from trajlake.teacher.double import demo_script_path, serve

PYTEST = "python -m pytest -q tests/test_basic.py"
FULL = ("rollouts.t1", "prs", "rollouts.t2", "verdicts")


def pipeline(workdir: Path, teacher_url: str, tokenizer: Path, *overrides: str) -> Path:
    """The demo's configuration in `workdir` (its own bus, lake, registry), saved for the CLI."""
    config = demo_config(workdir, teacher_url, [f"filter.tokenizer={tokenizer}", *overrides])
    config_file = workdir / "trajlake.yaml"
    workdir.mkdir(parents=True, exist_ok=True)
    write_config(config_file, config)
    return config_file


def cli(config_file: Path, *args: str) -> int:
    return main(["--config", str(config_file), *args])


def rows(root: Path, sql: str, topics: list[str]) -> list[tuple]:
    con = Lake(root).connect(topics)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def tool_results(messages: list[dict]) -> list[tuple[str, str]]:
    """(bash command, tool message) of every call in a rollout's messages, in order."""
    commands = {
        call["id"]: json.loads(call["function"]["arguments"]).get("command", "")
        for m in messages
        for call in m.get("tool_calls") or []
    }
    return [(commands[m["tool_call_id"]], m["content"]) for m in messages if m["role"] == "tool"]


def repeated_event_ids(root: Path) -> dict[str, list[str]]:
    """Per table, the event ids written more than once in its files (not the deduplicating
    views: the files themselves)."""
    con, found = duckdb.connect(), {}
    for topic in TOPICS:
        table = Path(root) / table_name(topic)
        if not any(table.rglob("*.parquet")):
            continue
        twice = con.execute(
            "SELECT event_id FROM read_parquet(?, union_by_name = true) "
            "GROUP BY event_id HAVING count(*) > 1",
            [str(table / "**" / "*.parquet")],
        ).fetchall()
        if twice:
            found[topic] = [e for (e,) in twice]
    con.close()
    return found


def pytest_first(script: Path) -> Path:
    """The demo teacher, its rollout-1 agent running click's tests before it edits the file."""
    data = yaml.safe_load(demo_script_path().read_text())
    [agent] = [s for s in data["sessions"] if s["name"] == "agent_t1"]
    run_tests = {"name": "bash", "arguments": {"command": PYTEST}}
    agent["turns"].insert(0, {"reasoning": "Run the tests first.", "tool_calls": [run_tests]})
    script.write_text(yaml.safe_dump(data, sort_keys=False))
    return script


@pytest.mark.environments
@pytest.mark.e2e
def test_rollouts_run_the_repository_tests_in_its_environment(click, tokenizer, tmp_path):
    with serve(pytest_first(tmp_path / "script.yaml")) as double:
        config_file = pipeline(tmp_path / "run", double.url, tokenizer, "sampler.mode=1")
        assert cli(config_file, "repo", "add", str(click), "--name", "click") == 0  # auto
        assert cli(config_file, "run") == 0
    root = tmp_path / "run" / "data" / "lake"

    [(env_id, status, spec_id, packages)] = rows(
        root, "SELECT environment_id, status, spec_id, packages FROM environments", ["environments"]
    )
    assert status == "built" and spec_id.startswith("python-")  # auto: click's pyproject.toml
    assert any(p.startswith("pytest==") for p in packages)
    assert (cache_root(Config(lake=LakeConfig(root=str(root)))) / env_id / "venv").is_dir()

    [(messages, t1_env, function_file, patch)] = rows(
        root,
        "SELECT r.messages_json, r.environment_id, t.function_file, r.patch "
        "FROM rollouts_t1 r JOIN tasks t ON r.task_id = t.event_id",
        ["rollouts.t1", "tasks"],
    )
    [(command, result), *_] = tool_results(json.loads(messages))
    assert command == PYTEST
    assert result.startswith("<returncode>0</returncode>"), result  # `python` is /env's
    assert re.search(r"\b\d+ passed\b", result) and "failed" not in result, result
    assert t1_env == env_id
    [(t2_env, t2_patch)] = rows(
        root, "SELECT environment_id, patch FROM rollouts_t2", ["rollouts.t2"]
    )
    assert t2_env == env_id
    for edit in (patch, t2_patch):  # the edited file only: nothing of /env, no test leftovers
        assert re.findall(r"^diff --git a/(\S+) ", edit, re.M) == [function_file], edit
        for leftover in (".venv", "/env/", "egg-info", "__pycache__", ".pytest_cache", "venv/"):
            assert leftover not in edit, leftover
    assert Lake(root).counts()["dlq"] == 0

    # the tester: the demo's comment-only edits keep every selected test of click passing
    tested = rows(
        root,
        "SELECT rollout, tests_status, tests_selected, tests_broken, environment_id, test_files "
        "FROM tests ORDER BY rollout",
        ["tests"],
    )
    assert [(r[0], r[1], r[3], r[4]) for r in tested] == [
        ("t1", "ok", 0, env_id), ("t2", "ok", 0, env_id)
    ]  # fmt: skip
    for *_, selected, _, _, files in tested:
        assert selected > 0 and all(f.startswith("tests/test_") for f in files)


BAD_SPEC = 'name: bad\ninstall: ["echo cannot-build-this >&2; exit 3"]\n'
GOOD_SPEC = 'name: good\ninstall: ["mkdir -p /env/ok"]\n'
ALPHA = "def add(a, b):\n    return a + b\n\n\ndef scale(x, k):\n    return x * k\n"
BETA = "def total(xs):\n    return sum(xs) + 0\n\n\ndef mean(xs):\n    return sum(xs) / len(xs)\n"


@pytest.mark.environments
@pytest.mark.e2e
def test_a_spec_that_fails_to_build_dead_letters_its_repository_until_fixed(
    tokenizer, tmp_path, capsys
):
    alpha, _ = git_repo(tmp_path / "alpha", {"alpha/calc.py": ALPHA})
    beta, _ = git_repo(tmp_path / "beta", {"beta/stats.py": BETA})
    (bad := tmp_path / "bad.yaml").write_text(BAD_SPEC)
    (good := tmp_path / "good.yaml").write_text(GOOD_SPEC)
    with serve(demo_script_path()) as double:
        config_file = pipeline(tmp_path / "run", double.url, tokenizer, "sampler.mode=all")
        root = tmp_path / "run" / "data" / "lake"
        add_alpha = ["repo", "add", str(alpha), "--name", "alpha", "--env", str(bad)]
        assert cli(config_file, *add_alpha) == 0
        assert cli(config_file, "repo", "add", str(beta), "--name", "beta") == 0
        capsys.readouterr()
        assert cli(config_file, "run") == 1  # dead letters
        assert "dead letters" in capsys.readouterr().err

        lake = Lake(root)
        tasks = dict(rows(root, "SELECT repo, count(*) FROM tasks GROUP BY 1", ["tasks"]))
        assert tasks == {"alpha": 2, "beta": 2}
        builds = rows(
            root,
            "SELECT repo, status, environment_id, log_tail FROM environments ORDER BY repo",
            ["environments"],
        )
        [(_, failed, bad_env, log_tail), (_, beta_status, _, _)] = builds
        assert [b[0] for b in builds] == ["alpha", "beta"]
        assert (failed, beta_status) == ("failed", "built")
        assert "cannot-build-this" in log_tail
        letters = rows(root, "SELECT repo, stage, error_type, error FROM dlq", ["dlq"])
        assert len(letters) == tasks["alpha"]
        for repo, stage, error_type, error in letters:
            assert (repo, stage, error_type) == ("alpha", "rollout1", "EnvironmentBuildFailed")
            assert "cannot-build-this" in error and "trajlake repo set alpha --env" in error
        assert cli(config_file, "dlq", "list") == 0
        assert re.search(r"rollout1\s+EnvironmentBuildFailed\s+2\s", capsys.readouterr().out)
        done = dict(
            rows(root, "SELECT repo, count(*) FROM rollouts_t1 GROUP BY 1", ["rollouts.t1"])
        )
        assert done == {"beta": 2}
        beta_done = lake.counts()
        assert {t: beta_done[t] for t in FULL} == dict.fromkeys(FULL, tasks["beta"])

        assert cli(config_file, "repo", "set", "alpha", "--env", str(good)) == 0
        assert cli(config_file, "dlq", "retry") == 0  # builds the new spec, runs the stages

    after = lake.counts()
    assert {t: after[t] for t in FULL} == dict.fromkeys(FULL, sum(tasks.values()))
    assert after["dlq"] == after["dlq.resolved"] == tasks["alpha"] and open_counts(lake) == []
    alpha_builds = rows(
        root,
        "SELECT status, environment_id FROM environments WHERE repo = 'alpha' ORDER BY status",
        ["environments"],
    )
    [(built, good_env), (failed_again, failed_env)] = alpha_builds
    assert (built, failed_again) == ("built", "failed")  # the failed build's row stays
    assert failed_env == bad_env != good_env
    alpha_envs = rows(
        root,
        "SELECT DISTINCT environment_id FROM rollouts_t1 WHERE repo = 'alpha' UNION "
        "SELECT DISTINCT environment_id FROM rollouts_t2 WHERE repo = 'alpha'",
        ["rollouts.t1", "rollouts.t2"],
    )
    assert alpha_envs == [(good_env,)]
    assert repeated_event_ids(root) == {}


SLOW_SPEC = 'name: slow\ninstall: ["sleep 2", "mkdir -p /env/x"]\n'
PARTITIONS = 6
INPUTS = ("tasks", "replay")


@pytest.mark.environments
@pytest.mark.kafka
@pytest.mark.scaleout
def test_two_workers_of_one_group_build_an_environment_once(kafka_bootstrap, tmp_path):
    """Both workers are seen working (on tasks of a repository with the empty spec) before the
    slow repository's tasks arrive, one per partition, so both need its environment at once."""
    slow, slow_commit = make_repo(tmp_path / "slow", 60)
    warm, warm_commit = make_repo(tmp_path / "warm", 60)
    slow_tasks = balanced(make_tasks(slow, slow_commit, 60), PARTITIONS, 1)  # repo scale-repo
    warm_tasks = balanced(
        [
            t.model_copy(update={"event_id": make_event_id("warm", i), "repo": "warm-repo"})
            for i, t in enumerate(make_tasks(warm, warm_commit, 60))
        ],
        PARTITIONS,
        1,
    )
    (spec := tmp_path / "slow.yaml").write_text(SLOW_SPEC)
    logs = tmp_path / "logs"
    logs.mkdir()
    with serve(quick_script(tmp_path / "script.yaml"), latency_s=0.05) as double:
        config = Config(
            bus=BusConfig(
                kind="kafka",
                bootstrap_servers=kafka_bootstrap,
                namespace=f"t{uuid.uuid4().hex[:8]}",
                session_timeout_ms=6000,  # Tansu: a join takes half of it
                heartbeat_interval_ms=1000,
            ),
            lake=LakeConfig(root=str(tmp_path / "data" / "lake")),
            producer=ProducerConfig(
                registry=str(tmp_path / "data" / "repos.db"),
                mirrors=str(tmp_path / "data" / "mirrors"),
            ),
            runner=RunnerConfig(batch_size=4, concurrency=2, poll_timeout_s=0.2),
            teacher=TeacherConfig(base_url=double.url, max_retries=2),
            agent=AgentConfig(trajectories=str(tmp_path / "traj")),
        )
        config_file = tmp_path / "trajlake.yaml"
        write_config(config_file, config)
        assert cli(config_file, "topics", "create", "--partitions", str(PARTITIONS)) == 0
        add = ["repo", "add", str(slow), "--name", "scale-repo", "--env", str(spec)]
        assert cli(config_file, *add) == 0

        bus = open_bus(config.bus)
        producer = bus.producer()
        for task in warm_tasks:
            producer.send("tasks", task.encode(), task.partition_key())
        producer.flush()

        def done() -> bool:
            return all(s.lag == 0 for s in stage_lags(bus, {"rollout1": INPUTS}))

        procs = [start_worker(config_file, i, logs) for i in range(2)]
        try:
            wait_for(done, 120, "the warm-up tasks are done", procs)
            assert set(workers_seen(double)) == {"worker-0", "worker-1"}, "both must have work"
            warmed = len(double.requests())
            for task in slow_tasks:
                producer.send("tasks", task.encode(), task.partition_key())
            producer.flush()
            producer.close()
            wait_for(done, 120, "the slow repository's tasks are done", procs)
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            statuses = [proc.wait(timeout=60) for proc in procs]
        finally:
            for proc in procs:
                stop(proc)
    bus.close()
    assert set(workers_seen(double)[warmed:]) == {"worker-0", "worker-1"}  # both needed it

    root = tmp_path / "data" / "lake"
    builds = rows(
        root,
        "SELECT environment_id, status FROM environments WHERE repo = 'scale-repo'",
        ["environments"],
    )
    letters = rows(root, "SELECT error_type, error FROM dlq", ["dlq"])
    assert [status for _, status in builds] == ["built"], (builds, letters)  # one build
    [(env_id, _)] = builds
    assert letters == []
    assert (cache_root(config) / env_id / "x").is_dir()
    rollouts = rows(
        root,
        "SELECT environment_id, exit_status FROM rollouts_t1 WHERE repo = 'scale-repo'",
        ["rollouts.t1"],
    )
    assert sorted(rollouts) == [(env_id, "Submitted")] * len(slow_tasks)
    for i, status in enumerate(statuses):
        assert status == 0, (logs / f"worker-{i}.log").read_text()[-3000:]
