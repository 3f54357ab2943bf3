"""Lake at SERA scale: 200,000 rollouts from 121 repositories, before and after compaction.

Run as:
    python bench/lake_scale.py                             # 200,000 rollouts, 121 repos
    python bench/lake_scale.py --rollouts 3000 --repos 12  # a quick look (~1 min)

The lake (tasks, T1 and T2 rollouts, PRs, verdicts, samples) is written through `Lake.write`
the way the stage runner writes it (bench/lake_scale_data.py) and cached under --workdir, so
only the first run generates it; every run works on a hard-linked copy, so compaction never
touches the cache. Each command runs as a user runs it, in a fresh process, on an embedded bus
with every topic created:

  status   `trajlake status` (stage lags + rows per table)                 goal <= 2 s
  count    `trajlake sql "SELECT count(*) FROM trajectories"`              goal <= 5 s
  mixture  `trajlake mixture build` of 25,000 samples (bench/mixture.py's   goal <= 60 s
           spec, its target repositories the 5 largest; scaled down with --rollouts)
  compact  `trajlake lake compact`

first on the lake as written, then after compaction; the two mixtures must be byte-identical.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from lake_scale_data import generate
from lake_scale_events import Plan
from mixture import SPEC

from trajlake.config import BusConfig, RunnerConfig


class Timing(NamedTuple):
    wall: float
    cpu: float


GOALS = {"status": 2.0, "counts": 2.0, "count": 5.0, "mixture": 60.0}
FULL_ROLLOUTS, FULL_SAMPLES = 200_000, 25_000


def cached_lake(args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    """The generated lake for these arguments, generating it when it is not cached yet."""
    key = (
        f"rollouts{args.rollouts}-repos{args.repos}-days{args.days}"
        f"-p{args.partitions}-b{args.batch_size}"
    )
    data = args.workdir / key
    marker = data / "generated.json"
    if not marker.exists():
        print(f"generating {data}/lake (once; later runs reuse it):")
        shutil.rmtree(data / "lake.tmp", ignore_errors=True)
        start = time.perf_counter()
        files = generate(
            data / "lake.tmp", args.rollouts, args.repos, args.partitions, args.batch_size,
            args.days,
        )  # fmt: skip
        (data / "lake.tmp").rename(data / "lake")
        seconds = round(time.perf_counter() - start)
        marker.write_text(json.dumps({"files": files, "seconds": seconds}, indent=2) + "\n")
    return data / "lake", json.loads(marker.read_text())


def fresh_run(lake: Path, run: Path, samples: int, top_repos: list[str]) -> Path:
    """A hard-linked copy of the lake, a config on an embedded bus, topics, and the spec."""
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(lake, run / "lake", copy_function=os.link)
    config = run / "trajlake.yaml"
    settings = {
        "bus": {"kind": "embedded", "path": str(run / "bus.db")},
        "lake": {"root": str(run / "lake"), "mixtures": str(run / "mixtures")},
    }
    config.write_text(yaml.safe_dump(settings))
    trajlake(config, "topics", "create")
    spec = json.loads(json.dumps(SPEC)) | {"name": "scale"}
    spec["specialization"]["repos"] = top_repos
    for source in spec["sources"]:
        source["count"] = round(source["count"] * samples / FULL_SAMPLES)
    (run / "spec.yaml").write_text(yaml.safe_dump(spec))
    return config


def trajlake(config: Path, *args: str) -> tuple[Timing, str]:
    """Run `trajlake --config CONFIG ARGS…`: its wall and CPU seconds (the CPU time of both
    cores together, which the other users of a shared machine disturb less), and stdout."""
    command = [sys.executable, "-m", "trajlake.cli", "--config", str(config), *args]
    start, cpu = time.perf_counter(), _children_cpu()
    done = subprocess.run(command, capture_output=True, text=True)
    timing = Timing(time.perf_counter() - start, _children_cpu() - cpu)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return timing, done.stdout


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


#: The lake part of `trajlake status`, timed inside a fresh process.
COUNTS = """
import json, resource, sys, time
from trajlake.lake import Lake
start, usage = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
Lake(sys.argv[1]).counts()
end = resource.getrusage(resource.RUSAGE_SELF)
cpu = end.ru_utime + end.ru_stime - usage.ru_utime - usage.ru_stime
print("COUNTS", json.dumps([time.perf_counter() - start, cpu]))
"""


def measure(config: Path, label: str) -> dict[str, Any]:
    """The user commands, once each, each printed when done (a full run takes an hour);
    the mixture is kept under mixtures/<label>."""
    run = config.parent
    lake = str(run / "lake")
    counts = subprocess.run(
        [sys.executable, "-c", COUNTS, lake], capture_output=True, text=True, check=True
    )
    out: dict[str, Any] = {"counts": Timing(*json.loads(counts.stdout.split("COUNTS ")[-1]))}
    commands = {
        "status": ["status"],
        "count": ["sql", "SELECT count(*) AS n FROM trajectories", "--format", "csv"],
        "mixture": ["mixture", "build", str(run / "spec.yaml"), "--force"],
    }
    print(f"  {label}: counts() {out['counts'].wall:.1f} s", flush=True)
    for key, args in commands.items():
        out[key], out[f"{key}_out"] = trajlake(config, *args)
        print(f"  {label}: {key} {out[key].wall:.1f} s (cpu {out[key].cpu:.1f})", flush=True)
    (run / "mixtures" / "scale").rename(run / "mixtures" / label)
    manifest = json.loads((run / "mixtures" / label / "manifest.json").read_text())
    files = list((run / "lake").rglob("*.parquet"))
    return out | {
        "trajectories": int(out["count_out"].splitlines()[1]),
        "rows": table_rows(out["status_out"]),
        "samples": manifest["samples"],
        "files": len(files),
        "bytes": sum(p.stat().st_size for p in files),
    }


def table_rows(status: str) -> int:
    """Rows in all tables, from the `table  rows` part of `trajlake status`."""
    lines = status.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["table", "rows"])
    return sum(int(line.split()[1]) for line in lines[start + 1 :] if line.strip())


def report(lake: dict[str, Any], before: dict, after: dict, compact: Timing, same: bool) -> None:
    def cell(t: Timing) -> str:
        return f"{t.wall:>8.2f} s ({t.cpu:5.1f})"

    def row(name: str, key: str) -> str:
        goal, ok_before, ok_after = GOALS[key], before[key].wall, after[key].wall
        verdict = "met" if max(ok_before, ok_after) <= goal else (
            "met after compaction" if ok_after <= goal else "NOT MET")  # fmt: skip
        return f"{name:<28}{cell(before[key])}{cell(after[key])}   <= {goal:.0f} s: {verdict}"

    print(
        f"lake: {before['trajectories']:,} rollouts, {before['rows']:,} rows in all tables, "
        f"{before['bytes'] / 1e9:.1f} GB (generated in {lake['seconds']:,} s)"
    )
    print(f"{'wall (cpu) seconds':<28}{'as written':>19}{'compacted':>19}")
    print(f"{'files':<28}{before['files']:>19,}{after['files']:>19,}")
    print(row("trajlake status", "status"))
    print(row("  its lake part: counts()", "counts"))
    print(row("count(*) FROM trajectories", "count"))
    print(row(f"mixture build ({before['samples']:,})", "mixture"))
    print(f"{'trajlake lake compact':<28}{cell(compact)}")
    print(f"mixture data byte-identical before and after compaction: {'yes' if same else 'NO'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rollouts", type=int, default=FULL_ROLLOUTS, help="T1 + T2 rollouts")
    parser.add_argument("--repos", type=int, default=121)
    parser.add_argument("--days", type=int, default=10, help="days the pipeline ran")
    parser.add_argument("--partitions", type=int, default=BusConfig().partitions)
    parser.add_argument("--batch-size", type=int, default=RunnerConfig().batch_size)
    parser.add_argument("--workdir", type=Path, default=Path("bench-data/lake-scale"))
    args = parser.parse_args()
    lake, generated = cached_lake(args)
    samples = round(FULL_SAMPLES * args.rollouts / FULL_ROLLOUTS)
    top = Plan.make(1, args.repos).repos[:5]  # the repositories with the largest weights
    config = fresh_run(lake, lake.parent / "run", samples, top)
    before = measure(config, "before")
    compact, _ = trajlake(config, "lake", "compact")
    after = measure(config, "after")
    mixtures = config.parent / "mixtures"
    same = all(
        (mixtures / "before" / f).read_bytes() == (mixtures / "after" / f).read_bytes()
        for f in ("data.parquet", "data.jsonl")
    )
    report(generated, before, after, compact, same)


if __name__ == "__main__":
    main()
