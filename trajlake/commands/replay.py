"""`trajlake replay` and `trajlake teachers`: regenerate with another teacher, and compare."""

from __future__ import annotations

import argparse
from pathlib import Path

from pydantic import ValidationError
from tqdm import tqdm

from trajlake.config import Config, TeacherConfig
from trajlake.errors import ConfigError
from trajlake.yamlfile import describe, read_mapping

TEACHERS_SQL = """
SELECT teacher_id, tbl AS "table", label, count(*) AS n FROM (
  SELECT teacher_id, 'rollouts_t1' AS tbl, exit_status || CASE WHEN self_eval = '' THEN ''
         ELSE '/' || self_eval END AS label FROM rollouts_t1
  UNION ALL SELECT teacher_id, 'rollouts_t2', exit_status FROM rollouts_t2
  UNION ALL SELECT teacher_id, 'prs', '' FROM prs
  UNION ALL SELECT teacher_id, 'verdicts', label FROM verdicts
  UNION ALL SELECT teacher_id, 'samples', rollout FROM samples
) GROUP BY ALL ORDER BY teacher_id, "table", label
"""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    replay = sub.add_parser(
        "replay", help="send recorded tasks or PRs to the replay topic with a new teacher"
    )
    replay.add_argument(
        "--from", dest="source", required=True, metavar="tasks|prs", help="the table to replay from"
    )
    replay.add_argument("--where", help="SQL condition on that table, e.g. \"repo = 'myproj'\"")
    replay.add_argument(
        "--teacher",
        type=Path,
        required=True,
        help="YAML of the new teacher (the teacher: section of trajlake.yaml)",
    )
    replay.add_argument("--limit", type=int, help="at most this many records")
    replay.add_argument("--dry-run", action="store_true", help="print the count and first ids")
    replay.set_defaults(func=cmd_replay)
    teachers = sub.add_parser("teachers", help="teacher ids with row counts per table and label")
    teachers.set_defaults(func=cmd_teachers)


def load_teacher(path: Path) -> TeacherConfig:
    data = read_mapping(path, "teacher file")
    try:
        return TeacherConfig.model_validate(data.get("teacher", data))
    except ValidationError as e:
        raise ConfigError(describe(e, f"teacher file {path}")) from None


def cmd_replay(args: argparse.Namespace, config: Config) -> int:
    from trajlake.bus import open_bus
    from trajlake.lake import Lake
    from trajlake.producers.replay import publish, replay_events, select

    teacher = load_teacher(args.teacher)
    lake = Lake(config.lake.root)
    chosen = select(lake, args.source, args.where, args.limit)
    events = replay_events(chosen, args.source, teacher, config.agent.scaffold)
    tid = events[0].teacher_id if events else "-"
    print(f"{len(events)} {args.source} to replay with teacher {tid}")
    if args.dry_run or not events:
        for event in events[:10]:
            print(f"  {event.source_event_id}  ->  replay {event.event_id}")
        return 0
    bus = open_bus(config.bus, ["replay"])
    try:
        producer = bus.producer()
        for i in tqdm(range(0, len(events), 500), desc="replay", unit=" chunk", disable=None):
            publish(events[i : i + 500], lake, producer, config.bus)
        producer.close()
    finally:
        bus.close()
    print("sent; run the rollout stages (trajlake run) to generate, then: trajlake teachers")
    return 0


def cmd_teachers(args: argparse.Namespace, config: Config) -> int:
    from trajlake.lake import run_sql

    print(run_sql(config.lake.root, TEACHERS_SQL), end="")
    return 0
