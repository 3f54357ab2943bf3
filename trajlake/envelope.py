"""How events travel on the bus: JSON, and a claim check for those too big to travel whole.

Most records are their JSON encoding (`Event.encode`). A record whose encoding is larger than
`bus.max_record_bytes` (Kafka's brokers accept ~1 MB by default; a rollout with 115 steps and
its reasoning passes that) goes as a *claim check*: the same JSON object without its biggest
text fields, led by a ``claim_check`` key naming the lake file that holds its row and the
fields left out::

    {"claim_check": {"file": "rollouts_t1/repo=…/date=…/rollout1-….parquet",
                     "fields": ["messages_json"], "bytes": 5242880},
     "event_id": "…", "rollout": "t1", "exit_status": "Submitted", …}

The lake is written before the bus (the runner's order), so the row is there when the
reference is read. Any Kafka client (kcat included) still reads every record as JSON, with
everything but the big fields in plain view.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from trajlake.errors import RecordRejected
from trajlake.lake import Lake
from trajlake.lake.claims import fetch_fields
from trajlake.schemas import Event, record_type

CLAIM_KEY = "claim_check"
_CLAIM_PREFIX = b'{"' + CLAIM_KEY.encode() + b'":'


def encode(event: Event, lake_file: str, max_bytes: int, claim_check: bool = True) -> bytes:
    """The bus bytes of `event`, whose lake row is in `lake_file` (relative to the lake root).

    Raises RecordRejected when the record cannot be made to fit `max_bytes`.
    """
    whole = event.encode()
    if len(whole) <= max_bytes:
        return whole
    if not claim_check:
        raise RecordRejected(
            f"{type(event).__name__} {event.event_id} is {len(whole):,} bytes, over "
            f"bus.max_record_bytes={max_bytes:,}, and bus.claim_check is off: turn it on, or "
            "raise bus.max_record_bytes together with the broker's message.max.bytes"
        )
    body: dict[str, Any] = event.model_dump(mode="json")
    sizes = {k: len(v) for k, v in body.items() if isinstance(v, str)}
    moved: list[str] = []
    data = whole
    for name in sorted(sizes, key=sizes.__getitem__, reverse=True):
        moved.append(name)
        claim = {"file": lake_file, "fields": moved, "bytes": len(whole)}
        rest = {k: v for k, v in body.items() if k not in moved}
        data = json.dumps({CLAIM_KEY: claim, **rest}, separators=(",", ":")).encode()
        if len(data) <= max_bytes:
            return data
    raise RecordRejected(
        f"{type(event).__name__} {event.event_id} is still {len(data):,} bytes without its "
        f"text fields, over bus.max_record_bytes={max_bytes:,}"
    )


def is_claim_check(value: bytes) -> bool:
    return value.startswith(_CLAIM_PREFIX)


def decode(topic: str, value: bytes, lake: Lake) -> Event:
    """The event a bus record carries, fetching claim-checked fields from the lake."""
    cls = record_type(topic)
    if not is_claim_check(value):
        return cls.decode(value)
    body = json.loads(value)
    claim = body.pop(CLAIM_KEY)
    fetched = fetch_fields(lake, topic, claim["file"], body["event_id"], claim["fields"])
    for name, field_value in fetched.items():  # bytes go back to the JSON form (base64)
        if isinstance(field_value, bytes):
            field_value = base64.b64encode(field_value).decode()
        body[name] = field_value
    return cls.decode(json.dumps(body).encode())
