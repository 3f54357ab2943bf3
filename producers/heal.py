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

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from trajlake.bus import Producer
from trajlake.config import BusConfig
from trajlake.delivery import DLQ_TOPIC, write_and_send
from trajlake.errors import LakeError
from trajlake.lake import Lake
from trajlake.lake.files import publish, table_files, temp_path
from trajlake.schemas import DeadLetter, make_event_id, record_type, table_name

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
    inputs = [topic for _, topic in ROLLOUT_INPUTS.values()]
    con = lake.connect([*ROLLOUT_INPUTS, *DERIVED, *inputs, "replay"])
    try:
        for table, (stage, topic) in ROLLOUT_INPUTS.items():
            failed = con.execute(
                f"SELECT event_id, parent_ids FROM {table_name(table)} WHERE {OUTAGE_ROWS}"
            ).fetchall()
            inputs: set[str] = set()
            for event_id, parents in failed:
                source, payload = _input_of(con, topic, parents)
                letter = _dead_letter(stage, source, payload, event_id)
                letters.setdefault(letter.event_id, letter)
                inputs.add(letter.parent_ids[0])
            if inputs:  # every attempt made from those inputs: the re-run makes them again
                rows[table] = _made_from(con, table, inputs)
        removed = set().union(*rows.values()) if rows else set()
        for table in DERIVED:
            made = _made_from(con, table, removed) if removed else set()
            if made:
                rows[table] = made
    finally:
        con.close()
    return HealPlan(list(letters.values()), rows)


def _made_from(con, table: str, parents: set[str]) -> set[str]:
    """Rows of `table` with a parent among `parents`."""
    sql = f"SELECT event_id FROM {table_name(table)} WHERE len(list_intersect(parent_ids, ?)) > 0"
    return {row[0] for row in con.execute(sql, [sorted(parents)]).fetchall()}


def _input_of(con, topic: str, parents: list[str]) -> tuple[str, bytes]:
    """The topic and bytes of the record a rollout was made from: a replay (its last parent,
    when it came from one), else its recorded input."""
    for source in ("replay", topic):
        cls = record_type(source)
        for parent in reversed(parents):
            found = con.sql(
                f"SELECT * FROM {table_name(source)} WHERE event_id = ?", params=[parent]
            ).to_arrow_table()
            if found.num_rows:
                fields = set(cls.model_fields)
                row = {k: v for k, v in found.to_pylist()[0].items() if k in fields}
                return source, cls.model_validate(row).encode()
    raise LakeError(
        f"the input of rollout row(s) with parents {parents} is not in {table_name(topic)}: "
        "restore it, or leave the failure rows as they are"
    )


def _dead_letter(stage: str, topic: str, payload: bytes, row_id: str) -> DeadLetter:
    """A dead letter for an input read from the lake: its bus offset is not known, so it is
    named by the input's bytes (partition -1); the runner names its retry the same way."""
    offset = int(make_event_id(topic, payload.decode())[:12], 16)
    event = record_type(topic).decode(payload)
    return DeadLetter(
        event_id=make_event_id(DLQ_TOPIC, stage, topic, -1, offset),
        parent_ids=[event.event_id],
        stage=stage,
        repo=event.repo,
        commit=event.commit,
        source_topic=topic,
        source_partition=-1,
        source_offset=offset,
        error_type="TeacherUnavailable",
        error=f"healed: rollout {row_id} had recorded an outage as its exit status",
        payload=payload,
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
    wanted = sorted(ids)
    for path in table_files(root, table):
        data = pq.read_table(path)
        hit = pc.is_in(data.column("event_id"), value_set=pa.array(wanted, pa.string()))
        if not pc.any(hit).as_py():
            continue
        kept = data.filter(pc.invert(hit))
        if kept.num_rows == 0:
            path.unlink()
            continue
        tmp = temp_path(path)
        pq.write_table(kept, tmp)
        publish(tmp, path)
