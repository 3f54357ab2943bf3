"""One definition per record type gives the bus encoding and the lake schema."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from trajlake.errors import SchemaError
from trajlake.schemas import (
    TOPICS,
    DeadLetter,
    RolloutEvent,
    TaskEvent,
    make_event_id,
    record_type,
    table_name,
    to_arrow,
)

pytestmark = pytest.mark.unit


def task(**changes) -> TaskEvent:
    fields = dict(
        event_id=make_event_id("parent", "sampler", "", 1),
        parent_ids=["parent"],
        stage="sampler",
        repo="org/repo",
        commit="a" * 40,
        function_file="src/x.py",
        function_name="Parser.parse",
        line_start=10,
        line_end=30,
        change_type="error handling",
        request="Parser.parse in src/x.py may mishandle errors.",
    )
    return TaskEvent(**{**fields, **changes})


def test_event_ids_are_deterministic_and_distinct():
    assert make_event_id("p", "rollout1", "teacher-a", 1) == make_event_id(
        "p", "rollout1", "teacher-a", 1
    )
    assert make_event_id("p", "rollout1", "teacher-a", 1) != make_event_id(
        "p", "rollout1", "teacher-a", 2
    )
    assert make_event_id("p", "rollout1", "teacher-a", 1) != make_event_id(
        "p", "rollout1", "teacher-b", 1
    )


def test_bus_encoding_is_plain_json_and_round_trips():
    event = task()
    data = json.loads(event.encode())  # what kcat or any Kafka client sees
    assert data["function_name"] == "Parser.parse" and data["schema_version"] == 2
    assert TaskEvent.decode(event.encode()) == event
    del data["language"]  # a task of schema 1, when only Python was sampled
    old = TaskEvent.decode(json.dumps(data | {"schema_version": 1}).encode())
    assert (old.language, old.schema_version) == ("python", 1)


def test_binary_payload_survives_json_as_base64():
    dead = DeadLetter(
        event_id="d",
        stage="s",
        source_topic="t",
        source_partition=0,
        source_offset=7,
        error_type="E",
        error="e",
        payload=b"\xff\x00raw",
    )
    assert DeadLetter.decode(dead.encode()).payload == b"\xff\x00raw"


def test_validation_errors_name_the_field():
    with pytest.raises(SchemaError, match="field line_start"):
        TaskEvent.decode(task().encode().replace(b'"line_start":10', b'"line_start":"ten"'))
    with pytest.raises(SchemaError, match="field request: Field required"):
        TaskEvent.decode(
            b'{"event_id": "x", "stage": "s", "function_file": "f", '
            b'"function_name": "g", "line_start": 1, "line_end": 2, '
            b'"change_type": "c"}'
        )
    with pytest.raises(SchemaError, match="TaskEvent: Invalid JSON"):
        TaskEvent.decode(b"not json at all")


def test_arrow_schema_comes_from_the_same_class():
    schema = RolloutEvent.arrow_schema()
    assert schema.field("parent_ids").type == pa.list_(pa.string())
    assert schema.field("created_at").type == pa.timestamp("us", tz="UTC")
    assert schema.field("steps").type == pa.int64()
    assert schema.names[:3] == ["event_id", "parent_ids", "created_at"]
    event = task()
    table = to_arrow([event], TaskEvent.arrow_schema())
    assert TaskEvent.from_row(table.to_pylist()[0]) == event


def test_every_topic_has_a_record_type_and_a_sql_friendly_table_name():
    assert set(TOPICS) == {
        "commits",
        "tasks",
        "rollouts.t1",
        "prs",
        "rollouts.t2",
        "verdicts",
        "samples",
        "dagger.tasks",
        "rollouts.dagger",
        "replay",
        "dlq",
        "dlq.retry",
        "dlq.resolved",
        "environments",
        "tests",
        "test_baselines",
    }
    assert table_name("rollouts.t1") == "rollouts_t1"
    for topic, cls in TOPICS.items():
        assert cls.arrow_schema().names[0] == "event_id"
        assert record_type(topic) is cls
    with pytest.raises(SchemaError, match="known topics"):
        record_type("nope")


def test_rollouts_route_to_their_topic():
    base = dict(event_id="r", stage="rollout", task_id="t", request="q", exit_status="Submitted")
    assert RolloutEvent(rollout="t1", **base).topic() == "rollouts.t1"
    assert RolloutEvent(rollout="t2", **base).topic() == "rollouts.t2"
    assert task().topic() == "tasks"
