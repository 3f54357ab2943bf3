"""Secrets never reach the lake: the runner redacts every output before writing it."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from echo_stage import STAGE, commit_event
from helpers import produce, read_topic

from trajlake.bus import open_bus
from trajlake.config import BusConfig, RunnerConfig
from trajlake.lake import Lake
from trajlake.redact import Redactor
from trajlake.runner import StageRunner

pytestmark = pytest.mark.unit

SECRET = "sk-test-9f8e7d6c5b4a39281706abcdef"


def test_env_secrets_and_credential_shapes_are_redacted():
    redactor = Redactor({"MY_API_KEY": "hunter2-is-long", "PATH": "/usr/bin:/bin", "X_TOKEN": "1"})
    text = (
        "key hunter2-is-long, path /usr/bin:/bin, gh ghp_abcdefghijklmnopqrstuvwxyz0123, "
        "Authorization: Bearer abcdefghijklmnop1234, aws AKIAABCDEFGHIJKLMNOP, short 1"
    )
    out = redactor.redact(text)
    for secret in ("hunter2-is-long", "ghp_abc", "abcdefghijklmnop1234", "AKIAABCDEF"):
        assert secret not in out
    assert "/usr/bin:/bin" in out and "short 1" in out  # not secrets: left alone


@pytest.mark.parametrize(
    "secret",
    [
        "sk-proj-abcdefghijklmnop1234",
        "sk-ant-abcdefghijklmnop1234",
        "hf_abcdefghijklmnopqrstuv",
        "ghs_abcdefghijklmnopqrstuvwxyz",
        "github_pat_abcdefghijklmnopqrstuv",
        "xoxb-1234567890-abcdef",
        "AKIAABCDEFGHIJKLMNOP",
        "bearer abcdefghijklmnop1234",
        "BEARER abcdefghijklmnop1234",
        "Zq9-from-the-environment",  # a value starting where no credential shape does
    ],
)
def test_every_shape_is_redacted_in_any_field_of_an_event(secret):
    redactor = Redactor({"DEPLOY_TOKEN": "Zq9-from-the-environment"})
    assert redactor.redact(f"x {secret} y") == "x [REDACTED] y"
    event = commit_event(1).model_copy(update={"changed_files": ["a.py", f"{secret} leaked"]})
    redacted = redactor.redact_event(event)
    assert redacted.changed_files == ["a.py", "[REDACTED] leaked"]
    assert redacted.message == event.message  # the other fields are left as they were
    clean = commit_event(2)
    assert redactor.redact_event(clean) is clean  # nothing found: the event itself


def test_a_secret_from_the_environment_never_reaches_lake_or_topic(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    bus = open_bus(BusConfig(path=str(tmp_path / "bus.db")))
    bus.create_topics(["commits", "tasks", "dlq"], 2)
    leaky = commit_event(1).model_copy(update={"commit": f"abc {SECRET} def"})
    produce(bus, "commits", [leaky.encode()])
    lake = Lake(tmp_path / "lake")
    StageRunner(STAGE, bus, lake, RunnerConfig(poll_timeout_s=0.2)).run(idle_timeout_s=1)

    [task] = read_topic(bus, "tasks")
    assert SECRET not in task.value.decode() and "[REDACTED]" in task.value.decode()
    files = list((tmp_path / "lake").rglob("*.parquet"))  # every file, decoded (zstd hides bytes)
    assert files and all(SECRET not in str(pq.read_table(f).to_pylist()) for f in files)
    rows = lake.connect().execute("SELECT * FROM tasks").fetchall()
    assert rows and SECRET not in repr(rows)
    bus.close()
