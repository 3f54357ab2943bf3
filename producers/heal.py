"""Healing a lake written before outages were retried: failure rows back into dead letters.

Before trajlake told the model's failures from the infrastructure's, a teacher that was down
(or refused the configuration, or a sandbox that did not start) left a final rollout row with
that error as its exit status, and the rollout stages, which skip what is done, never ran the
task again. `heal` finds those rows (`OUTAGE_ROWS`: the messages the client and the sandbox
gave such failures), and for each input that produced one:

1. writes a dead letter for it (lake, then bus), carrying the input as recorded in the lake,
   so that `trajlake dlq retry` sends it back to its stage;
2. then removes the failure rows from the lake, with every row made from them (the filter's
   samples, a verdict), rewriting each file that holds one (temp name, then rename), so that
   the re-run's rows, which keep their event ids, are the ones the views show.

A crash between the two leaves dead letters whose rows are still there; healing again finishes
(the dead letters' ids are deterministic). Local lakes only: on object storage it says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from trajlake.bus import Producer
from trajlake.config import BusConfig
from trajlake.delivery import DLQ_TOPIC, write_and_send
from trajlake.errors import LakeError
from trajlake.lake import Lake
from trajlake.lake.files import PARQUET_SUFFIX
from trajlake.lake.store import replace_file
from trajlake.lake.views import parquet_source
from trajlake.schemas import DeadLetter, Event, make_event_id, table_name

#: Rollout rows whose exit status was the infrastructure's failure, as trajlake recorded them
#: before it retried outages (and as no trajlake records them now).
OUTAGE_ROWS = """
exit_status IN ('TeacherUnavailable', 'SandboxDown', 'SandboxError')
OR (exit_status = 'TeacherError' AND (
     error LIKE 'the teacher at % failed % time(s)%'
  OR error LIKE '%did not answer with a chat completion%'
  OR error LIKE '%answered with something that is not JSON%'
  OR regexp_matches(error, 'rejected the request \\(HTTP (401|402|403|404|405|408|409)')))
"""

#: rollout table -> (the stage that wrote it, the topic of its input).
ROLLOUT_INPUTS = {
    "rollouts.t1": ("rollout1", "tasks"),
    "rollouts.t2": ("rollout2", "prs"),
    "rollouts.dagger": ("dagger", "dagger.tasks"),
}
#: tables whose rows are made from rollouts (parent_ids), removed with them.
DERIVED = ("samples", "verdicts")


@dataclass(frozen=True)
class HealPlan:
    """Dead letters to write (one per input), and the rows to remove, per table."""

    letters: list[DeadLetter]
    rows: dict[str, set[str]]


def plan(lake: Lake) -> HealPlan:
    """What healing `lake` would do."""
    letters: dict[str, DeadLetter] = {}
    rows: dict[str, set[str]] = {}
    con = lake.connect([*ROLLOUT_INPUTS, *DERIVED])
    try:
        for table, (stage, topic) in ROLLOUT_INPUTS.items():
            failed = con.execute(
                f"SELECT event_id, parent_ids, exit_status FROM {table_name(table)} "
                f"WHERE {OUTAGE_ROWS}"
            ).fetchall()
            if not failed:
                continue
            recorded = _recorded(lake, topic, {p for _, parents, _ in failed for p in parents})
            inputs: set[str] = set()
            for event_id, parents, status in failed:
                source, event = _input_of(recorded, parents, table)
                letter = _dead_letter(stage, source, event, event_id, status)
                letters.setdefault(letter.event_id, letter)
                inputs.add(event.event_id)
            # every attempt made from those inputs: the re-run makes them all again
            rows[table] = _made_from(con, table, inputs)
        removed = set().union(*rows.values())
        for table in DERIVED:
            made = _made_from(con, table, removed) if removed else set()
            if made:
                rows[table] = made
    finally:
        con.close()
    return HealPlan(list(letters.values()), rows)


def _made_from(con: duckdb.DuckDBPyConnection, table: str, parents: set[str]) -> set[str]:
    """Rows of `table` with a parent among `parents`."""
    sql = f"SELECT event_id FROM {table_name(table)} WHERE len(list_intersect(parent_ids, ?)) > 0"
    return {row[0] for row in con.execute(sql, [sorted(parents)]).fetchall()}


def _recorded(lake: Lake, topic: str, ids: set[str]) -> dict[str, tuple[str, Event]]:
    """event id -> (topic, event) of the records among `ids` in the replay topic or `topic`."""
    found: dict[str, tuple[str, Event]] = {}
    for source in ("replay", topic):
        for event in lake.read_events(source, "list_contains(?, event_id)", [sorted(ids)]):
            found.setdefault(event.event_id, (source, event))
    return found


def _input_of(
    recorded: dict[str, tuple[str, Event]], parents: list[str], table: str
) -> tuple[str, Event]:
    """The record a rollout was made from: the replay when it came from one (its last
    parent), else its recorded input."""
    found = next((recorded[p] for p in reversed(parents) if p in recorded), None)
    if found is None:
        raise LakeError(
            f"the input of a {table_name(table)} row (parents {parents}) is not in the lake: "
            "restore it, or leave the failure rows as they are"
        )
    return found


def _dead_letter(stage: str, topic: str, event: Event, row_id: str, status: str) -> DeadLetter:
    """A dead letter for an input read from the lake: its bus offset is not known, so it is
    named by the input's id (partition -1); the runner names its retry the same way."""
    offset = int(make_event_id(topic, event.event_id)[:12], 16)
    return DeadLetter(
        event_id=make_event_id(DLQ_TOPIC, stage, topic, -1, offset),
        parent_ids=[event.event_id],
        stage=stage,
        repo=event.repo,
        commit=event.commit,
        source_topic=topic,
        source_partition=-1,
        source_offset=offset,
        error_type="SandboxDown" if status.startswith("Sandbox") else "TeacherUnavailable",
        error=f"healed: rollout {row_id} had recorded an outage as its exit status ({status})",
        payload=event.encode(),
    )


def heal(lake: Lake, todo: HealPlan, producer: Producer, bus: BusConfig) -> None:
    """Dead letters first (lake, then bus), then the failure rows out of the lake."""
    if lake.objects is not None:
        raise LakeError("healing rewrites lake files, which works on a local lake only")
    if todo.letters:
        name = f"heal-{make_event_id(*sorted(d.event_id for d in todo.letters))[:12]}"
        write_and_send(lake, producer, bus, DLQ_TOPIC, todo.letters, name)
    for table, ids in todo.rows.items():
        _remove_rows(Path(lake.root), table_name(table), ids)


def _remove_rows(root: Path, table: str, ids: set[str]) -> None:
    """Rewrite each file of `table` that holds one of `ids` without those rows."""
    for path in _files_holding(root, table, ids):
        data = pq.read_table(path)
        kept = data.filter(pc.invert(pc.is_in(data["event_id"], pa.array(sorted(ids)))))
        if kept.num_rows == 0:
            path.unlink()
            continue
        replace_file(path, kept)


def _files_holding(root: Path, table: str, ids: set[str]) -> list[Path]:
    """The files of `table` with a row among `ids` (their event_id column only is read)."""
    files = [str(root / table / "**" / f"*{PARQUET_SUFFIX}")]
    con = duckdb.connect()
    try:
        found = con.execute(
            f"SELECT DISTINCT filename FROM {parquet_source(files, positions=True)} "
            "WHERE list_contains(?, event_id)",
            [sorted(ids)],
        ).fetchall()
    finally:
        con.close()
    return [Path(name) for (name,) in found]
