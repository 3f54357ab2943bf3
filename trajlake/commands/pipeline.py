"""`trajlake demo`, `run`, `status` and `teacher-double`: the pipeline as a whole."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from tqdm import tqdm

from trajlake.config import Config

NEXT_STEPS = """\
The demo's configuration is {config}; pass it to every command:
  trajlake --config {config} status
Build a training mixture with SQL, then check it against the agent's format:
  trajlake --config {config} mixture build {spec}
  trajlake --config {config} mixture check demo
Queries to try:
"""


DOUBLE_HELP = """\
Serve a scripted, OpenAI-compatible teacher over HTTP (POST /v1/chat/completions,
GET /v1/models) until SIGTERM or Ctrl-C. It prints its base URL, the one line of output.
The script format is described in trajlake/teacher/double.py.

Run as:
  trajlake teacher-double --script FILE --port P
then point the pipeline at it:
  trajlake --set teacher.base_url=http://127.0.0.1:P/v1 run"""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser(
        "demo", help="run the whole pipeline on a generated repository (start here)"
    )
    demo.add_argument(
        "--workdir",
        type=Path,
        default=Path("trajlake-demo"),
        help="where the sample repository, lake, bus and logs go",
    )
    demo.set_defaults(func=cmd_demo, needs_config=False)

    run = sub.add_parser("run", help="emit new commits and run every stage until all is done")
    run.add_argument(
        "--follow",
        action="store_true",
        help="keep watching the repositories and processing, until SIGTERM",
    )
    run.set_defaults(func=cmd_run)

    status = sub.add_parser("status", help="each stage's lag, and the row count of each table")
    status.set_defaults(func=cmd_status)

    _add_double_parser(sub)


def _add_double_parser(sub: argparse._SubParsersAction) -> None:
    double = sub.add_parser(
        "teacher-double",
        help="serve the scripted OpenAI-compatible teacher (tests, demos, benchmarks)",
        description=DOUBLE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    double.add_argument(
        "--script",
        type=Path,
        metavar="FILE",
        help="YAML/JSON script (default: the demo's, trajlake/teacher/scripts/demo.yaml)",
    )
    double.add_argument("--host", default="127.0.0.1", help="address to listen on")
    double.add_argument(
        "--port", type=int, default=8000, metavar="P", help="port (default 8000; 0: any free one)"
    )
    double.add_argument(
        "--latency", type=float, default=0.0, metavar="S", help="seconds added to every answer"
    )
    double.set_defaults(func=cmd_teacher_double, needs_config=False)


class StageBars:
    """One progress bar per stage: records taken in, and what is still waiting."""

    def __init__(self) -> None:
        self.bars: dict[str, tqdm] = {}

    def __call__(self, statuses: list) -> None:
        for position, status in enumerate(statuses):
            bar = self.bars.get(status.name)
            if bar is None:
                bar = tqdm(desc=f"{status.name:>16}", unit=" rec", position=position, leave=True)
                self.bars[status.name] = bar
            done = status.stats.consumed if status.stats else 0
            bar.total = done + status.lag
            bar.update(done - bar.n)
            if status.stats:
                bar.set_postfix(out=status.stats.produced, dlq=status.stats.dead_letters)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def cmd_demo(args: argparse.Namespace, overrides: list[str]) -> int:
    import yaml

    from trajlake.demo import QUERIES, run_demo
    from trajlake.lake import run_sql

    bars = StageBars()
    try:
        result = run_demo(args.workdir, overrides, on_progress=bars)
    finally:
        bars.close()
    warn(result.notes)
    config_file = result.workdir / "trajlake.yaml"
    config_file.write_text(yaml.safe_dump(result.config.model_dump(mode="json"), sort_keys=False))
    print(f"\nThe lake is in {result.config.lake.root}; rows per table:")
    width = max(map(len, result.counts), default=0)
    for topic, count in result.counts.items():
        print(f"  {topic:<{width}} {count:>6}")
    root = result.config.lake.root
    print("\nRecall (verifier):")
    print(run_sql(root, QUERIES[0][1]), end="")
    print("\nTruncation ratio per context budget (filter):")
    print(
        run_sql(
            root,
            "SELECT budgets[i] AS budget, round(avg(truncation_ratios[i]), 3) AS mean,"
            " count(*) AS samples FROM samples, range(1, 4) r(i)"
            " WHERE i <= len(budgets) GROUP BY 1 ORDER BY 1",
        ),
        end="",
    )
    print("\n" + NEXT_STEPS.format(config=config_file, spec=result.workdir / "mixture.yaml"))
    for title, query in QUERIES:
        print(f'  -- {title}\n  trajlake --config {config_file} sql "{" ".join(query.split())}"\n')
    # the demo's records all work: a dead letter means something here does not
    return dead_letter_status(dead_letters(result.statuses), f"--config {config_file} ")


def dead_letters(statuses: list) -> int:
    """Dead letters the stages of a pipeline run added."""
    return sum(s.stats.dead_letters for s in statuses if s.stats)


def dead_letter_status(count: int, options: str = "") -> int:
    """A command's exit status after a run that added `count` dead letters (1 if any), saying
    what to do about them: the work they stand for is not done."""
    if not count:
        return 0
    print(
        f"error: {count} record(s) failed this run and became dead letters (the work is not "
        f"done); see why with\n  trajlake {options}dlq list\nand once the cause is fixed (a "
        f"server back, a package installed), run them again with\n  trajlake {options}dlq retry",
        file=sys.stderr,
    )
    return 1


def warn(notes: list[str]) -> None:
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)


def cmd_run(args: argparse.Namespace, config: Config) -> int:
    from trajlake import preflight
    from trajlake.bus import open_bus
    from trajlake.pipeline import run_pipeline, waiting_stages
    from trajlake.producers.commits import watch
    from trajlake.schemas import TOPICS
    from trajlake.stages import BUILTIN

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    bus = open_bus(config.bus, TOPICS)
    bars = StageBars()
    try:
        # before a commit is emitted or a record read; the student only if DAgger has work
        warn(preflight.check(config, BUILTIN, waiting_stages(bus, BUILTIN)))
        if args.follow:
            threading.Thread(
                target=watch, args=(config,), kwargs={"stop_event": stop}, daemon=True
            ).start()
            print(
                "following new commits; SIGTERM or Ctrl-C stops (in-flight work finishes)",
                file=sys.stderr,
                flush=True,
            )
        else:
            watch(config, once=True)
        statuses = run_pipeline(
            config, bus, until_idle=not args.follow, stop=stop, on_progress=bars
        )
    finally:
        bars.close()
        bus.close()
    cmd_status(args, config)
    left = sum(s.lag for s in statuses)
    if left and not args.follow:  # stopped by a signal before the work ran out
        print(
            f"error: stopped with {left} record(s) not done; `trajlake run` goes on",
            file=sys.stderr,
        )
        return max(1, dead_letter_status(dead_letters(statuses)))
    return dead_letter_status(dead_letters(statuses))


def cmd_status(args: argparse.Namespace, config: Config) -> int:
    from trajlake.bus import open_bus
    from trajlake.lake import Lake
    from trajlake.pipeline import stage_lags
    from trajlake.runner import RETRY_TOPIC
    from trajlake.schemas import table_name
    from trajlake.stages import BUILTIN_INPUTS

    bus = open_bus(config.bus)
    try:
        known = bus.list_topics()
        retry = (RETRY_TOPIC,) if RETRY_TOPIC in known else ()
        stages = {name: (*inputs, *retry) for name, inputs in BUILTIN_INPUTS.items()}
        stages = {n: i for n, i in stages.items() if all(t in known for t in i)}
        print(f"{'stage':<18}{'lag':>8}   inputs")
        for status in stage_lags(bus, stages):
            print(f"{status.name:<18}{status.lag:>8}   {', '.join(status.inputs)}")
    finally:
        bus.close()
    print(f"\n{'table':<18}{'rows':>8}")
    for topic, count in Lake(config.lake.root).counts().items():
        print(f"{table_name(topic):<18}{count:>8}")
    return 0


def cmd_teacher_double(args: argparse.Namespace, overrides: list[str]) -> int:
    from trajlake.teacher.double import demo_script_path, serve

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with serve(args.script or demo_script_path(), args.host, args.port, args.latency) as server:
        print(server.url, flush=True)  # the command's one line of output: where to point teachers
        stop.wait()
    return 0
