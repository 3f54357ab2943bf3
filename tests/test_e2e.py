"""The whole SVG pipeline: commits → tasks → T1 → PR → T2 → verdict → samples, on both buses.

Real git repository, real bubblewrap sandboxes, real lake and bus; the teacher is the scripted
double over HTTP. Its script reproduces the change fully for functions named n-z (recall 1.0)
and half of it for a-m (recall 0.5), so the verdicts are known in advance.
"""

from __future__ import annotations

import pytest
from helpers import bus_overrides

from trajlake.demo import QUERIES, run_demo
from trajlake.lake import Lake
from trajlake.schemas import TOPICS, table_name
from trajlake.teacher.double import serve

pytestmark = pytest.mark.e2e

SECRET = "sk-e2e-0123456789abcdefSECRET"

LINEAGE = """
SELECT t.event_id AS task, t.function_name, r1.self_eval, p.event_id AS pr, r2.event_id AS t2,
       v.label, v.recall, v.matched, v.total,
       (SELECT count(*) FROM samples s WHERE s.rollout_id IN (r1.event_id, r2.event_id)) AS samples
  FROM tasks t
  JOIN rollouts_t1 r1 ON r1.task_id = t.event_id
  JOIN prs p ON p.t1_id = r1.event_id
  JOIN rollouts_t2 r2 ON r2.pr_id = p.event_id
  JOIN verdicts v ON v.t2_id = r2.event_id
 ORDER BY t.function_name
"""


def test_every_task_has_its_whole_lineage_and_a_rerun_adds_nothing(
    bus_config, tmp_path, monkeypatch
):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)  # sent to the teacher, never stored
    result = run_demo(tmp_path / "demo", bus_overrides(bus_config))
    lake = Lake(result.config.lake.root)
    con = lake.connect()

    tasks = con.execute("SELECT count(*) FROM tasks").fetchone()[0]
    rows = con.execute(LINEAGE).fetchall()
    assert tasks >= 5 and len(rows) == tasks  # every task went all the way
    for _, name, self_eval, _, _, label, recall, matched, total, samples in rows:
        partial = name.split(".")[-1][0].lower() < "n"  # the script's a-m rule, see its docs
        expected = ("soft", 0.5, 1, 2) if partial else ("hard", 1.0, 2, 2)
        assert (label, recall, matched, total) == expected, name
        assert self_eval == "yes" and samples == 2
    assert result.counts["dlq"] == 0
    for _, query in QUERIES:  # the queries the demo suggests all run
        con.execute(query).fetchall()
    for topic in TOPICS:  # the API key reached the teacher but no table
        assert SECRET not in str(con.sql(f"SELECT * FROM {table_name(topic)}").to_arrow_table())

    if bus_config.kind == "embedded":
        before = lake.counts()
        again = run_demo(tmp_path / "demo", bus_overrides(bus_config))
        assert again.counts == before


def test_a_failing_teacher_gives_dead_letters_not_failure_rows(tmp_path):
    """It answers GET /models, so the preflight passes, then fails every call (HTTP 503): an
    outage, so every task becomes a dead letter to re-drive, and no rollout row records it."""
    script = tmp_path / "failing.yaml"
    script.write_text(
        "model: teacher\nsessions:\n  - name: down\n    match: '.'\n    match_on: all\n"
        "    fail: {status: 503, times: 1000}\n    turns: [{content: never}]\n"
    )
    with serve(script) as failing:
        result = run_demo(
            tmp_path / "demo",
            [
                f"teacher.base_url={failing.url}",
                "teacher.max_retries=1",
                "runner.outage_patience_s=0.5",
            ],
        )
    con = Lake(result.config.lake.root).connect()
    assert result.counts["rollouts.t1"] == 0 and result.counts["prs"] == 0
    letters = con.execute("SELECT stage, error_type, error FROM dlq").fetchall()
    assert len(letters) == result.counts["tasks"]  # one per task, none lost
    assert all(
        (stage, kind) == ("rollout1", "TeacherUnavailable") and "HTTP 503" in error
        for stage, kind, error in letters
    )
