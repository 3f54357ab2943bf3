"""The `trajlake` command on the embedded defaults: topics, stage, sql, compact, config."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import urllib.request
from importlib.resources import files
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from echo_stage import STAGE, commit_event
from helpers import produce

from trajlake.bus import open_bus
from trajlake.cli import main
from trajlake.config import load_config
from trajlake.lake import Lake
from trajlake.runner import StageRunner
from trajlake.schemas import TOPICS, table_name

pytestmark = pytest.mark.integration


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A directory with a trajlake.yaml on the embedded bus; the CLI finds it there."""
    (tmp_path / "trajlake.yaml").write_text("bus:\n  partitions: 3\nrunner:\n  batch_size: 7\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def filled_lake(config) -> Lake:
    """Run the echo stage over 120 commits (and one bad record): many small files."""
    bus = open_bus(config.bus)
    bus.create_topics(list(TOPICS), config.bus.partitions)
    commits = [commit_event(i, repo=f"org/repo{i % 3}") for i in range(120)]
    produce(bus, "commits", [c.encode() for c in commits] + [b"{oops"])
    lake = Lake(config.lake.root)
    StageRunner(STAGE, bus, lake, config.runner).run(idle_timeout_s=1)
    bus.close()
    return lake


def test_help_teaches_the_workflow():
    out = subprocess.run(["trajlake", "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("topics create", "stage NAME", "trajlake sql", "lake compact", "--set"):
        assert command in out


def test_topics_create_and_list(workdir, capsys):
    assert main(["topics", "create", "--partitions", "2"]) == 0
    capsys.readouterr()
    assert main(["topics", "list"]) == 0
    listed = {
        line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()[1:]
    }
    assert listed == {topic: ["2", "0"] for topic in TOPICS}  # partitions, records


def test_sql_formats(workdir, capsys):
    filled_lake(load_config())
    query = "SELECT repo, count(*) AS n FROM tasks GROUP BY repo ORDER BY repo"
    assert main(["sql", query, "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["repo"], r["n"]) for r in rows] == [(f"org/repo{i}", "40") for i in range(3)]
    assert main(["sql", query, "--format", "json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [json.loads(line)["n"] for line in lines] == [40, 40, 40]
    assert main(["sql", query]) == 0
    assert "org/repo2" in capsys.readouterr().out
    out_file = workdir / "tasks.parquet"
    assert main(["sql", query, "--format", "parquet", "--output", str(out_file)]) == 0
    assert pq.read_table(out_file).num_rows == 3
    assert main(["sql", "SELECT nope FROM tasks"]) == 2
    assert "nope" in capsys.readouterr().err


def test_compact_changes_no_query_result(workdir, capsys):
    config = load_config()
    lake = filled_lake(config)
    files_before = len(list(workdir.glob("trajlake-data/lake/**/*.parquet")))
    con = lake.connect()
    checks = {t: f"SELECT count(*), sum(hash(event_id)) FROM {table_name(t)}" for t in TOPICS}
    before = {t: con.execute(q).fetchall() for t, q in checks.items()}
    assert before["tasks"][0][0] == 120 and before["dlq"][0][0] == 1

    assert main(["lake", "compact"]) == 0
    capsys.readouterr()

    con = lake.connect()
    assert {t: con.execute(q).fetchall() for t, q in checks.items()} == before
    files_after = len(list(workdir.glob("trajlake-data/lake/**/*.parquet")))
    assert files_after < files_before


def test_config_show_and_errors(workdir, capsys):
    assert main(["--set", "runner.concurrency=12", "config", "show"]) == 0
    out = capsys.readouterr().out
    assert "concurrency: 12" in out and "config hash:" in out
    assert main(["--set", "bus.kind=rabbitmq", "config", "show"]) == 2
    assert "bus.kind" in capsys.readouterr().err


def test_unknown_stage_says_what_to_do(workdir, capsys):
    assert main(["stage", "no-such-stage"]) == 2
    assert "package.module:factory" in capsys.readouterr().err


def test_stage_command_runs_a_stage_to_idle(workdir):
    config = load_config()
    bus = open_bus(config.bus)
    bus.create_topics(list(TOPICS), 3)
    produce(bus, "commits", [commit_event(i).encode() for i in range(30)])
    bus.close()
    command = ["trajlake", "stage", "echo_stage:STAGE", "--idle-timeout", "1"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert "consumed 30, produced 30, dead letters 0" in result.stderr


def test_teacher_double_takes_the_options_its_help_shows(capsys):
    with pytest.raises(SystemExit) as raised:
        main(["teacher-double", "--help"])
    assert raised.value.code == 0
    out = capsys.readouterr().out
    assert "trajlake teacher-double --script FILE --port P" in out  # how to run it
    for option in ("--script FILE", "--host HOST", "--port P", "--latency S"):
        assert option in out
    script = Path(files("trajlake.teacher") / "scripts" / "demo.yaml")
    command = ["trajlake", "teacher-double", "--script", str(script), "--port", "0"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        with urllib.request.urlopen(f"{url}/models", timeout=10) as response:
            assert json.load(response)["data"][0]["id"] == "teacher"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
