"""Run as: python bench/rollout_concurrency.py [--latency 1.0] [--n 8 32 64] [--sandbox bubblewrap|local]

Teacher calls/s of the real rollout1 stage (`make_rollout1` under `StageRunner`, embedded bus,
Parquet lake, a sandbox per rollout) with N rollouts at once against the scripted teacher double
answering every call after L seconds; ideal is N / L calls/s, printed as achieved ÷ ideal.

Each rollout makes 3 teacher calls: the agent appends one comment line to the task's file
(`echo >>`: a patch, so the self-evaluation runs), submits, then the self-evaluation. M = rounds·N
tasks (real TaskEvents on the sample repository of `trajlake demo`) are pre-loaded on the bus;
the window holds 2N records so the N threads never wait for work. Timed: from the first rollout
starting to every input committed; building the stage (its lake reads), the consumer's start
and first poll are not counted. Calls are counted by the double (`stats()`). `rollout s` is the
mean time of one `process` call, `overhead` what is left after 3·L of teacher latency (checkout,
sandbox commands, diff, trajectory files, waiting for the CPU). Goal (issue): ratio ≥ 0.9 at
N = 64. `--sandbox local` runs commands unsandboxed, to separate bubblewrap's cost.
"""  # noqa: E501 - the Run as: line is one command

from __future__ import annotations

import ast
import dataclasses
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
from trajlake.runner import RunStats, StageRunner
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
    seconds: float
    rollout_s: float
    latency_s: float

    @property
    def rate(self) -> float:
        return self.calls / self.seconds

    @property
    def ratio(self) -> float:
        return self.rate / (self.n / self.latency_s)


def sample_tasks(repo: Path, m: int) -> list[TaskEvent]:
    """M tasks over the functions at the sample repository's HEAD (distinct seeds, distinct ids)."""
    commit = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    functions = [
        (str(path.relative_to(repo)), node)
        for path in sorted(repo.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef)
    ]
    tasks = []
    for i in range(m):
        file, fn = functions[i % len(functions)]
        parent = make_event_id("bench", repo, commit)
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
    return load_config(
        None,
        [
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
        ],
    )


def run_one(n: int, repo: Path, double: DoubleServer, args: Namespace) -> Result:
    """Pre-load rounds·N tasks, then time rollout1 with N at once until every input is committed."""
    workdir = Path(tempfile.mkdtemp(prefix=f"n{n}-", dir=args.workdir))
    config = bench_config(workdir, double.url, n, args)
    tasks = sample_tasks(repo, args.rounds * n)
    bus = open_bus(config.bus)
    try:
        bus.create_topics(["tasks", "rollouts.t1", "dlq"], config.bus.partitions)
        producer = bus.producer()
        for task in tasks:
            producer.send("tasks", task.encode(), task.partition_key())
        producer.close()
        stage = make_rollout1(config)
        starts: list[float] = []
        durations: list[float] = []
        lock = threading.Lock()

        def timed(event: Event) -> list[Event]:
            start = time.perf_counter()
            with lock:
                starts.append(start)
            outputs = stage.process(event)
            with lock:
                durations.append(time.perf_counter() - start)
            return outputs

        runner = StageRunner(
            dataclasses.replace(stage, process=timed), bus, Lake(config.lake.root), config.runner
        )
        done: list[float] = []

        def on_progress(stats: RunStats) -> None:  # after each commit
            if stats.produced >= len(tasks) and not done:
                done.append(time.perf_counter())
                runner.stop()

        calls_before = sum(double.stats().values())
        stats = runner.run(idle_timeout_s=60, on_progress=on_progress)
        calls = sum(double.stats().values()) - calls_before
        committed = sum(bus.committed("rollout1", ["tasks"]).values())
    finally:
        bus.close()
    check(config, stats, committed, len(tasks), calls, double)
    return Result(
        n, len(tasks), calls, done[0] - min(starts), statistics.mean(durations), args.latency
    )


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
        f"{CALLS_PER_ROLLOUT} calls per rollout, {args.rounds}·N rollouts per N"
    )
    print("counted: first rollout started -> every input committed (start-up not counted)")
    header = f"{'N':>4}{'rollouts':>10}{'calls':>7}{'seconds':>9}{'calls/s':>9}{'ideal N/L':>11}"
    print(f"{header}{'ratio':>7}{'rollout s':>11}{'overhead s':>12}")
    for r in results:
        overhead = r.rollout_s - CALLS_PER_ROLLOUT * r.latency_s
        print(
            f"{r.n:>4}{r.rollouts:>10}{r.calls:>7}{r.seconds:>9.2f}{r.rate:>9.2f}"
            f"{r.n / r.latency_s:>11.2f}{r.ratio:>7.2f}{r.rollout_s:>11.2f}{overhead:>12.2f}"
        )
    at_64 = [r for r in results if r.n == 64]
    if at_64:
        verdict = "ok" if at_64[0].ratio >= 0.9 else "MISSED"
        print(f"\ngoal ≥ 0.9 at N=64: {at_64[0].ratio:.2f}   {verdict}")


def main() -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[2])
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
