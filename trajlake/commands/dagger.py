"""`trajlake dagger collect | status | serve`: the DAgger loop, as commands."""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

from trajlake.config import Config

EPILOG = """\
DAgger trains the student on the states its own mistakes lead to: trajectories are collected
with a turn-level mix of student and teacher (the teacher acts with probability beta_i), the
teacher labels every state, and the student is trained on the union of all iterations.

  trajlake --set student.base_url=http://127.0.0.1:8001/v1 dagger collect --from tasks --iteration 1
                            run the recorded tasks under the mix (beta_1 = 1.0); --limit N,
                            --where SQL; student.checkpoint=RUN_DIR names the student's run
  trajlake dagger status    per iteration: tasks, rollouts, share of student turns, how often
                            the student's action differs from the teacher's label, labels
                            trained, rejected by the scaffold and left unlabelled (past
                            dagger.label_budget_tokens), tokens and calls per trained label
  trajlake dagger serve --model runs/sft/model
                            a trained student behind an OpenAI-compatible endpoint, on the CPU
                            (small models; serve real ones with vLLM)

Then build a mixture with a `kind: dagger` source (`trajlake mixture example`), train, serve
the new student, and collect the next iteration.
"""

STATUS_SQL = """
SELECT iteration,
       string_agg(DISTINCT CAST(beta AS VARCHAR), ', ') AS beta,
       count(DISTINCT student_id) AS students,
       count(DISTINCT task_id) AS tasks,
       count(*) AS rollouts,
       round(sum(student_turns) / nullif(sum(student_turns + teacher_turns), 0), 3)
         AS student_share,
       round(sum(disagree_tool) / nullif(sum(labels), 0), 3) AS disagree_tool,
       round(sum(disagree_exact) / nullif(sum(labels), 0), 3) AS disagree_exact,
       sum(trained) AS trained_labels,
       sum(invalid_labels + invalid_teacher_turns) AS invalid_labels,
       sum(unlabelled) AS unlabelled,
       round(sum(sample_tokens) / nullif(sum(trained), 0), 1) AS tokens_per_label,
       round(sum(teacher_prompt_tokens + teacher_completion_tokens + student_prompt_tokens
                 + student_completion_tokens) / nullif(sum(trained), 0), 1)
         AS call_tokens_per_label,
       round(sum(cost_usd) / nullif(sum(trained), 0), 6) AS usd_per_label
FROM (SELECT *, labels + teacher_turns - invalid_teacher_turns AS trained FROM rollouts_dagger)
GROUP BY iteration ORDER BY iteration
"""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    dagger = sub.add_parser(
        "dagger",
        help="DAgger: collect on the student's own states, label with the teacher",
        description=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    dsub = dagger.add_subparsers(dest="action", metavar="ACTION", required=True)
    collect = dsub.add_parser(
        "collect", help="run recorded tasks or PRs under the student/teacher mix"
    )
    collect.add_argument(
        "--from", dest="source", required=True, metavar="tasks|prs", help="the table to take from"
    )
    collect.add_argument("--where", help="SQL condition on that table, e.g. \"repo = 'myproj'\"")
    collect.add_argument(
        "--iteration", type=int, required=True, help="DAgger iteration i (1, 2, …): sets beta_i"
    )
    collect.add_argument("--limit", type=int, help="at most this many records")
    collect.add_argument(
        "--beta", type=float, help="teacher probability for this iteration (default: dagger.beta)"
    )
    collect.add_argument(
        "--no-run",
        action="store_true",
        help="only send them; workers running `trajlake run` (or `stage dagger`) collect",
    )
    collect.set_defaults(func=cmd_collect)
    dsub.add_parser("status", help="the per-iteration table").set_defaults(func=cmd_status)
    serve = dsub.add_parser("serve", help="serve a trained student (HF directory) on the CPU")
    serve.add_argument("--model", type=Path, required=True, help="e.g. runs/sft/model")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8001, help="0: any free port")
    serve.set_defaults(func=cmd_serve)


def cmd_collect(args: argparse.Namespace, config: Config) -> int:
    from trajlake import preflight
    from trajlake.bus import open_bus
    from trajlake.commands.pipeline import StageBars
    from trajlake.errors import ConfigError
    from trajlake.lake import Lake
    from trajlake.pipeline import run_pipeline
    from trajlake.producers.dagger import collect_events, publish
    from trajlake.producers.replay import select

    if args.iteration < 1 or (args.beta is not None and not 0 <= args.beta <= 1):
        raise ConfigError("--iteration counts from 1, and --beta is a probability in [0, 1]")
    lake = Lake(config.lake.root)
    events = collect_events(
        select(lake, args.source, args.where, args.limit), config, args.iteration, args.beta
    )
    first = events[0] if events else None
    print(
        f"{len(events)} {args.source} for DAgger iteration {args.iteration}"
        + (f" (beta {first.beta:g}, student {first.student_id})" if first else "")
    )
    if not events:
        return 0
    if not args.no_run:  # before anything is sent: the sandbox, the teacher, the student
        notes = preflight.check(config, ["dagger"], waiting=["dagger"])
        for note in notes:
            print(f"warning: {note}")
    bus = open_bus(config.bus, ["dagger.tasks", "rollouts.dagger"])
    bars = StageBars()
    try:
        producer = bus.producer()
        publish(events, lake, producer, config.bus)
        producer.close()
        if args.no_run:
            print("sent; workers running `trajlake run` collect them")
            return 0
        run_pipeline(config, bus, names=["dagger"], on_progress=bars)
    finally:
        bars.close()
        bus.close()
    return cmd_status(args, config)


def cmd_status(args: argparse.Namespace, config: Config) -> int:
    from trajlake.lake import run_sql

    print(run_sql(config.lake.root, STATUS_SQL), end="")
    return 0


def cmd_serve(args: argparse.Namespace, config: Config) -> int:
    from trajlake.training.serve import StudentServer

    with StudentServer(args.model, args.host, args.port) as server:
        print(f"--set student.base_url={server.url} --set student.model={server.name}")
        print(f"serving {args.model}; Ctrl-C stops", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
    return 0
