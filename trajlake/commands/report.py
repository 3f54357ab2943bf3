"""`trajlake report`: the lake at a glance, as one PNG and an HTML page with its numbers."""

from __future__ import annotations

import argparse
from pathlib import Path

from trajlake.config import Config

EPILOG = """\
One picture of the whole lake, and a page with the numbers behind it. The PNG's panels:
  - tasks and rollouts over time, per repository (cumulative; the busiest six, the rest summed)
  - recall of P1 in P2 per teacher and scaffold (box: quartiles, triangle: mean)
  - truncation ratio at each measured context budget, and the share that fits whole
  - patch sizes in changed lines, rollout 1 and rollout 2
  - exit statuses of the rollouts
  - teacher tokens and cost per accepted sample (a Submitted rollout with recall >= R)
  - dead letters by stage and error type
  - soft recall labels against the repository's own tests (ok, broken, flaky, ... per label)
  - rows per table
lake-report.html shows the PNG, then each table of numbers with the SQL that made it: paste
a statement into `trajlake sql` to get the same rows, or change it to ask something else.

  trajlake report                              writes trajlake-report/lake-report.png and
                                               trajlake-report/lake-report.html
  trajlake report --out reports/today --min-recall 1.0
                                               elsewhere, counting only hard-verified samples
                                               as accepted
"""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser(
        "report",
        help="the lake at a glance: one PNG and an HTML page with its numbers",
        description=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    report.add_argument(
        "--out",
        type=Path,
        default=Path("trajlake-report"),
        metavar="DIR",
        help="directory to write lake-report.png and lake-report.html (default: trajlake-report)",
    )
    report.add_argument(
        "--min-recall",
        type=float,
        default=0.5,
        metavar="R",
        help="recall a Submitted rollout needs to count as an accepted sample (default: 0.5)",
    )
    report.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace, config: Config) -> int:
    from trajlake.lake.lake_report import write_lake_report

    png, page = write_lake_report(config.lake.root, args.out, args.min_recall)
    print(f"wrote {png} and {page} (open the page in a browser: the picture and its numbers)")
    return 0
