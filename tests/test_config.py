"""trajlake.yaml plus key.path=value overrides."""

from __future__ import annotations

import pytest

from trajlake.config import load_config
from trajlake.errors import ConfigError

pytestmark = pytest.mark.unit


def test_file_then_overrides_with_typed_values(tmp_path):
    path = tmp_path / "trajlake.yaml"
    path.write_text("bus:\n  kind: kafka\nrunner:\n  concurrency: 4\n")
    config = load_config(path, ["runner.concurrency=16", "sandbox.allow_unsafe_local=true"])
    assert config.bus.kind == "kafka"
    assert config.runner.concurrency == 16
    assert config.sandbox.allow_unsafe_local is True


def test_defaults_are_the_embedded_bus(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config()
    assert config.bus.kind == "embedded" and config.lake.root == "trajlake-data/lake"


def test_errors_name_the_field_and_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("bus:\n  kind: rabbit\n")
    with pytest.raises(ConfigError, match=r"bad.yaml[\s\S]*bus.kind"):
        load_config(path)
    with pytest.raises(ConfigError, match="bus.nope"):
        load_config(None, ["bus.nope=1"])
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(None, ["no-equals-sign"])


def test_config_is_frozen_and_its_hash_tracks_content():
    a, b = load_config(None, []), load_config(None, ["runner.batch_size=7"])
    assert a.hash() == load_config(None, []).hash() != b.hash()
    with pytest.raises(Exception, match="frozen"):
        a.runner.batch_size = 3  # type: ignore[misc]
