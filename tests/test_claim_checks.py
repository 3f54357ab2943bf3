"""Claim checks name the version of the row they were sent for, on a real temp-dir lake.

A stage re-run after a rebalance writes the same event_id again with other content (another
LLM rollout); compaction merges files and keeps the earliest version. A claim check must come
back as the record that was sent, or fail saying so: never its bus fields joined to the big
fields of another version. Real Parquet files, real compaction, the real envelope.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from trajlake import envelope
from trajlake.lake import Lake, claims
from trajlake.lake.claims import (
    ClaimSizeMismatch,
    ClaimStorageError,
    ClaimVersionMissing,
    fields_digest,
    relative_path,
)
from trajlake.schemas import RolloutEvent, make_event_id

pytestmark = pytest.mark.unit

T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
DAY = dt.date(2024, 5, 1)
MAX_BYTES = 4_000  # the bus limit here: a rollout's trajectory goes as a claim check


def rollout(answer: str, seconds: int = 0) -> RolloutEvent:
    """One rollout of one task; `answer` makes the version (what another LLM run says)."""
    turns = [
        {"role": "assistant", "content": f"{answer}: step {i} reads the code"} for i in range(200)
    ]
    return RolloutEvent(
        event_id=make_event_id("rollout_t1", "task-7", 1),
        created_at=T0 + dt.timedelta(seconds=seconds),
        stage="rollout_t1",
        repo="github.com/acme/widgets",
        rollout="t1",
        task_id=make_event_id("task", 7),
        request="The issue may be in Widget.total.",
        messages_json=json.dumps(turns),
        patch=f"--- a/w.py\n+++ b/w.py\n+# {answer}\n",
        exit_status="Submitted",
        steps=len(turns),
    )


def publish(lake: Lake, event: RolloutEvent, name: str) -> bytes:
    """What a stage does: the row to the lake (file `name`), then the bus bytes that claim it."""
    [path] = lake.write("rollouts.t1", [event], name, date=DAY)
    data = envelope.encode(event, relative_path(lake, path), MAX_BYTES)
    assert envelope.is_claim_check(data)
    claim = json.loads(data)["claim_check"]
    assert claim["fields"] == ["messages_json"] and claim["bytes"] == len(event.encode())
    assert claim["sha256"] == fields_digest({"messages_json": event.messages_json})
    return data


def decode(lake: Lake, data: bytes) -> RolloutEvent:
    return envelope.decode("rollouts.t1", data, lake)


def data_files(lake: Lake) -> list[str]:
    return sorted(p.name for p in Path(lake.root, "rollouts_t1").rglob("*.parquet"))


def test_each_claim_gets_its_own_version_after_compaction_merged_their_files(tmp_path):
    lake = Lake(tmp_path / "lake")
    # Two runs of the stage (a rebalance in between) made the same event at the same time:
    # compaction keeps both (ties at the earliest created_at), in one file.
    first, second = rollout("first run"), rollout("second run")
    sent_first = publish(lake, first, "rollout_t1-tasks-p0-o000000000007")
    sent_second = publish(lake, second, "rollout_t1-tasks-p0-o000000000005")
    lake.compact(["rollouts.t1"])
    [merged] = data_files(lake)
    assert merged.startswith("compacted-")  # both claimed files are gone

    assert decode(lake, sent_first) == first
    assert decode(lake, sent_second) == second


def test_a_claim_whose_version_compaction_dropped_says_so(tmp_path):
    lake = Lake(tmp_path / "lake")
    kept, dropped = rollout("first run"), rollout("second run", seconds=30)
    sent_kept = publish(lake, kept, "rollout_t1-tasks-p0-o000000000007")
    sent_dropped = publish(lake, dropped, "rollout_t1-tasks-p0-o000000000005")
    lake.compact(["rollouts.t1"])  # keeps the earliest version only

    assert decode(lake, sent_kept) == kept
    kept_digest = fields_digest({"messages_json": kept.messages_json})
    with pytest.raises(ClaimVersionMissing) as caught:
        decode(lake, sent_dropped)
    message = str(caught.value)
    assert f"record {dropped.event_id} was published with messages_json of sha256" in message
    assert "that version is not in the lake" in message
    assert f"holds only 1 other version(s) of it (sha256 {kept_digest[:12]}" in message
    assert "re-run the stage that wrote it" in message


def test_a_file_rewritten_with_another_version_is_not_read_for_the_first(tmp_path):
    lake = Lake(tmp_path / "lake")
    # A re-run of the same input batch writes the same file name, with another rollout in it.
    before, after = rollout("first run"), rollout("second run", seconds=30)
    sent_before = publish(lake, before, "rollout_t1-tasks-p0-o000000000007")
    sent_after = publish(lake, after, "rollout_t1-tasks-p0-o000000000007")
    assert len(data_files(lake)) == 1

    assert decode(lake, sent_after) == after
    with pytest.raises(ClaimVersionMissing, match="that version is not in the lake"):
        decode(lake, sent_before)


def test_a_claim_without_a_digest_still_decodes_and_its_size_is_checked(tmp_path):
    lake = Lake(tmp_path / "lake")
    event = rollout("first run")
    body = json.loads(publish(lake, event, "rollout_t1-tasks-p0-o000000000007"))
    del body["claim_check"]["sha256"]  # as an older trajlake sent it
    old = json.dumps(body, separators=(",", ":")).encode()
    assert envelope.is_claim_check(old)
    assert decode(lake, old) == event

    # Its file rewritten with a longer rollout: nothing names the version, but the size does.
    publish(lake, rollout("a second, longer run"), "rollout_t1-tasks-p0-o000000000007")
    with pytest.raises(ClaimSizeMismatch, match=f"is [0-9,]+ bytes, but {len(event.encode()):,}"):
        decode(lake, old)


def test_a_damaged_file_is_a_storage_error_at_once(tmp_path, monkeypatch):
    lake = Lake(tmp_path / "lake")
    sent = publish(lake, rollout("first run"), "rollout_t1-tasks-p0-o000000000007")
    [path] = Path(lake.root, "rollouts_t1").rglob("*.parquet")
    path.write_bytes(b"PAR1 cut short")
    monkeypatch.setattr(claims, "WAIT_FOR_ROW_S", 0.0)  # a poll for the row would fail too
    with pytest.raises(ClaimStorageError, match=f"cannot read {path}, which holds the"):
        decode(lake, sent)
