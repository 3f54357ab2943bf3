"""`trajlake tests backfill | agreement`: the repositories' own tests on recorded rollouts."""

from __future__ import annotations

import argparse
import sys

from trajlake.config import Config

EPILOG = """\
The tester stage runs each rollout's patch against the repository's own tests: the test files
that name what the patch changed, at the commit (the baseline, run twice; a test whose runs
disagree is flaky) and with the patch. Its rows (table `tests`, one per rollout; per test in
the `test_runs` view) join the `trajectories` view as tests_status, tests_selected,
tests_broken, tests_fixed, tests_flaky and touches_tests, so a mixture can ask for both kinds
of verification:  where: "recall >= 0.5 AND tests_broken = 0".

`trajlake run` runs the tester with the other stages. For rollouts recorded before it existed:

  trajlake tests backfill                  test every rollout of the lake that has no tests row
  trajlake tests backfill --repo click --limit 20
  trajlake tests agreement                 how soft-recall labels and test outcomes agree
  trajlake tests agreement --min-recall 1.0
"""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    tests = sub.add_parser(
        "tests",
        help="the repositories' own tests on rollouts: backfill, agreement with soft recall",
        description=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tsub = tests.add_subparsers(dest="action", metavar="ACTION", required=True)
    backfill = tsub.add_parser(
        "backfill", help="run the tester over recorded rollouts that have no tests row"
    )
    backfill.add_argument("--repo", default="", help="only this registered repository's")
    backfill.add_argument("--limit", type=int, default=0, metavar="N", help="at most N rollouts")
    backfill.set_defaults(func=cmd_backfill)
    agreement = tsub.add_parser(
        "agreement", help="soft-recall labels against test outcomes, with Cohen's kappa"
    )
    agreement.add_argument(
        "--min-recall",
        type=float,
        default=0.5,
        metavar="R",
        help="recall at which soft verification accepts a rollout (default: 0.5)",
    )
    agreement.set_defaults(func=cmd_agreement)


#: Rollouts (topic, id) without a tests row, oldest first: only ids are read here, the
#: rollouts themselves (their messages are the bulk of the lake) a chunk at a time.
UNTESTED = """SELECT topic, event_id FROM (
  SELECT 'rollouts.t1' AS topic, event_id, created_at, repo FROM rollouts_t1
  UNION ALL SELECT 'rollouts.t2', event_id, created_at, repo FROM rollouts_t2)
 WHERE event_id NOT IN (SELECT rollout_id FROM tests) AND (? = '' OR repo = ?)
 ORDER BY created_at, event_id"""
CHUNK = 50


def untested(config: Config, repo: str = "", limit: int = 0) -> list[tuple[str, str]]:
    """(topic, event id) of the lake's rollouts (T1 and T2) without a tests row, oldest first."""
    from trajlake.lake import Lake

    con = Lake(config.lake.root).connect(["rollouts.t1", "rollouts.t2", "tests"])
    try:
        found = con.execute(UNTESTED, [repo, repo]).fetchall()
    finally:
        con.close()
    return found[:limit] if limit else found


def cmd_backfill(args: argparse.Namespace, config: Config) -> int:
    from tqdm import tqdm

    from trajlake.consumers.tester import run_repository_tests
    from trajlake.errors import EnvironmentBuildFailed
    from trajlake.lake import Lake

    todo = untested(config, args.repo, args.limit)
    if not todo:
        print("every rollout in the lake has a tests row: nothing to backfill")
        return 0
    lake, statuses, unbuilt = Lake(config.lake.root), {}, {}
    with tqdm(total=len(todo), desc="tester", unit=" rollout", disable=None) as bar:
        for start in range(0, len(todo), CHUNK):
            chunk = todo[start : start + CHUNK]
            for topic in ("rollouts.t1", "rollouts.t2"):
                ids = [event_id for t, event_id in chunk if t == topic]
                for rollout in lake.read_events(topic, "list_contains(?, event_id)", [ids]):
                    bar.update()
                    try:
                        row = run_repository_tests(config, rollout)
                    except EnvironmentBuildFailed as e:  # no row: the next backfill tries again
                        unbuilt.setdefault(rollout.repo, str(e).splitlines()[0])
                        continue
                    lake.write("tests", [row], name=f"tests-{row.event_id}")  # a crash loses none
                    statuses[row.tests_status] = statuses.get(row.tests_status, 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()))
    print(f"tested {sum(statuses.values())} rollouts: {summary or 'none'}; see them with "
          "`trajlake tests agreement`")  # fmt: skip
    for repo, why in unbuilt.items():
        print(
            f"error: {repo}'s environment does not build ({why}): its rollouts are untested; "
            f"fix it (`trajlake repo set {repo} --env ...`), then backfill again",
            file=sys.stderr,
        )
    return 1 if unbuilt else 0


#: Rollouts both verifications judged: soft recall (a verdict with a recall) and the tests (a
#: status with broken counted). {min_recall} is the recall soft verification accepts at.
BOTH = """SELECT recall >= {min_recall} AS recall_accepts, tests_broken = 0 AS tests_accept,
       count(*) AS rollouts
  FROM trajectories WHERE recall IS NOT NULL AND tests_broken IS NOT NULL
 GROUP BY ALL ORDER BY ALL"""


def cmd_agreement(args: argparse.Namespace, config: Config) -> int:
    from trajlake.lake import Lake
    from trajlake.lake.lake_report import TABLES

    [per_label] = [sql for name, _, _, sql in TABLES if name == "tests"]
    con = Lake(config.lake.root).connect()
    try:
        labels = con.execute(per_label)
        print("Per recall label, how the rollouts did on the repository's tests:\n")
        print(_table(labels))
        both = con.execute(BOTH.format(min_recall=args.min_recall))
        header, cells = [d[0] for d in both.description], both.fetchall()
    finally:
        con.close()
    print(f"Rollouts both judged (recall known, tests run): accepted at recall >= "
          f"{args.min_recall:g} against no test broken:\n")  # fmt: skip
    print(_table_of(header, cells))
    print(agreement_line({(r, t): n for r, t, n in cells}))
    return 0


def _table(cursor) -> str:
    return _table_of([d[0] for d in cursor.description], cursor.fetchall())


def _table_of(header: list[str], rows: list[tuple]) -> str:
    """A fixed-width table as `trajlake sql` prints one (numbers right-aligned)."""
    from trajlake.lake.query import format_table

    text = [tuple(None if v is None else str(v).lower() if isinstance(v, bool) else str(v)
                  for v in row) for row in rows]  # fmt: skip
    numeric = [bool(rows) and isinstance(v, int | float) and not isinstance(v, bool)
               for v in (rows[0] if rows else header)]  # fmt: skip
    return format_table(header, text, numeric)


def agreement_line(cells: dict[tuple[bool, bool], int]) -> str:
    """Observed agreement and Cohen's kappa of the two accept/reject decisions, from the
    counts of each (recall accepts, tests accept) pair."""
    total = sum(cells.values())
    if not total:
        return "no rollout has both a recall and a test result yet"
    agree = (cells.get((True, True), 0) + cells.get((False, False), 0)) / total
    recall_yes = sum(n for (r, _), n in cells.items() if r) / total
    tests_yes = sum(n for (_, t), n in cells.items() if t) / total
    chance = recall_yes * tests_yes + (1 - recall_yes) * (1 - tests_yes)
    kappa = (agree - chance) / (1 - chance) if chance < 1 else float("nan")
    return (
        f"{total} rollouts: the two agree on {agree:.0%} (chance {chance:.0%}), Cohen's kappa "
        f"{kappa:.2f}; recall accepts {recall_yes:.0%}, the tests accept {tests_yes:.0%}"
    )
