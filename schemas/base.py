"""The envelope every event carries, and its two encodings: JSON on the bus, Arrow in the lake."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from functools import cache
from typing import Any, ClassVar

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from trajlake.errors import SchemaError
from trajlake.schemas.arrow import arrow_schema


def make_event_id(*parts: object) -> str:
    """A deterministic id: the same inputs (parent id, stage, teacher, attempt, …) give the same id.

    Re-processing an input after a crash therefore yields the same ids, which is what lets the
    lake deduplicate.
    """
    text = "\x1f".join(str(p) for p in parts)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


#: what a derived record copies from its parent: where the work is, and who made it how
LINEAGE = ("repo", "repo_url", "commit", "teacher_id", "teacher_spec", "config_hash", "scaffold_id")


class Event(BaseModel):
    """Fields every record has: identity, lineage, and where it came from.

    Subclasses set TOPICS (the bus topics whose records they are) and SCHEMA_VERSION, and
    declare their own fields. Records are frozen and validated when built.
    """

    model_config = ConfigDict(
        frozen=True, extra="forbid", ser_json_bytes="base64", val_json_bytes="base64"
    )

    TOPICS: ClassVar[tuple[str, ...]] = ()
    SCHEMA_VERSION: ClassVar[int] = 1

    event_id: str = Field(min_length=1, description="deterministic id, see make_event_id")
    parent_ids: list[str] = Field(default_factory=list, description="events this one came from")
    created_at: datetime = Field(default_factory=utc_now, description="when it was made (UTC)")
    schema_version: int = Field(1, description="version of this record type's schema")
    stage: str = Field(min_length=1, description="the stage or producer that made it")
    repo: str = Field("", description="repository the work is about (its registered name)")
    repo_url: str = Field("", description="where the repository is read from (path or URL)")
    commit: str = Field("", description="commit sha the work starts from")
    teacher_id: str = Field("", description="stable id of the teacher (model, sampling, prompts)")
    teacher_spec: str = Field(
        "", description="a replayed generation's teacher config (JSON, no secrets); '' = default"
    )
    config_hash: str = Field("", description="hash of the resolved trajlake config")
    scaffold_id: str = Field("", description="agent scaffold and tool format")

    def lineage(self) -> dict[str, str]:
        """The fields a record made from this one inherits (override what the stage changes)."""
        return {name: getattr(self, name) for name in LINEAGE}

    def topic(self) -> str:
        """The topic this record is published to."""
        return self.TOPICS[0]

    def partition_key(self) -> bytes:
        """Bus key: records with the same key stay in order on one partition."""
        return self.event_id.encode()

    def encode(self) -> bytes:
        """The bus encoding: UTF-8 JSON, readable by any Kafka client."""
        return self.model_dump_json().encode()

    @classmethod
    def decode(cls, data: bytes) -> Event:
        """Parse and validate bus bytes; SchemaError names the bad field."""
        try:
            return cls.model_validate_json(data)
        except ValidationError as e:
            raise SchemaError(describe(cls, e)) from None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Event:
        """Rebuild a record from a lake row (as given by pyarrow's to_pylist)."""
        try:
            return cls.model_validate(row)
        except ValidationError as e:
            raise SchemaError(describe(cls, e)) from None

    @classmethod
    def arrow_schema(cls) -> pa.Schema:
        return _arrow_schema(cls)


@cache
def _arrow_schema(cls: type[Event]) -> pa.Schema:
    return arrow_schema(cls)


def describe(cls: type[BaseModel], error: ValidationError) -> str:
    """'TaskEvent: field request: Field required; …' — the fields that are wrong, and why."""
    problems = []
    for err in error.errors():
        field = ".".join(str(p) for p in err["loc"])
        problems.append(f"field {field}: {err['msg']}" if field else err["msg"])
    return f"{cls.__name__}: " + "; ".join(problems)


def to_arrow(events: list[Event], schema: pa.Schema) -> pa.Table:
    """Events of one type as an Arrow table; a field that does not fit raises SchemaError."""
    rows = [e.model_dump() for e in events]
    try:
        return pa.Table.from_pylist(rows, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise SchemaError(f"records do not fit table schema: {e}") from None
