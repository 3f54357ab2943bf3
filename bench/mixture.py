"""Mixture build at scale: select 25,000 of 1,000,000 trajectories and export them.

Run as:
    python bench/mixture.py                       # 1,000,000 rows, ~3 KB of text each
    python bench/mixture.py --rows 100000 --no-goals   # a quicker look

The script generates synthetic rows of the `trajectories` view (metadata plus messages of a few
KB; cached under --data between runs) as Parquet and as JSONL, then builds the same selection
two ways in the same run (each source's count scaled to --rows: 2.5% of them):

  trajlake        `write_mixture` on a DuckDB view over the Parquet file: one statement that
                  selects on metadata, then reads and renders only the chosen rows, written as
                  data.parquet + data.jsonl.
  straightforward the JSONL read line by line in Python, filtered, sorted, the chosen rows'
                  messages parsed, cut and flagged, written as JSONL.

Goals: selection under 1 s; export at >= 150 MB/s; >= 10x faster than the straightforward way.
Exits 1 when the two builds chose different rows (or cut one to another length), and when a goal
is missed (unless --no-goals: the goals are for 1,000,000 rows; fixed costs dominate fewer).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

import duckdb

from trajlake.lake.mixture_spec import MixtureSpec
from trajlake.lake.mixture_sql import selection_sql
from trajlake.lake.mixtures import write_mixture

BUDGETS = [8192, 32768]
SPEC = {
    "name": "bench",
    "seed": 1,
    "context_budget": 32768,
    "specialization": {"repos": [f"repo-{i}" for i in range(5)], "ratio": 0.6},
    "sources": [
        {
            "name": "t2-soft",
            "rollout": "t2",
            "min_recall": 0.5,
            "max_patch_lines": 40,
            "count": 15000,
        },
        {
            "name": "t1-small",
            "rollout": "t1",
            "max_patch_lines": 40,
            "max_tool_tokens": 600,
            "count": 10000,
        },
    ],
}

#: `n` pseudo-random words of 32 hex characters (compresses about 2x, like code and logs).
WORDS = """
CREATE OR REPLACE MACRO words(key, n) AS
  array_to_string(list_transform(range(n), lambda j: md5(key || '.' || j)), ' ')
"""

#: Synthetic rows: 20 repos, both rollouts, recall in steps of 0.1, 5-9 messages of ~400 chars.
GENERATE = """
COPY (
  SELECT md5(i::VARCHAR) AS rollout_id, CASE WHEN i % 2 = 0 THEN 't1' ELSE 't2' END AS rollout,
         1 AS attempt, 'repo-' || (i % 20) AS repo, md5('c' || (i // 50)) AS "commit",
         'teacher-a' AS teacher_id, 'scaffold-a' AS scaffold_id, 'cfg-a' AS config_hash,
         md5('t' || (i // 2)) AS task_id, 'Fix the function f' || i AS request,
         '' AS pr_id, 'Submitted' AS exit_status, md5('p' || (i % 900000)) AS patch_hash,
         '--- a/f.py' || chr(10) || '+++ b/f.py' || chr(10) || '+x = ' || i AS patch,
         (hash(i) % 11) / 10 AS recall, (hash(i) % 11)::INT AS matched, 10 AS total,
         'soft' AS label, (hash(i * 7) % 120)::INT AS patch_lines,
         (hash(i * 13) % 1200)::INT AS tool_tokens_max, 'tok-a' AS tokenizer,
         {budgets} AS budgets,
         [least(1.0, (hash(i * 3) % 100) / 60), 1.0] AS truncation_ratios,
         to_json([{{'role': 'system', 'content': 'You are an engineer.'}},
                  {{'role': 'user', 'content': 'Fix the function f' || i}}]
                 || list_transform(range(1 + i % 3), lambda k: [
                      {{'role': 'assistant', 'content': '', 'reasoning_content':
                          words(i || 'r' || k, 12),
                        'tool_calls': [{{'id': 'c' || k, 'type': 'function', 'function':
                          {{'name': 'bash', 'arguments': '{{"command": "cat f.py"}}'}}}}]}},
                      {{'role': 'tool', 'tool_call_id': 'c' || k, 'content':
                          words(i || 'o' || k, 16)}}]).flatten()
                 || [{{'role': 'assistant', 'content': 'done', 'tool_calls': NULL}}])::VARCHAR
           AS messages_json,
         '[{{"type": "function", "function": {{"name": "bash"}}}}]' AS tools_json,
         list_transform(range(3 + 2 * (1 + i % 3)), lambda k: 60) AS message_tokens
  FROM range({rows}) r(i)
) TO '{path}' ({options})
"""


def generate(data: Path, rows: int) -> tuple[Path, Path]:
    parquet, jsonl = data / f"trajectories-{rows}.parquet", data / f"trajectories-{rows}.jsonl"
    data.mkdir(parents=True, exist_ok=True)
    for path, options in ((parquet, "FORMAT parquet, COMPRESSION zstd"), (jsonl, "FORMAT json")):
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            con = duckdb.connect()
            con.execute(WORDS)
            con.execute(GENERATE.format(rows=rows, budgets=BUDGETS, path=tmp, options=options))
            tmp.rename(path)
    return parquet, jsonl


def scaled(rows: int) -> dict:
    """SPEC with each source's count scaled to `rows` (25,000 of 1,000,000: 2.5%)."""
    sources = [s | {"count": max(1, round(s["count"] * rows / 1_000_000))} for s in SPEC["sources"]]
    return SPEC | {"sources": sources}


def run_trajlake(parquet: Path, out: Path, spec_data: dict) -> dict:
    """Selection alone, then the real build (selection, read, render, write, manifest,
    report); then the two COPYs again on their own, for the write rate."""
    spec = MixtureSpec.model_validate(spec_data)
    con = duckdb.connect()
    con.execute(f"CREATE VIEW trajectories AS SELECT * FROM read_parquet('{parquet}')")
    start = time.perf_counter()
    chosen = con.execute(f"SELECT count(*) FROM ({selection_sql(spec)})").fetchone()[0]
    selection_s = time.perf_counter() - start
    start = time.perf_counter()
    directory, manifest = write_mixture(con, spec, out, {}, force=True)
    build_s = time.perf_counter() - start
    written = sum((directory / f).stat().st_size for f in ("data.parquet", "data.jsonl"))
    start = time.perf_counter()
    con.execute(f"COPY mixture TO '{out}/again.parquet' (FORMAT parquet, COMPRESSION zstd)")
    con.execute(f"COPY mixture TO '{out}/again.jsonl' (FORMAT json)")
    write_s = time.perf_counter() - start
    kept = f"SELECT sample_id, kept_messages FROM read_parquet('{directory}/data.parquet')"
    return {
        "chosen": chosen,
        "kept": dict(con.execute(kept).fetchall()),
        "rows": manifest["samples"],
        "selection_s": selection_s,
        "build_s": build_s,
        "write_s": write_s,
        "mb": written / 1e6,
    }


def matches(row: dict, source: dict) -> bool:
    return (
        row["rollout"] == source["rollout"]
        and row["patch_lines"] <= source["max_patch_lines"]
        and row["recall"] >= source.get("min_recall", 0)
        and row["tool_tokens_max"] <= source.get("max_tool_tokens", 1 << 30)
    )


def run_straightforward(jsonl: Path, out: Path, spec: dict) -> dict:
    """Read every row, keep the matching ones, sort, take the quotas, render, write."""
    start = time.perf_counter()
    seed = spec["seed"]
    target_repos, ratio = set(spec["specialization"]["repos"]), spec["specialization"]["ratio"]
    pools: dict[tuple[str, bool], list[dict]] = {}
    seen: set[tuple[str, str, str]] = set()
    with jsonl.open() as f:
        for line in f:
            row = json.loads(line)
            ratio_at = row["truncation_ratios"][row["budgets"].index(spec["context_budget"])]
            source = next((s for s in spec["sources"] if matches(row, s)), None)
            if source is None or ratio_at <= 0:
                continue
            row["ratio"] = ratio_at
            key = (source["name"], row["repo"] in target_repos)
            pools.setdefault(key, []).append(row)
    chosen = []
    for source in spec["sources"]:
        for target in (True, False):
            want = (
                round(source["count"] * ratio)
                if target
                else source["count"] - round(source["count"] * ratio)
            )
            pool = pools.get((source["name"], target), [])
            pool.sort(
                key=lambda r: (
                    -r["ratio"],
                    hashlib.md5(f"{seed}:{r['rollout_id']}".encode()).hexdigest(),
                )
            )
            taken = []
            for row in pool:
                dedup = (row["repo"], row["rollout"], row["patch_hash"])
                if dedup not in seen and len(taken) < want:
                    seen.add(dedup)
                    taken.append(row)
            chosen.extend(taken)
    out.mkdir(parents=True, exist_ok=True)
    kept_by_id = {}
    with (out / "data.jsonl").open("w") as f:
        for row in sorted(chosen, key=lambda r: -r["ratio"]):
            messages = json.loads(row.pop("messages_json"))
            kept = int(row["ratio"] * len(messages) + 0.5)  # SQL's round: .5 away from zero
            row["messages"] = [m | {"train": m["role"] == "assistant"} for m in messages[:kept]]
            kept_by_id[row["rollout_id"]] = kept
            f.write(json.dumps(row) + "\n")
    return {
        "rows": len(chosen),
        "kept": kept_by_id,
        "build_s": time.perf_counter() - start,
        "mb": (out / "data.jsonl").stat().st_size / 1e6,
    }


def disagreement(ours: dict[str, int], plain: dict[str, int]) -> str | None:
    """How the two builds' rows (sample id -> messages kept) differ, or None."""
    if ours == plain:
        return None
    only_ours, only_plain = ours.keys() - plain.keys(), plain.keys() - ours.keys()
    cut = {k for k in ours.keys() & plain.keys() if ours[k] != plain[k]}
    return (
        f"the two builds disagree: {len(only_ours)} rows chosen only by trajlake, "
        f"{len(only_plain)} only by the straightforward way, {len(cut)} cut to other lengths "
        f"(e.g. {sorted(only_ours | only_plain | cut)[:3]})"
    )


def missed_goals(ours: dict, plain: dict) -> list[str]:
    export, speedup = ours["mb"] / ours["build_s"], plain["build_s"] / ours["build_s"]
    goals = [
        (ours["selection_s"] < 1, f"selection {ours['selection_s']:.3f} s (goal < 1 s)"),
        (export >= 150, f"export {export:.0f} MB/s whole build (goal >= 150)"),
        (speedup >= 10, f"speed-up {speedup:.1f}x (goal >= 10x)"),
    ]
    return [text for met, text in goals if not met]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--data", type=Path, default=Path("bench-data/mixture"))
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    parser.add_argument(
        "--no-goals", action="store_true", help="print the goals, but do not exit 1 on a miss"
    )
    args = parser.parse_args()
    spec = scaled(args.rows)
    start = time.perf_counter()
    parquet, jsonl = generate(args.data, args.rows)
    print(
        f"data: {args.rows:,} rows · parquet {parquet.stat().st_size / 1e9:.2f} GB · "
        f"jsonl {jsonl.stat().st_size / 1e9:.2f} GB ({time.perf_counter() - start:.0f} s)"
    )
    ours = run_trajlake(parquet, args.data / "out-trajlake", spec)
    print(
        f"trajlake        selection {ours['selection_s']:.3f} s ({ours['chosen']:,} rows) · "
        f"whole build {ours['build_s']:.2f} s · wrote {ours['mb']:.0f} MB "
        f"(writing alone {ours['write_s']:.2f} s)"
    )
    plain = run_straightforward(jsonl, args.data / "out-plain", spec)
    print(
        f"straightforward build {plain['build_s']:.2f} s ({plain['rows']:,} rows) · "
        f"wrote {plain['mb']:.0f} MB"
    )
    print(
        f"selection {ours['selection_s']:.3f} s (goal < 1 s) · export "
        f"{ours['mb'] / ours['build_s']:.0f} MB/s whole build, "
        f"{ours['mb'] / ours['write_s']:.0f} MB/s writing alone (goal >= 150) · "
        f"speed-up {plain['build_s'] / ours['build_s']:.1f}x (goal >= 10x)"
    )
    if not args.keep:
        shutil.rmtree(args.data)
    sys.exit(verdict(ours, plain, check_goals=not args.no_goals))


def verdict(ours: dict, plain: dict, check_goals: bool) -> str | None:
    """Prints whether both builds chose the same rows and the goals missed; returns what to
    exit with: None, or why the run failed."""
    different = disagreement(ours["kept"], plain["kept"])
    missed = missed_goals(ours, plain)
    print(f"same rows both ways: {'no' if different else 'yes'} ({len(ours['kept']):,} rows)")
    print(f"goals missed: {'; '.join(missed)}" if missed else "goals: all met")
    problems = [different] if different else []
    problems += [f"goal missed: {m}" for m in missed] if check_goals else []
    return "\n".join(problems) or None


if __name__ == "__main__":
    main()
