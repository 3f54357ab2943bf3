"""Mixture sources of `kind: dagger`: DAgger rollouts rendered as training samples.

Every visited state contributes its teacher label as the trained target, and no token the
student wrote is ever trained:

- a rollout with a teacher-executed turn is one sample, the executed trajectory, in which the
  teacher's turns train in place (`train: true`) and the student's do not (`train: false`); it
  is cut at the context budget back to its last trained turn, as SVG samples are;
- each labelled student state is a sample of its own: the history up to that state, nothing in
  it trained, then the teacher's label, trained. One that does not fit the budget is left out.

The repeated histories are DAgger's token blow-up; the manifest counts them, and
`max_label_samples_per_rollout` caps them (keeping the newest states, or a seeded uniform
draw). Sources pick from `rollouts_dagger` with SQL; `iterations: all` is the aggregate DAgger
trains on. Samples are ordered by a hash of (seed, sample id), so a spec gives the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from itertools import accumulate
from typing import Any

import duckdb
import pyarrow as pa

from trajlake.lake.mixture_spec import MixtureSpec, Source, in_list
from trajlake.schemas import make_event_id

MESSAGE_FIELDS = ("role", "content", "reasoning_content", "tool_calls", "tool_call_id")
COLUMNS = (
    'event_id, repo, "commit", teacher_id, scaffold_id, config_hash, task_id, pr_id, '
    "request, exit_status, messages_json, tools_json, turns_json, message_tokens, tokenizer, "
    "patch, iteration"
)


def condition(source: Source) -> str:
    """The SQL condition a dagger source selects rollouts_dagger rows with."""
    parts = []
    for column, values in (
        ("repo", source.repos),
        ("teacher_id", source.teachers),
        ("student_id", source.students),
        ("exit_status", source.exit_status),
    ):
        if values is not None:
            parts.append(in_list(column, values))
    if source.where:
        parts.append(f"({source.where})")
    chosen = " AND ".join(parts) or "true"
    if source.iterations == "last":  # the newest iteration of the rows the source chose
        return (
            f"{chosen} AND iteration = (SELECT max(iteration) FROM rollouts_dagger WHERE {chosen})"
        )
    if isinstance(source.iterations, list):
        return f"{chosen} AND iteration IN ({', '.join(map(str, source.iterations)) or 'NULL'})"
    return chosen


def label_sample_tokens(prefix: list[int], turn: dict[str, Any]) -> int:
    """Tokens of the sample a labelled student state yields: its history, then the label.
    `prefix[i]` is the tokens of the first i executed messages; `turn` is a turns_json row."""
    return prefix[turn["message_index"]] + int(turn.get("label_tokens") or 0)


def add_dagger_samples(con: duckdb.DuckDBPyConnection, spec: MixtureSpec) -> dict[str, Any]:
    """Append the spec's dagger sources to the `mixture` table; returns their manifest part."""
    schema = _nullable(con.sql("SELECT * FROM mixture LIMIT 0").to_arrow_table().schema)
    quotas, taken, stats = spec.quotas(), set(), {}
    targets = set(spec.specialization.repos) if spec.specialization else set()
    for source in (s for s in spec.sources if s.kind == "dagger"):
        cursor = con.execute(
            f"SELECT {COLUMNS} FROM rollouts_dagger WHERE {condition(source)} ORDER BY event_id"
        )
        names = [d[0] for d in cursor.description]
        counts: Counter[str] = Counter()
        samples = []
        for values in cursor.fetchall():
            row = dict(zip(names, values, strict=True))
            if row["event_id"] in taken:
                continue  # a rollout matching several sources counts for the first
            taken.add(row["event_id"])
            counts["rollouts"] += 1
            samples += render(row, source, spec, counts)
        samples.sort(key=lambda s: _order(spec.seed, s["sample_id"]))
        chosen, left = [], dict(quotas)
        for sample in samples:
            sample["source"], sample["target_repo"] = source.name, sample["repo"] in targets
            key = (source.name, sample["target_repo"])
            if left.get(key, 0) > 0:
                left[key] -= 1
                chosen.append(sample)
        counts["selected"] = len(chosen)
        counts["tokens"] = sum(s["tokens"] for s in chosen)
        stats[source.name] = dict(sorted(counts.items()))
        if chosen:
            con.register("dagger_samples", pa.Table.from_pylist(chosen, schema=schema))
            con.execute("INSERT INTO mixture BY NAME SELECT * FROM dagger_samples")
            con.unregister("dagger_samples")
    return stats


def render(
    row: dict[str, Any], source: Source, spec: MixtureSpec, counts: Counter[str]
) -> list[dict[str, Any]]:
    """The samples of one dagger rollout (see the module docstring); counts what it drops."""
    messages = [_message(m) for m in json.loads(row["messages_json"])]
    turns = json.loads(row["turns_json"])
    # a teacher turn trains in place only when the scaffold accepted it (its label is itself)
    actor = {t["message_index"]: t["actor"] for t in turns if t.get("label") is not None}
    tokens = list(row["message_tokens"] or [])
    if len(tokens) != len(messages):  # not measured: whether it fits the budget is unknown
        counts["unmeasured"] += 1
        return []
    prefix = [0, *accumulate(tokens)]
    budget = spec.context_budget
    out = []
    if "teacher" in actor.values():
        trained = [
            m | {"train": m["role"] == "assistant" and actor.get(i) == "teacher"}
            for i, m in enumerate(messages)
        ]
        fitting = max(k for k in range(len(prefix)) if prefix[k] <= budget)
        ends = [i + 1 for i, m in enumerate(trained[:fitting]) if m["train"]]
        if ends:
            counts["trajectory_samples"] += 1
            whole = _sample(row, row["event_id"], trained[: ends[-1]], prefix[ends[-1]])
            whole |= {"truncation_ratio": ends[-1] / len(messages), "messages_total": len(messages)}
            out.append(whole)
        else:
            counts["over_budget"] += 1
    labelled = [t for t in turns if t["actor"] == "student" and t.get("label")]
    kept = _cap(labelled, source, row["event_id"], spec.seed)
    counts["labels_capped"] += len(labelled) - len(kept)
    for t in kept:
        at = t["message_index"]
        size = label_sample_tokens(prefix, t)
        if size > budget:
            counts["over_budget"] += 1
            continue
        history = [m | {"train": False} for m in messages[:at]]
        label = _message(t["label"]) | {"train": True}
        sample_id = make_event_id(row["event_id"], "label", t["turn"])
        out.append(_sample(row, sample_id, [*history, label], size, "dagger-label"))
        counts["label_samples"] += 1
        counts["prefix_tokens"] += prefix[at]
        counts["label_tokens"] += size - prefix[at]
    return out


def _cap(labelled: list[dict], source: Source, rollout_id: str, seed: int) -> list[dict]:
    cap = source.max_label_samples_per_rollout
    if cap is None or len(labelled) <= cap:
        return labelled
    if source.label_pick == "newest":
        return labelled[len(labelled) - cap :]
    picked = random.Random(f"{seed}:{rollout_id}").sample(range(len(labelled)), cap)
    return [labelled[i] for i in sorted(picked)]


def _sample(
    row: dict[str, Any], sample_id: str, messages: list[dict], tokens: int, kind: str = "dagger"
) -> dict[str, Any]:
    return {
        "sample_id": sample_id,
        "messages": messages,
        "tools": row["tools_json"],
        "rollout": kind,
        **{k: row[k] for k in ("request", "repo", "commit", "teacher_id", "scaffold_id")},
        **{k: row[k] for k in ("config_hash", "task_id", "pr_id", "exit_status", "patch")},
        "truncation_ratio": 1.0,
        "kept_messages": len(messages),
        "messages_total": len(messages),
        "tokens": tokens,
        "tokenizer": row["tokenizer"],
    }


def _message(message: dict[str, Any]) -> dict[str, Any]:
    """A message with exactly the fields a mixture row's messages have (missing ones null)."""
    calls = message.get("tool_calls") or None
    if calls:
        calls = [
            {
                "id": c.get("id"),
                "type": c.get("type"),
                "function": {
                    "name": (c.get("function") or {}).get("name"),
                    "arguments": (c.get("function") or {}).get("arguments"),
                },
            }
            for c in calls
        ]
    return {k: message.get(k) for k in MESSAGE_FIELDS} | {"tool_calls": calls}


def _nullable(schema: pa.Schema) -> pa.Schema:
    """`schema` with every field, nested ones too, nullable (DuckDB marks some not null)."""

    def loosen(t: pa.DataType) -> pa.DataType:
        if pa.types.is_struct(t):
            return pa.struct([pa.field(f.name, loosen(f.type)) for f in t])
        if pa.types.is_list(t):
            return pa.list_(loosen(t.value_type))
        return t

    return pa.schema([pa.field(f.name, loosen(f.type)) for f in schema])


def _order(seed: int, sample_id: str) -> str:
    return hashlib.md5(f"{seed}:{sample_id}".encode()).hexdigest()
