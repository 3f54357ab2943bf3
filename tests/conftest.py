"""Shared fixtures: a real Tansu broker for the session, and every bus backend through one fixture.

`bus_config` runs a test once per backend: embedded (a SQLite file in tmp_path) and kafka (the
session's Tansu broker, marked `kafka`). The broker is shared by the whole session, so tests
name their topics and groups with the `unique` prefix.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from trajlake.bus import Bus, open_bus
from trajlake.bus.tansu import tansu_broker
from trajlake.config import BusConfig
from trajlake.errors import BusError


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """host:port of a Tansu broker (memory storage) that lives for the whole test session."""
    log_file = tmp_path_factory.mktemp("tansu") / "broker.log"
    try:
        with tansu_broker(log_file) as bootstrap:
            yield bootstrap
    except BusError as e:  # the broker is part of the test setup: missing means broken, not skip
        pytest.fail(f"cannot start the test broker: {e}")


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
def bus_config(request: pytest.FixtureRequest, tmp_path: Path) -> BusConfig:
    """One BusConfig per backend; the kafka one starts the session's broker on first use."""
    if request.param == "kafka":
        # Tansu needs these timeouts: a group join takes session_timeout/2 there.
        return BusConfig(
            kind="kafka",
            bootstrap_servers=request.getfixturevalue("kafka_bootstrap"),
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
            namespace=f"t{uuid.uuid4().hex[:8]}",  # the broker is shared by the whole session
        )
    # Shorter than the default so that SIGKILL takeover tests finish quickly.
    return BusConfig(
        kind="embedded",
        path=str(tmp_path / "bus" / "bus.db"),
        session_timeout_ms=2000,
        heartbeat_interval_ms=200,
    )


@pytest.fixture
def bus(bus_config: BusConfig) -> Iterator[Bus]:
    """An open bus on each backend, closed after the test."""
    opened = open_bus(bus_config)
    yield opened
    opened.close()


@pytest.fixture
def unique() -> str:
    """A short prefix for topic and group names: the broker is shared by the whole session."""
    return f"t{uuid.uuid4().hex[:8]}"
