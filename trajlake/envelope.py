"""How events travel on the bus: JSON, and a claim check for those too big to travel whole.

Most records are their JSON encoding (`Event.encode`). A record whose encoding is larger than
`bus.max_record_bytes` (Kafka's brokers accept ~1 MB by default; a rollout with 115 steps and
its reasoning passes that) goes as a *claim check*: the same JSON object without its biggest
text fields, led by a ``claim_check`` key naming the lake file that holds its row, the
fields left out, the length of the whole encoding and the sha256 of the left-out values
(`trajlake.lake.claims.fields_digest`), which names the version of the row it was sent for::

    {"claim_check": {"file": "rollouts_t1/repo=…/date=…/rollout1-….parquet",
                     "fields": ["messages_json"], "bytes": 5242880, "sha256": "9f86d0…"},
     "event_id": "…", "rollout": "t1", "exit_status": "Submitted", …}

The reader takes only the row with that digest (another version of the same event_id, from a
re-run, is an error, not a substitute) and checks that the event it reassembles encodes to
exactly ``bytes`` again. Claims without ``sha256`` (older trajlake) are read as before.

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
from trajlake.lake.claims import ClaimSizeMismatch, fetch_fields, fields_digest
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
    # text and bytes fields (not dates), never the event_id the reader looks the row up by
    sizes = {
        k: len(v)
        for k, v in body.items()
        if isinstance(getattr(event, k), str | bytes) and k != "event_id"
    }
    moved: list[str] = []
    data = whole
    for name in sorted(sizes, key=sizes.__getitem__, reverse=True):
        moved.append(name)
        digest = fields_digest({f: getattr(event, f) for f in moved})
        claim = {"file": lake_file, "fields": moved, "bytes": len(whole), "sha256": digest}
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
    event_id, fields = body["event_id"], claim["fields"]
    fetched = fetch_fields(lake, topic, claim["file"], event_id, fields, claim.get("sha256"))
    for name, field_value in fetched.items():  # bytes go back to the JSON form (base64)
        if isinstance(field_value, bytes):
            field_value = base64.b64encode(field_value).decode()
        body[name] = field_value
    event = cls.decode(json.dumps(body).encode())
    # JSON -> event -> JSON is exact (Event.encode), so the fields the sender encoded must come
    # to the very length it recorded; fields a newer schema added (defaults) are left out.
    size = len(event.model_dump_json(include=set(body)).encode())
    if size != claim["bytes"]:
        raise ClaimSizeMismatch(
            f"{cls.__name__} {event_id} reassembled from its claim check on {claim['file']!r} "
            f"is {size:,} bytes, but {claim['bytes']:,} were published: its "
            f"{', '.join(fields)} in the lake are not the ones sent (another version of the "
            "row), or this trajlake encodes the record otherwise than the one that sent it; "
            "re-run the stage that wrote it on its input"
        )
    return event
