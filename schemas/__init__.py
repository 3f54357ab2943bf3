"""Record types, one per topic; each gives the JSON bus encoding and the Arrow lake schema."""

from trajlake.errors import SchemaError
from trajlake.schemas.base import Event, make_event_id, to_arrow, utc_now
from trajlake.schemas.dagger import DaggerRolloutEvent, DaggerTaskEvent
from trajlake.schemas.records import (
    CommitEvent,
    DeadLetter,
    DlqResolved,
    DlqRetry,
    EnvironmentEvent,
    PrEvent,
    ReplayEvent,
    RolloutEvent,
    SampleEvent,
    TaskEvent,
    VerdictEvent,
)
from trajlake.schemas.testing import TestBaselineEvent, TestsEvent

RECORD_TYPES: tuple[type[Event], ...] = (
    CommitEvent,
    TaskEvent,
    RolloutEvent,
    PrEvent,
    VerdictEvent,
    SampleEvent,
    ReplayEvent,
    DeadLetter,
    DlqRetry,
    DlqResolved,
    DaggerTaskEvent,
    DaggerRolloutEvent,
    EnvironmentEvent,
    TestsEvent,
    TestBaselineEvent,
)

#: topic name -> record type; every topic trajlake knows.
TOPICS: dict[str, type[Event]] = {t: cls for cls in RECORD_TYPES for t in cls.TOPICS}


def table_name(topic: str) -> str:
    """The lake table (and DuckDB view) of a topic: dots become underscores."""
    return topic.replace(".", "_")


def record_type(topic: str) -> type[Event]:
    try:
        return TOPICS[topic]
    except KeyError:
        known = ", ".join(TOPICS)
        raise SchemaError(f"no record type for topic {topic!r}; known topics: {known}") from None


__all__ = [
    "CommitEvent",
    "DaggerRolloutEvent",
    "DaggerTaskEvent",
    "DeadLetter",
    "DlqResolved",
    "DlqRetry",
    "EnvironmentEvent",
    "Event",
    "PrEvent",
    "RECORD_TYPES",
    "ReplayEvent",
    "RolloutEvent",
    "SampleEvent",
    "SchemaError",
    "TOPICS",
    "TaskEvent",
    "TestBaselineEvent",
    "TestsEvent",
    "VerdictEvent",
    "make_event_id",
    "record_type",
    "table_name",
    "to_arrow",
    "utc_now",
]
