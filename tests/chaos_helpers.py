"""The whole-pipeline chaos test's parts: a repository with enough functions for a few minutes
of work, the config (the demo's, with this test's paths and bus), and `Fleet`, which runs the
six stages as their own processes and SIGKILLs working ones at random moments."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from trajlake.bus import Bus, open_bus
from trajlake.config import BusConfig, Config
from trajlake.demo import _git, demo_config
from trajlake.producers.commits import watch
from trajlake.repos import Registry
from trajlake.schemas import TOPICS, table_name
from trajlake.stages import BUILTIN, load_stage

REPO_NAME = "chaos-repo"
#: half of the names start with a-m (the demo script's T2 then reproduces half the patch)
VERBS = ("adjust", "balance", "clamp", "merge", "normalize", "pack", "rank", "scale", "tally")
TICK_S = 0.1
QUIET_TICKS = 10  # every lag zero this many ticks in a row: the pipeline is done
TARGET_WAIT_S = 1.5  # a due kill waits this long for one of the least killed stages to work
KILL_SHARE = 0.3  # the kills are spread over this share of the work


def build_repo(path: Path, commits: int, per_commit: int) -> Path:
    """`commits` commits, each adding a module of `per_commit` non-trivial functions; fixed
    authors and dates, so the commit shas are the same every time."""
    git = _git(path)
    path.mkdir(parents=True)
    git("init", "-q", "-b", "main")
    for c in range(commits):
        module = path / "pkg" / f"part{c}.py"
        module.parent.mkdir(exist_ok=True)
        module.write_text("\n\n".join(_function(c, i) for i in range(per_commit)))
        git("add", "-A")
        git("commit", "-q", "-m", f"Add part {c}", date=f"2026-02-{c + 1:02d}T12:00:00+00:00")
    return path


def _function(commit: int, index: int) -> str:
    name = f"{VERBS[(commit + index) % len(VERBS)]}_{commit}_{index}"
    return (
        f"def {name}(values, limit={index}):\n"
        f'    """Sum of the values above `limit`, weighted by {index + 1}."""\n'
        "    total = 0\n"
        "    for value in values:\n"
        "        if value > limit:\n"
        f"            total += value * {index + 1}\n"
        "    return total\n"
    )


def chaos_config(workdir: Path, bus: BusConfig, teacher_url: str, tokenizer: Path) -> Config:
    """The demo's config with its paths under `workdir`, on `bus`, with a shared tokenizer
    (its id, part of every sample id, is its directory name and file hash)."""
    overrides = [f"filter.tokenizer={tokenizer}", "runner.concurrency=4"]
    config = demo_config(workdir, teacher_url, overrides)
    if bus.kind == "embedded":
        bus = bus.model_copy(update={"path": config.bus.path})
    return config.model_copy(update={"bus": bus})


def emit_commits(config: Config, repo: Path, backfill: int) -> None:
    """Register `repo`, create every topic and publish its last `backfill` commits."""
    Registry(config.producer.registry, config.producer.mirrors).add(
        str(repo), branch="main", name=REPO_NAME, backfill=backfill
    )
    bus = open_bus(config.bus)
    try:
        bus.create_topics(list(TOPICS), config.bus.partitions)
    finally:
        bus.close()
    watch(config, once=True)


def raw_ids(lake_root: str) -> dict[str, list[str]]:
    """Per table, the event id of every row in every committed file (duplicates kept)."""
    tables: dict[str, list[str]] = {}
    for topic in TOPICS:
        table = table_name(topic)
        if not list((Path(lake_root) / table).rglob("*.parquet")):
            tables[table] = []
            continue
        glob = str(Path(lake_root) / table / "**" / "*.parquet")
        rows = duckdb.execute("SELECT event_id FROM read_parquet(?)", [glob]).fetchall()
        tables[table] = [r[0] for r in rows]
    return tables


def duplicates(ids: list[str]) -> dict[str, int]:
    return {i: n for i, n in Counter(ids).items() if n > 1}


@dataclass
class Worker:
    name: str
    proc: subprocess.Popen
    log: Path
    committed_at_start: int


@dataclass
class Fleet:
    """Every built-in stage as its own `trajlake stage NAME` process, restarted when killed."""

    config: Config
    config_file: Path
    logs: Path
    rng: random.Random
    kills: Counter = field(default_factory=Counter)
    starts: Counter = field(default_factory=Counter)
    workers: dict[str, Worker] = field(default_factory=dict)
    timeline: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.bus: Bus = open_bus(self.config.bus)
        self.inputs = {n: load_stage(n, self.config).inputs for n in BUILTIN}
        self.t0 = time.monotonic()

    def records(self, tables: dict[str, list[str]]) -> int:
        """Input records of all stages when each table holds the event ids `tables` gives."""
        return sum(len(set(tables[table_name(t)])) for ins in self.inputs.values() for t in ins)

    def progress(self) -> dict[str, tuple[int, int]]:
        """Per stage: (input records its group has committed, records not yet committed).
        Upstream stages are read first: a stage publishes before it commits, so an upstream
        lag of zero covers everything it sent downstream."""
        out = {}
        for name, inputs in self.inputs.items():
            ends, done = self.bus.end_offsets(inputs), self.bus.committed(name, inputs)
            out[name] = (sum(done.values()), sum(n - done.get(tp, 0) for tp, n in ends.items()))
        return out

    def start(self, name: str) -> None:
        self.starts[name] += 1
        log = self.logs / f"{name}-{self.starts[name]}.log"
        command = [sys.executable, "-m", "trajlake.cli", "--config", str(self.config_file)]
        with log.open("wb") as out:
            proc = subprocess.Popen([*command, "stage", name], stdout=out, stderr=subprocess.STDOUT)
        self.workers[name] = Worker(name, proc, log, self.progress()[name][0])

    def check_alive(self) -> None:
        for w in self.workers.values():
            if w.proc.poll() is not None:
                raise AssertionError(
                    f"{w.name} exited by itself ({w.proc.returncode}):\n{tail(w.log)}"
                )

    def working(self, progress: dict[str, tuple[int, int]]) -> list[str]:
        """Stages whose process has input left and is working: it has committed records since
        it started (so the pipeline moves on between two kills of one stage)."""
        return [
            n
            for n, w in self.workers.items()
            if progress[n][1] and progress[n][0] > w.committed_at_start
        ]

    def kill(self, name: str, progress: dict[str, tuple[int, int]]) -> None:
        done = sum(committed for committed, _ in progress.values())
        lags = {n: lag for n, (_, lag) in progress.items() if lag}
        self.timeline.append(f"{time.monotonic() - self.t0:.1f}s {name}, {done} done, lags {lags}")
        self.workers[name].proc.send_signal(signal.SIGKILL)
        self.workers.pop(name).proc.wait()
        self.kills[name] += 1

    def run(self, kills: int, records: int, timeout_s: float) -> None:
        """Start every stage, SIGKILL `kills` working processes spread over the first
        `KILL_SHARE` of the work (`records`: what all stages take in, undisturbed), each
        restarted after a random pause of up to a second; then wait until every lag stays zero.

        Kills are paced by records committed, not by time, so that they land mid-work on a
        slow machine and a fast one alike. A due kill goes to a working one of the least
        killed stages (quick ones work only now and then); after `TARGET_WAIT_S` without
        one, to any working stage."""
        spacing = records * KILL_SHARE / kills
        self.t0 = time.monotonic()
        for name in BUILTIN:
            self.start(name)
        restarts: dict[str, float] = {}  # stage -> when to start it again
        next_kill, due_since = self.rng.uniform(0.5, 1.5) * spacing, None
        quiet = 0
        while quiet < QUIET_TICKS or restarts:
            now = time.monotonic()
            assert now < self.t0 + timeout_s, f"not done after {timeout_s}s: {self.progress()}"
            time.sleep(TICK_S)
            for name in [n for n, at in restarts.items() if at <= now]:
                self.start(name)
                del restarts[name]
            self.check_alive()
            progress = self.progress()
            quiet = 0 if any(lag for _, lag in progress.values()) else quiet + 1
            done = sum(committed for committed, _ in progress.values())
            if quiet or sum(self.kills.values()) >= kills or done < next_kill:
                continue  # (when the work runs out first, the caller sees too few kills)
            due_since = due_since or now
            victim = self._victim(progress, restarts, overdue=now > due_since + TARGET_WAIT_S)
            if victim:
                self.kill(victim, progress)
                restarts[victim] = time.monotonic() + self.rng.uniform(0, 1)
                next_kill, due_since = done + self.rng.uniform(0.5, 1.5) * spacing, None

    def _victim(
        self, progress: dict[str, tuple[int, int]], restarts: dict[str, float], overdue: bool
    ) -> str | None:
        """A random working one of the least killed stages with work left or coming; when
        `overdue`, of any working stage."""
        open_ = [n for n in self._open(progress) if n not in restarts]
        fewest = min((self.kills[n] for n in open_), default=0)
        working = [n for n in self.working(progress) if n in open_]
        victims = [n for n in working if self.kills[n] == fewest] or (working if overdue else [])
        return self.rng.choice(victims) if victims else None

    @staticmethod
    def _open(progress: dict[str, tuple[int, int]]) -> list[str]:
        """Stages with input left or still to come (a stage before them has input left)."""
        lags = [lag for _, lag in progress.values()]
        return [n for i, n in enumerate(progress) if any(lags[: i + 1])]

    def stop(self) -> None:
        """SIGTERM every stage (each finishes and exits 0); fail on one that does not."""
        for w in self.workers.values():
            w.proc.send_signal(signal.SIGTERM)
        for w in self.workers.values():
            assert w.proc.wait(timeout=60) == 0, f"{w.name} on SIGTERM:\n{tail(w.log)}"

    def close(self) -> None:
        for w in self.workers.values():
            if w.proc.poll() is None:
                w.proc.kill()
                w.proc.wait()
        self.bus.close()


def tail(log: Path, chars: int = 3000) -> str:
    return log.read_text(errors="replace")[-chars:]
