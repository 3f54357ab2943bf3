"""The `trajlake` command. The only module that prints."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from trajlake.commands import (
    dagger,
    dlq,
    env,
    mixture,
    pipeline,
    replay,
    report,
    repos,
    scaffold,
    tests,
    train,
)
from trajlake.config import Config, load_config
from trajlake.errors import TrajlakeError

DESCRIPTION = """\
trajlake turns code repositories into training data for coding agents (Soft Verified
Generation) on an event bus, and keeps every event in a Parquet lake you query with SQL.

How it fits together:
  every stage reads a topic, does its work, writes its outputs to the lake, publishes them to
  the next topic, then commits.  Topics: commits → tasks → rollouts.t1 → prs → rollouts.t2 →
  verdicts → samples, and rollouts → tests (+ replay, dlq).  Each topic is also a lake
  table / DuckDB view (dots become underscores: rollouts.t1 → rollouts_t1).

Start here:
  trajlake demo                                the whole pipeline on a generated repository,
                                               a scripted teacher and the embedded bus
Typical session:
  trajlake repo add PATH_OR_URL                register a repository (--branch, --backfill K)
  trajlake repo list                           registered repositories, last commit emitted
  trajlake topics create                       create every topic (needed on kafka)
  trajlake watch                               emit new commits to the commits topic (--once)
  trajlake run                                 emit new commits, run every stage until done
                                               (--follow: keep going as commits arrive)
  trajlake status                              each stage's lag and each table's rows
  trajlake replay --from tasks --teacher T.yaml  regenerate recorded tasks with a new teacher
  trajlake teachers                            teacher ids, rows per table and label
  trajlake stage NAME                          run one stage as its own process, e.g.
                                               `trajlake stage function_sampler` (commits → tasks)
  trajlake sql "SELECT stage, count(*) FROM dlq GROUP BY 1"
                                               query the lake
  trajlake dlq list                            records that failed, by stage and error; once
                                               the cause is fixed: `trajlake dlq retry`
  trajlake lake compact                        merge small lake files (results unchanged)
  trajlake tests agreement                     soft recall against the repository's own tests
                                               (`tests backfill`: test older rollouts)
  trajlake report                              the lake at a glance: a PNG and an HTML page
                                               with its numbers (--out DIR)
  trajlake mixture build SPEC.yaml             select a training set with SQL (see
                                               `trajlake mixture example`); then
                                               `mixture show NAME`, `mixture check NAME`
  trajlake train --config training.yaml        fine-tune a model on a mixture (FSDP2, torchrun;
                                               training/configs/tiny-cpu.yaml runs on a CPU)
  trajlake scaffold show mini-bash             what the agent model sees (prompts, tools), its id
  trajlake config show                         print the resolved configuration

Configuration comes from trajlake.yaml (or --config FILE), with overrides such as
  --set bus.kind=kafka --set bus.bootstrap_servers=broker:9092 --set runner.concurrency=16
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trajlake", description=DESCRIPTION, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("-c", "--config", help="config file (default: ./trajlake.yaml if present)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config field, e.g. --set lake.root=/data/lake (repeatable)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    topics = sub.add_parser("topics", help="create and list bus topics")
    tsub = topics.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = tsub.add_parser("create", help="create topics (all known topics by default)")
    create.add_argument("topics", nargs="*", help="topic names (default: every trajlake topic)")
    create.add_argument("--partitions", type=int, help="partitions per topic (default: config)")
    create.set_defaults(func=cmd_topics_create)
    tsub.add_parser("list", help="topics with partitions and record counts").set_defaults(
        func=cmd_topics_list
    )

    stage = sub.add_parser("stage", help="run one stage until stopped (SIGTERM finishes cleanly)")
    stage.add_argument("name", help="a built-in stage name, or package.module:factory")
    stage.add_argument(
        "--idle-timeout",
        type=float,
        metavar="S",
        help="exit after S seconds with no input, once the stage's group has no records left"
        " (a killed worker's partitions come to this one after bus.session_timeout_ms)",
    )
    stage.add_argument(  # also after the name, as in `trajlake stage rollout1 --config F`
        "-c", "--config", default=argparse.SUPPRESS, help="config file (as before the command)"
    )
    stage.set_defaults(func=cmd_stage)

    repos.add_parsers(sub)
    env.add_parsers(sub)

    sql = sub.add_parser("sql", help="run SQL against the lake views")
    sql.add_argument("query", help='e.g. "SELECT count(*) FROM tasks"')
    sql.add_argument("--format", choices=["table", "csv", "json", "parquet"], default="table")
    sql.add_argument("--output", type=Path, help="file to write (required for parquet)")
    sql.set_defaults(func=cmd_sql)

    lake = sub.add_parser("lake", help="lake maintenance")
    lsub = lake.add_subparsers(dest="action", metavar="ACTION", required=True)
    compact = lsub.add_parser(
        "compact", help="merge small files; every query result stays the same"
    )
    compact.add_argument("--table", action="append", help="only these tables (repeatable)")
    compact.set_defaults(func=cmd_lake_compact)
    lsub.add_parser(
        "views", help="print the lake's views as SQL for the duckdb CLI (duckdb -init FILE)"
    ).set_defaults(func=cmd_lake_views)

    config = sub.add_parser("config", help="show the resolved configuration")
    csub = config.add_subparsers(dest="action", metavar="ACTION", required=True)
    csub.add_parser("show", help="print it as YAML, with its hash").set_defaults(
        func=cmd_config_show
    )
    pipeline.add_parsers(sub)
    replay.add_parsers(sub)
    dlq.add_parsers(sub)
    mixture.add_parsers(sub)
    train.add_parsers(sub)
    scaffold.add_parsers(sub)
    report.add_parsers(sub)
    tests.add_parsers(sub)
    dagger.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(hoist_overrides(sys.argv[1:] if argv is None else argv))
    try:
        if not getattr(args, "needs_config", True):  # builds its own (demo, teacher-double)
            return args.func(args, args.overrides) or 0
        config = load_config(args.config, args.overrides)
        return args.func(args, config) or 0
    except TrajlakeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `trajlake sql … | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 0


def hoist_overrides(argv: list[str]) -> list[str]:
    """`--set KEY=VALUE` is accepted anywhere (`trajlake demo --set agent.scaffold=swe-agent`):
    moved before the command, where the parser takes it."""
    front, rest, i = [], [], 0
    while i < len(argv):
        if argv[i] == "--set" and i + 1 < len(argv):
            front += argv[i : i + 2]
            i += 2
            continue
        (front if argv[i].startswith("--set=") else rest).append(argv[i])
        i += 1
    return front + rest


def cmd_topics_create(args: argparse.Namespace, config: Config) -> int:
    from trajlake.bus import open_bus
    from trajlake.schemas import TOPICS

    names = args.topics or list(TOPICS)
    partitions = args.partitions or config.bus.partitions
    bus = open_bus(config.bus)
    try:
        bus.create_topics(names, partitions)
        for name, count in sorted(bus.list_topics().items()):
            if name in names:
                print(f"{name}: {count} partitions")
    finally:
        bus.close()
    return 0


def cmd_topics_list(args: argparse.Namespace, config: Config) -> int:
    from trajlake.bus import open_bus

    bus = open_bus(config.bus)
    try:
        topics = bus.list_topics()
        ends = bus.end_offsets(list(topics))
        print(f"{'topic':<16} {'partitions':>10} {'records':>10}")
        for name, count in sorted(topics.items()):
            records = sum(v for (t, _), v in ends.items() if t == name)
            print(f"{name:<16} {count:>10} {records:>10}")
    finally:
        bus.close()
    return 0


def cmd_stage(args: argparse.Namespace, config: Config) -> int:
    from tqdm import tqdm

    from trajlake import preflight
    from trajlake.bus import open_bus
    from trajlake.commands.pipeline import dead_letter_status
    from trajlake.lake import Lake
    from trajlake.pipeline import waiting_stages
    from trajlake.runner import StageRunner
    from trajlake.schemas import TOPICS
    from trajlake.stages import load_stage

    stage = load_stage(args.name, config)
    bus = open_bus(config.bus, TOPICS)
    try:  # before anything is read; the student only when DAgger records wait
        notes = preflight.check(config, [stage.name], waiting_stages(bus, [stage.name]))
    except TrajlakeError:
        bus.close()
        raise
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    runner = StageRunner(stage, bus, Lake(config.lake.root), config.runner, config.bus)
    signal.signal(signal.SIGTERM, lambda *_: runner.stop())
    signal.signal(signal.SIGINT, lambda *_: runner.stop())
    bar = tqdm(desc=stage.name, unit=" rec", disable=None)

    def progress(stats) -> None:
        bar.update(stats.consumed - bar.n)
        bar.set_postfix(out=stats.produced, dlq=stats.dead_letters, skipped=stats.skipped)

    try:
        stats = runner.run(idle_timeout_s=args.idle_timeout, on_progress=progress)
    finally:
        bar.close()
        bus.close()
    print(
        f"{stage.name}: consumed {stats.consumed}, produced {stats.produced}, "
        f"dead letters {stats.dead_letters}, already done {stats.skipped}",
        file=sys.stderr,
    )
    return dead_letter_status(stats.dead_letters)


def cmd_sql(args: argparse.Namespace, config: Config) -> int:
    from trajlake.lake import run_sql

    text = run_sql(config.lake.root, args.query, args.format, args.output)
    if text is not None:
        print(text, end="" if text.endswith("\n") else "\n")
    elif args.output:
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


def cmd_lake_compact(args: argparse.Namespace, config: Config) -> int:
    from trajlake.lake import compact

    report = compact(config.lake.root, tables=args.table)
    print(report)
    return 0


def cmd_lake_views(args: argparse.Namespace, config: Config) -> int:
    from trajlake.lake.views import standalone_sql

    print(standalone_sql(config.lake.root))
    return 0


def cmd_config_show(args: argparse.Namespace, config: Config) -> int:
    import yaml

    print(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False).rstrip())
    print(f"# config hash: {config.hash()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
