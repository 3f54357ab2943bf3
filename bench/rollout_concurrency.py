"""Run as: python bench/rollout_concurrency.py [--latency 1.0] [--n 8 32 64] [--sandbox bubblewrap|local]

Teacher calls/s of the real rollout1 stage (`make_rollout1` under `StageRunner`, embedded bus,
Parquet lake, a sandbox per rollout) with N rollouts at once against the scripted teacher double
answering every call after L seconds; ideal is N / L calls/s, printed as achieved ÷ ideal.

Each rollout makes 3 teacher calls: the agent appends one comment line to the task's file
(`echo >>`: a patch, so the self-evaluation runs), submits, then the self-evaluation. M = rounds·N
tasks (real TaskEvents on the sample repository of `trajlake demo`) are pre-loaded on the bus;
the window holds 2N records so the N threads never wait for work. Timed: from the first rollout
starting to every input committed; building the stage (its lake reads), the consumer's start
and first poll are not counted. Calls are counted by the double (`stats()`), which runs in this
process. `rollout s` is the mean time of one `process` call, `overhead` what is left after 3·L
of teacher latency (checkout, sandbox commands, diff, clean-up, client work, waiting for the
CPU); `CPU ms/rollout` is this process + its child processes over the timed window, and `busy`
the whole machine's CPU use then (other jobs included): rollouts that start together do their
CPU work together, so a small machine queues it even when `busy` is well under 100%.
Goal (issue): ratio ≥ 0.9 at N = 64. `--sandbox local` runs commands unsandboxed, to separate
bubblewrap's cost.
"""  # noqa: E501 - the Run as: line is one command

from __future__ import annotations

import ast
import dataclasses
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from argparse import ArgumentParser, Namespace
from pathlib import Path

from trajlake.bus import open_bus
from trajlake.config import Config, load_config
from trajlake.consumers.rollout import make_rollout1
from trajlake.demo import build_sample_repo
from trajlake.lake import Lake
from trajlake.runner import RETRY_TOPIC, RunStats, StageRunner
from trajlake.schemas import Event, TaskEvent, make_event_id
from trajlake.teacher.double import DoubleServer, serve

CALLS_PER_ROLLOUT = 3
TEACHER_SCRIPT = r"""
model: teacher
sessions:
  - name: self_eval
    match: "(?i)aligned with the request"
    match_on: last_user
    turns: [{content: "yes - one line added to the named function's file."}]
  - name: agent
    match: '`(?P<function>\w+)` in `(?P<path>[^`]+\.py)`'
    turns:
      - tool_calls: [{name: bash, arguments: {command: "echo '# {{function}}' >> '{{path}}'"}}]
      - tool_calls: [{name: bash, arguments: {command: echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT}}]
"""


@dataclasses.dataclass
class Result:
    n: int
    rollouts: int
    calls: int
    latency_s: float
    rollout_s: float  # mean time of one `process` call
    used: list[float]  # over the timed window: seconds, CPU s of this process, of its children,
    # then busy and total CPU time of the whole machine (/proc/stat ticks)

    @property
    def rate(self) -> float:
        return self.calls / self.used[0]

    @property
    def ratio(self) -> float:
        return self.rate / (self.n / self.latency_s)

    @property
    def cpu_per_rollout(self) -> tuple[float, float]:
        return self.used[1] / self.rollouts, self.used[2] / self.rollouts


def snapshot() -> list[float]:
    """Wall clock, CPU of this process and of its reaped children, machine busy and total ticks."""
    me, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    ticks = [int(t) for t in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    cpu = [me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime]
    return [time.perf_counter(), *cpu, sum(ticks) - idle, sum(ticks)]


def sample_tasks(repo: Path, m: int) -> list[TaskEvent]:
    """M tasks over the functions at the sample repository's HEAD (distinct seeds, distinct ids)."""
    git = ["git", "-C", str(repo), "rev-parse", "HEAD"]
    commit = subprocess.run(git, capture_output=True, text=True, check=True).stdout.strip()
    functions = [
        (str(path.relative_to(repo)), node)
        for path in sorted(repo.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef)
    ]
    parent = make_event_id("bench", repo, commit)
    tasks = []
    for i in range(m):
        file, fn = functions[i % len(functions)]
        tasks.append(
            TaskEvent(
                event_id=make_event_id(parent, "function_sampler", file, fn.name, 1, i),
                parent_ids=[parent],
                stage="function_sampler",
                repo="sample-repo",
                repo_url=str(repo),
                commit=commit,
                function_file=file,
                function_name=fn.name,
                line_start=fn.lineno,
                line_end=fn.end_lineno or fn.lineno,
                change_type="documentation",
                request=f"The function `{fn.name}` in `{file}` needs a short note for readers.",
                seed=i,
            )
        )
    return tasks


def bench_config(workdir: Path, url: str, n: int, args: Namespace) -> Config:
    """Defaults plus the bench's paths and knobs (an empty file: no ./trajlake.yaml is read)."""
    (workdir / "trajlake.yaml").write_text("")
    overrides = [
        f"bus.path={workdir / 'bus.db'}",
        f"lake.root={workdir / 'lake'}",
        f"agent.trajectories={workdir / 'trajectories'}",
        f"teacher.base_url={url}",
        "teacher.endpoint_kind=double",
        f"runner.concurrency={n}",
        f"runner.batch_size={2 * n}",
        "runner.poll_timeout_s=0.1",
        f"sandbox.kind={args.sandbox}",
        f"sandbox.allow_unsafe_local={args.sandbox == 'local'}",
    ]
    return load_config(workdir / "trajlake.yaml", overrides)


def run_one(n: int, repo: Path, double: DoubleServer, args: Namespace) -> Result:
    """Pre-load rounds·N tasks, then time rollout1 with N at once until every input is committed."""
    workdir = Path(tempfile.mkdtemp(prefix=f"n{n}-", dir=args.workdir))
    config = bench_config(workdir, double.url, n, args)
    tasks = sample_tasks(repo, args.rounds * n)
    bus = open_bus(config.bus)
    try:
        bus.create_topics(
            ["tasks", "replay", "rollouts.t1", "dlq", RETRY_TOPIC], config.bus.partitions
        )
        producer = bus.producer()
        for task in tasks:
            producer.send("tasks", task.encode(), task.partition_key())
        producer.close()
        stage = make_rollout1(config)
        marks: list[list[float]] = []  # snapshots at the first rollout's start and at the end
        durations: list[float] = []
        lock = threading.Lock()

        def timed(event: Event) -> list[Event]:
            with lock:
                marks[:] = marks or [snapshot()]
            start = time.perf_counter()
            outputs = stage.process(event)
            with lock:
                durations.append(time.perf_counter() - start)
            return outputs

        timed_stage = dataclasses.replace(stage, process=timed)
        runner = StageRunner(timed_stage, bus, Lake(config.lake.root), config.runner)

        def on_progress(stats: RunStats) -> None:  # after each commit
            if stats.produced >= len(tasks) and len(marks) == 1:
                marks.append(snapshot())
                runner.stop()

        calls_before = sum(double.stats().values())
        stats = runner.run(idle_timeout_s=60, on_progress=on_progress)
        calls = sum(double.stats().values()) - calls_before
        committed = sum(bus.committed("rollout1", ["tasks"]).values())
    finally:
        bus.close()
    check(config, stats, committed, len(tasks), calls, double)
    used = [end - begin for end, begin in zip(marks[1], marks[0], strict=True)]
    return Result(n, len(tasks), calls, args.latency, statistics.mean(durations), used)


def check(
    config: Config, stats: RunStats, committed: int, m: int, calls: int, double: DoubleServer
) -> None:
    """Stop the bench unless every task became one submitted, self-evaluated rollout."""
    con = Lake(config.lake.root).connect()
    good = con.execute(
        "SELECT count(*) FROM rollouts_t1 WHERE exit_status = 'Submitted' AND self_eval = 'yes'"
    ).fetchone()[0]
    con.close()
    unmatched = double.stats().get("<unmatched>", 0)
    if stats.dead_letters or committed != m or good != m or unmatched or double.errors:
        sys.exit(
            f"the run did not finish cleanly: {stats}, committed {committed} of {m}, "
            f"{good} submitted and self-evaluated, {unmatched} unmatched calls, {double.errors}"
        )
    if calls != m * CALLS_PER_ROLLOUT:
        sys.exit(f"{calls} teacher calls for {m} rollouts: expected {CALLS_PER_ROLLOUT} each")


def report(results: list[Result], args: Namespace) -> None:
    print(
        f"\nrollout1, {args.sandbox} sandbox, teacher latency L = {args.latency:g} s, "
        f"{CALLS_PER_ROLLOUT} calls per rollout, {args.rounds}·N rollouts per N, "
        f"{os.cpu_count()} CPUs"
    )
    print("counted: first rollout started -> every input committed (start-up not counted)")
    header = f"{'N':>4}{'rollouts':>9}{'calls':>6}{'seconds':>8}{'calls/s':>8}{'ideal N/L':>10}"
    print(
        f"{header}{'ratio':>6}{'rollout s':>10}{'overhead s':>11}{'CPU ms/rollout':>15}{'busy':>6}"
    )
    for r in results:
        overhead = r.rollout_s - CALLS_PER_ROLLOUT * r.latency_s
        cpu = " + ".join(f"{1000 * c:.0f}" for c in r.cpu_per_rollout)
        print(
            f"{r.n:>4}{r.rollouts:>9}{r.calls:>6}{r.used[0]:>8.2f}{r.rate:>8.2f}"
            f"{r.n / r.latency_s:>10.2f}{r.ratio:>6.2f}{r.rollout_s:>10.2f}{overhead:>11.2f}"
            f"{cpu:>15}{r.used[3] / r.used[4]:>6.0%}"
        )
    print("CPU ms/rollout: this process (runner, agent, teacher client, double) + child processes")
    print("(git, bwrap, commands); busy: the whole machine's CPU in use, other jobs included")
    for r in (r for r in results if r.n == 64):
        verdict = "ok" if r.ratio >= 0.9 else "MISSED"
        print(f"\ngoal ≥ 0.9 at N=64: {r.ratio:.2f}   {verdict}")
        cap = CALLS_PER_ROLLOUT * (os.cpu_count() or 1) / sum(r.cpu_per_rollout)
        print(f"this machine's CPUs, at that CPU per rollout, allow at most {cap:.0f} calls/s")


def main() -> None:
    parser = ArgumentParser(description="rollout1 teacher calls/s vs the ideal N / L")
    parser.add_argument("--n", type=int, nargs="+", default=[8, 32, 64], help="rollouts at once")
    parser.add_argument("--latency", type=float, default=1.0, help="seconds per teacher call")
    parser.add_argument("--rounds", type=int, default=4, help="tasks per run = rounds·N")
    parser.add_argument("--sandbox", choices=["bubblewrap", "local"], default="bubblewrap")
    parser.add_argument("--quick", action="store_true", help="N = 8, 2 rounds: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.n, args.rounds = [8], 2
    with tempfile.TemporaryDirectory(prefix="trajlake-bench-") as workdir:
        args.workdir = workdir
        repo = build_sample_repo(Path(workdir) / "sample-repo")
        script = Path(workdir) / "teacher.yaml"
        script.write_text(TEACHER_SCRIPT)
        with serve(script, latency_s=args.latency) as double:
            results = [run_one(n, repo, double, args) for n in args.n]
    report(results, args)


if __name__ == "__main__":
    main()
