"""The lake at a glance (`trajlake report`): one PNG, and an HTML page with it and its numbers.

Every number is a DuckDB query over the lake's views (the ones `trajlake sql` knows), listed in
`TABLES` so that the page can show the statement behind each table: paste it into
`trajlake sql` to get the same rows. The drawing is in `lake_report_plot`.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from trajlake.errors import LakeError
from trajlake.lake.files import publish, temp_path
from trajlake.lake.store import Lake
from trajlake.lake.views import connect, schema_hint

PNG = "lake-report.png"
HTML = "lake-report.html"
#: The recall a Submitted rollout needs to count as an accepted sample (SVG: r >= 0.5 trains as
#: well as hard verification).
MIN_RECALL = 0.5

_ROLLOUTS = "(SELECT * FROM rollouts_t1 UNION ALL BY NAME SELECT * FROM rollouts_t2)"

#: (id, title, what the rows are, SQL); {min_recall} is the accepted-sample recall.
TABLES = (
    (
        "activity",
        "Tasks and rollouts per repository and day (UTC)",
        "rows created per day: tasks sampled, rollout-1 and rollout-2 runs",
        """SELECT repo, CAST(created_at AS DATE) AS day,
       count(*) FILTER (WHERE kind = 'task') AS tasks,
       count(*) FILTER (WHERE kind = 't1') AS t1, count(*) FILTER (WHERE kind = 't2') AS t2
  FROM (SELECT repo, created_at, 'task' AS kind FROM tasks
        UNION ALL SELECT repo, created_at, rollout FROM rollouts_t1
        UNION ALL SELECT repo, created_at, rollout FROM rollouts_t2)
 GROUP BY ALL ORDER BY repo, day""",
    ),
    (
        "recall",
        "Recall per teacher and scaffold",
        "one verdict per rollout 2: recall of P1's changed lines in P2, and the labels",
        """SELECT teacher_id, scaffold_id, count(*) AS verdicts, round(avg(recall), 3) AS mean,
       round(median(recall), 3) AS median, count(*) FILTER (WHERE label = 'hard') AS hard,
       count(*) FILTER (WHERE label = 'soft') AS soft,
       count(*) FILTER (WHERE label = 'unverified') AS unverified,
       count(*) FILTER (WHERE label IN ('empty', 'unparseable')) AS no_recall
  FROM verdicts GROUP BY ALL ORDER BY ALL""",
    ),
    (
        "truncation",
        "Truncation ratio at each context budget",
        "per measured rollout (its newest sample): share of messages kept at the budget",
        """SELECT budget, count(*) AS rollouts, round(avg(ratio), 3) AS mean,
       round(median(ratio), 3) AS median, count(*) FILTER (WHERE ratio = 1) AS fit_whole,
       count(*) FILTER (WHERE ratio = 0) AS fit_nothing
  FROM (SELECT unnest(budgets) AS budget, unnest(truncation_ratios) AS ratio FROM trajectories)
 GROUP BY ALL ORDER BY budget""",
    ),
    (
        "patches",
        "Patch sizes (changed lines)",
        "per measured rollout: added and removed lines of its patch; -1 means unparseable",
        """SELECT rollout, count(*) AS rollouts, count(*) FILTER (WHERE patch_lines < 0)
       AS unparseable, quantile_disc(patch_lines, 0.5) FILTER (WHERE patch_lines >= 0) AS median,
       quantile_disc(patch_lines, 0.9) FILTER (WHERE patch_lines >= 0) AS p90,
       max(patch_lines) AS max, count(*) FILTER (WHERE patch_lines BETWEEN 0 AND 40) AS up_to_40
  FROM trajectories WHERE patch_lines IS NOT NULL GROUP BY ALL ORDER BY rollout""",
    ),
    (
        "exits",
        "Exit statuses",
        "how each rollout ended",
        f"""SELECT rollout, exit_status, count(*) AS rollouts
  FROM {_ROLLOUTS} GROUP BY ALL ORDER BY rollout, rollouts DESC, exit_status""",
    ),
    (
        "spend",
        "Teacher tokens and cost per accepted sample",
        "all rollouts' teacher tokens (rejected attempts and failures included) over accepted "
        "samples: Submitted rollouts with recall >= the threshold",
        f"""WITH spend AS (
  SELECT teacher_id, count(*) AS rollouts, sum(prompt_tokens + completion_tokens) AS tokens,
         sum(cost_usd) AS cost_usd FROM {_ROLLOUTS} GROUP BY ALL
), accepted AS (
  SELECT teacher_id, count(*) AS accepted FROM trajectories
   WHERE exit_status = 'Submitted' AND recall >= {{min_recall}} GROUP BY ALL
)
SELECT teacher_id, rollouts, tokens, round(cost_usd, 4) AS cost_usd,
       coalesce(accepted, 0) AS accepted, round(tokens / accepted) AS tokens_per_accepted,
       round(cost_usd / accepted, 4) AS cost_per_accepted
  FROM spend LEFT JOIN accepted USING (teacher_id) ORDER BY teacher_id""",
    ),
    (
        "tests",
        "Soft recall against the repository's tests",
        "per rollout with a verdict: its recall label (a T1's is its best T2's) against how its "
        "patch did on the repository's own tests (the tester stage); untested: no tests row yet",
        """SELECT coalesce(label, '(no verdict)') AS recall_label, count(*) AS rollouts,
       count(*) FILTER (WHERE tests_status = 'ok') AS ok,
       count(*) FILTER (WHERE tests_status = 'broken') AS broken,
       count(*) FILTER (WHERE tests_status = 'flaky') AS flaky,
       count(*) FILTER (WHERE tests_status IN ('timeout', 'error')) AS timeout_or_error,
       count(*) FILTER (WHERE tests_status = 'no_tests') AS no_tests,
       count(*) FILTER (WHERE tests_status IS NULL) AS untested,
       round(avg(tests_broken), 2) AS mean_broken, round(avg(recall), 3) AS mean_recall
  FROM trajectories GROUP BY 1
 ORDER BY list_position(['hard', 'soft', 'unverified', 'empty', 'unparseable'], recall_label)
       NULLS LAST""",
    ),
    (
        "dead_letters",
        "Dead letters by stage",
        "records a stage could not process (a failed retry adds one), by error type; inputs: "
        "distinct records that failed. Which are still open: `trajlake dlq list`",
        """SELECT stage, error_type, count(*) AS dead_letters,
       count(DISTINCT (source_topic, source_partition, source_offset)) AS inputs
  FROM dlq GROUP BY ALL ORDER BY stage, error_type""",
    ),
)


@dataclass(frozen=True)
class Table:
    id: str
    title: str
    about: str
    sql: str
    columns: list[str]
    rows: list[tuple[Any, ...]]


@dataclass(frozen=True)
class LakeNumbers:
    """The report's tables, and the distributions the picture draws."""

    root: str
    made_at: dt.datetime
    min_recall: float
    tables: dict[str, Table]
    counts: dict[str, int]  # rows per topic
    timeline: list[tuple[str, str, dt.datetime]]  # (repo, "tasks" | "rollouts", created_at)
    recalls: dict[str, list[float]]  # "teacher / scaffold" -> recall values
    ratios: dict[int, list[float]]  # budget -> truncation ratios
    patch_lines: dict[str, list[int]]  # "t1" | "t2" -> changed lines (parsed patches)


def lake_numbers(root: str | Path, min_recall: float = MIN_RECALL) -> LakeNumbers:
    """Every number of the report, read from the lake at `root`."""
    con = connect(root)
    try:
        tables = {
            id_: _table(con, id_, title, about, sql, min_recall)
            for id_, title, about, sql in TABLES
        }
        return LakeNumbers(
            root=str(root),
            made_at=dt.datetime.now(dt.timezone.utc),
            min_recall=min_recall,
            tables=tables,
            counts=Lake(root).counts(),
            timeline=_rows(con, _TIMELINE),
            recalls=dict(_rows(con, _RECALLS)),
            ratios=dict(_rows(con, _RATIOS)),
            patch_lines=dict(_rows(con, _PATCH_LINES)),
        )
    except duckdb.Error as e:
        raise LakeError(
            f"cannot read the lake at {root} for the report: {schema_hint(e)}"
        ) from None
    finally:
        con.close()


_TIMELINE = """SELECT repo, 'tasks', created_at FROM tasks
 UNION ALL SELECT repo, 'rollouts', created_at FROM rollouts_t1
 UNION ALL SELECT repo, 'rollouts', created_at FROM rollouts_t2 ORDER BY 3"""
_RECALLS = """SELECT teacher_id || ' / ' || scaffold_id, list(recall ORDER BY recall)
  FROM verdicts WHERE recall IS NOT NULL GROUP BY ALL ORDER BY 1"""
_RATIOS = """SELECT budget, list(ratio ORDER BY ratio) FROM (SELECT unnest(budgets) AS budget,
  unnest(truncation_ratios) AS ratio FROM trajectories) GROUP BY ALL ORDER BY 1"""
_PATCH_LINES = """SELECT rollout, list(patch_lines ORDER BY patch_lines) FROM trajectories
 WHERE patch_lines >= 0 GROUP BY ALL ORDER BY 1"""


def _table(
    con: duckdb.DuckDBPyConnection, id_: str, title: str, about: str, sql: str, min_recall: float
) -> Table:
    sql = sql.replace("{min_recall}", repr(float(min_recall)))  # as the page shows it
    relation = con.execute(sql)
    columns = [d[0] for d in relation.description]
    return Table(id_, title, about, sql, columns, relation.fetchall())


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[Any, ...]]:
    return con.execute(sql).fetchall()


def write_lake_report(
    root: str | Path, out_dir: str | Path, min_recall: float = MIN_RECALL
) -> tuple[Path, Path]:
    """Write `out_dir`/lake-report.png and lake-report.html; returns their paths."""
    from trajlake.lake.lake_report_plot import draw  # matplotlib loads slowly

    numbers = lake_numbers(root, min_recall)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        png, page = out / PNG, out / HTML
        tmp = temp_path(png)
        draw(numbers, tmp)
        publish(tmp, png)
        tmp = temp_path(page)
        tmp.write_text(render_html(numbers, png.read_bytes()), encoding="utf-8")
        publish(tmp, page)
    except OSError as e:
        raise LakeError(f"cannot write the report to {out}: {e}; check it is writable") from e
    return png, page


def render_html(numbers: LakeNumbers, png: bytes) -> str:
    """One self-contained page: the picture (inline), then each table with its SQL."""
    picture = base64.b64encode(png).decode()
    counts = ", ".join(f"{topic} {n}" for topic, n in numbers.counts.items() if n)
    parts = [
        "<!doctype html>",
        '<html><head><meta charset="utf-8"><title>trajlake lake report</title>',
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Lake report</h1><p>{_e(numbers.root)}, {numbers.made_at:%Y-%m-%d %H:%M} UTC. "
        f"Rows: {_e(counts) or 'none yet'}. Accepted samples: Submitted rollouts with "
        f"recall &ge; {numbers.min_recall:g}.</p>",
        f'<img src="data:image/png;base64,{picture}" alt="lake report">',
    ]
    for table in numbers.tables.values():
        head = "".join(f"<th>{_e(c)}</th>" for c in table.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{_e(cell(v))}</td>" for v in row) + "</tr>" for row in table.rows
        )
        empty = "" if table.rows else f'<tr><td colspan="{len(table.columns)}">no rows</td></tr>'
        parts += [
            f"<h2>{_e(table.title)}</h2><p>{_e(table.about)}</p>",
            f'<table id="{table.id}"><tr>{head}</tr>{body}{empty}</table>',
            f"<details><summary>SQL</summary><pre>{_e(table.sql)}</pre></details>",
        ]
    return "\n".join([*parts, "</body></html>"]) + "\n"


def cell(value: Any) -> str:
    """How a value shows in the page: numbers to at most 4 decimals, null as an empty cell."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)


def _e(text: str) -> str:
    return html.escape(str(text))


_CSS = (
    "body{font-family:sans-serif;margin:2em;max-width:110em}img{max-width:100%}"
    "table{border-collapse:collapse;margin-bottom:.5em}"
    "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
    "pre{background:#f4f4f4;padding:.5em}"
)
