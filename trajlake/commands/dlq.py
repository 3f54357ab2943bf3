"""`trajlake dlq list` and `trajlake dlq retry`: what failed, and sending it again."""

from __future__ import annotations

import argparse
import sys

from trajlake.bus import Bus
from trajlake.commands.pipeline import dead_letter_status
from trajlake.config import Config

EPILOG = """\
A record a stage could not process is a dead letter: a row of the dlq table (stage, error,
the record's bytes) and an event on the dlq topic; the stage goes on with the next record.
An outage (the teacher unreachable: TeacherUnavailable; a sandbox that does not start:
SandboxDown) is retried for runner.outage_patience_s first, and becomes a dead letter only
after that. Once the cause is fixed (the teacher is back, bubblewrap is installed, a bug is
fixed):

  trajlake dlq list                          open failures by stage and error type
  trajlake dlq retry --dry-run               what would be sent again
  trajlake dlq retry --stage rollout1        send them back to the stage that failed them
  trajlake dlq retry --where "error_type = 'TeacherUnavailable'"
  trajlake dlq heal                          a lake from before outages were retried

On the embedded bus `retry` then runs the pipeline until the retried records and what
follows from them are done (--no-run: leave that to `trajlake run`); on Kafka the running
stages take them. A retry sent before and not yet run is sent again (the same record: it
runs once); once they have run, retrying adds nothing. A record that fails again is a new
dlq row (the history stays in the lake) and can be retried again.
"""


HEAL_HELP = """\
A lake written before trajlake retried outages can hold rollout rows whose exit status is
the infrastructure's failure (a teacher that was down: TeacherError "failed N time(s)", a
sandbox that did not start: SandboxError). The rollout stages skip what is done, so those
tasks never run again. `heal` writes a dead letter for the input of each such row, then
removes the rows (and the samples and verdicts made from them) from the lake; then

  trajlake dlq retry

runs them again, with the event ids an undisturbed run gives. Local lakes only.
"""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    dlq = sub.add_parser(
        "dlq",
        help="dead letters: list them, send them back to their stage",
        description=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    dsub = dlq.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = dsub.add_parser("list", help="open failures by stage and error type, newest first")
    listing.add_argument("--stage", help="only this stage's")
    listing.set_defaults(func=cmd_list)
    retry = dsub.add_parser("retry", help="send open dead letters back to their stage")
    retry.add_argument("--stage", help="only this stage's")
    retry.add_argument("--where", help="SQL condition on dlq columns (error_type, error, repo, …)")
    retry.add_argument("--dry-run", action="store_true", help="print what would be sent")
    retry.add_argument(
        "--no-run", action="store_true", help="embedded bus: send only, do not run the pipeline"
    )
    retry.set_defaults(func=cmd_retry)
    heal = dsub.add_parser(
        "heal",
        help="turn rollout rows that recorded an outage (older trajlake) into dead letters",
        description=HEAL_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    heal.add_argument("--dry-run", action="store_true", help="print what would change")
    heal.set_defaults(func=cmd_heal)


def cmd_list(args: argparse.Namespace, config: Config) -> int:
    from trajlake.lake import Lake
    from trajlake.producers.redrive import open_counts, pending_count, resolved_count

    lake = Lake(config.lake.root)
    counts = open_counts(lake, args.stage)
    print(
        f"{'stage':<18}{'error type':<22}{'inputs':>7}{'failures':>9}  newest               error"
    )
    for c in counts:
        when = c.newest.strftime("%Y-%m-%d %H:%M:%S")
        example = " ".join(c.example.split())[:60]
        print(f"{c.stage:<18}{c.error_type:<22}{c.inputs:>7}{c.failures:>9}  {when}  {example}")
    total = sum(c.inputs for c in counts)
    pending = pending_count(lake, args.stage)
    print(
        f"\n{total} open ({pending} of them sent back and not yet run by their stage); "
        f"{resolved_count(lake)} retried and resolved",
        file=sys.stderr,
    )
    if total:
        print("fix the cause, then: trajlake dlq retry [--stage S] [--dry-run]", file=sys.stderr)
    return 0


def cmd_retry(args: argparse.Namespace, config: Config) -> int:
    from trajlake.bus import open_bus
    from trajlake.lake import Lake
    from trajlake.producers.redrive import plan, send
    from trajlake.schemas import TOPICS

    lake = Lake(config.lake.root)
    todo = plan(lake, args.stage, args.where)
    if todo.pending:
        print(
            f"{todo.pending} of them sent before and not run by their stage yet: sent again "
            "(in case that send failed; a retry sent twice runs once)"
        )
    by_stage: dict[str, int] = {}
    for retry in todo.retries:
        by_stage[retry.stage_to] = by_stage.get(retry.stage_to, 0) + 1
    print(
        f"{len(todo.retries)} dead letters to send back: "
        + (", ".join(f"{n} to {stage}" for stage, n in sorted(by_stage.items())) or "none")
    )
    if args.dry_run or not todo.retries:
        for retry in todo.retries[:10]:
            print(
                f"  {retry.stage_to:<16} {retry.source_topic}[{retry.source_partition}]"
                f"@{retry.source_offset}  dead letter {retry.dead_letter_id}"
            )
        return 0
    run_here = config.bus.kind == "embedded" and not args.no_run
    if run_here:  # the stages must be able to run before anything is sent
        _preflight(config, {retry.stage_to for retry in todo.retries})
    bus = open_bus(config.bus, TOPICS)
    try:
        producer = bus.producer()
        send(todo.retries, lake, producer, config.bus)
        producer.close()
        if not run_here:
            print("sent; the stages take them when they run (`trajlake run`, `trajlake stage S`)")
            return 0
        failed = _run_pipeline(config, bus)
    finally:
        bus.close()
    cmd_list(argparse.Namespace(stage=args.stage), config)
    return dead_letter_status(failed)


def cmd_heal(args: argparse.Namespace, config: Config) -> int:
    from trajlake.bus import open_bus
    from trajlake.lake import Lake
    from trajlake.producers.heal import heal, plan

    lake = Lake(config.lake.root)
    todo = plan(lake)
    rows = ", ".join(f"{len(ids)} from {table}" for table, ids in sorted(todo.rows.items()))
    print(f"{len(todo.letters)} inputs to dead-letter; rows to remove: {rows or 'none'}")
    if args.dry_run or not todo.letters:
        return 0
    bus = open_bus(config.bus, ["dlq"])
    try:
        producer = bus.producer()
        heal(lake, todo, producer, config.bus)
        producer.close()
    finally:
        bus.close()
    print("healed; run them again with: trajlake dlq retry")
    return 0


def _preflight(config: Config, waiting: set[str]) -> None:
    from trajlake import preflight
    from trajlake.commands.pipeline import warn
    from trajlake.stages import BUILTIN

    warn(preflight.check(config, BUILTIN, waiting))


def _run_pipeline(config: Config, bus: Bus) -> int:
    """Run the pipeline until done; the dead letters it added."""
    from trajlake.commands.pipeline import StageBars, dead_letters
    from trajlake.pipeline import run_pipeline

    bars = StageBars()
    try:
        return dead_letters(run_pipeline(config, bus, on_progress=bars))
    finally:
        bars.close()
