"""The Parquet lake on a temp dir: real Parquet files, real DuckDB views, real records."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import shutil
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from trajlake.errors import LakeError, SchemaError
from trajlake.lake import Lake, compact, connect, run_sql
from trajlake.lake.files import partition_dir, repo_slug
from trajlake.lake.store import events_table
from trajlake.schemas import (
    TOPICS,
    CommitEvent,
    DeadLetter,
    Event,
    RolloutEvent,
    SampleEvent,
    TaskEvent,
    VerdictEvent,
    make_event_id,
    table_name,
)

pytestmark = pytest.mark.unit

REPO_A = "https://github.com/acme/widgets.git"
REPO_B = "github.com/other/widgets"
T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
DAY = dt.date(2024, 5, 1)


def task(i: int, repo: str = REPO_A, seconds: int = 0, request: str = "") -> TaskEvent:
    return TaskEvent(
        event_id=make_event_id("task", i),
        parent_ids=[make_event_id("commit", i)],
        created_at=T0 + dt.timedelta(seconds=seconds),
        stage="function_sampler",
        repo=repo,
        commit="c0ffee",
        function_file="src/widgets/core.py",
        function_name=f"Widget.method_{i}",
        line_start=10,
        line_end=20 + i,
        change_type="error handling",
        request=request or f"The issue may be in Widget.method_{i} or code it calls.",
        attempt=1 + i % 3,
    )


def rollout(i: int, repo: str = REPO_A, seconds: int = 0) -> RolloutEvent:
    return RolloutEvent(
        event_id=make_event_id("t1", i),
        created_at=T0 + dt.timedelta(seconds=seconds),
        stage="rollout_t1",
        repo=repo,
        rollout="t1",
        task_id=make_event_id("task", i),
        request="fix it",
        messages_json=json.dumps([{"role": "assistant", "content": "x" * (i * 7)}]),
        patch=f"--- a/f.py\n+++ b/f.py\n+line {i}\n",
        exit_status="Submitted",
        steps=i,
        cost_usd=0.25 * i,
        self_eval="yes" if i % 2 else "no",
    )


def one_of_each() -> dict[str, Event]:
    """A record for every record type, with lists, nulls, bytes and literals."""
    common = {"created_at": T0, "repo": REPO_A, "stage": "s"}
    return {
        "commits": CommitEvent(
            event_id="c1", branch="main", parents=["p1", "p2"], committed_at=None, **common
        ),
        "tasks": task(1),
        "rollouts.t2": rollout(2).model_copy(update={"rollout": "t2", "pr_id": "pr"}),
        "verdicts": VerdictEvent(
            event_id="v1",
            task_id="t",
            t1_id="a",
            t2_id="b",
            matched=0,
            total=0,
            recall=None,
            label="empty",
            **common,
        ),  # fmt: skip
        "samples": SampleEvent(
            event_id="s1",
            rollout_id="r",
            rollout="t1",
            task_id="t",
            tokenizer="tok",
            message_tokens=[3, 5],
            budgets=[32768],
            truncation_ratios=[0.5],
            **common,
        ),  # fmt: skip
        "dlq": DeadLetter(
            event_id="d1",
            source_topic="tasks",
            source_partition=0,
            source_offset=7,
            error_type="SchemaError",
            error="bad",
            payload=b"\x00\xffraw",
            **common,
        ),  # fmt: skip
    }


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def one(con: duckdb.DuckDBPyConnection, sql: str) -> tuple:
    (row,) = con.sql(sql).fetchall()
    return row


def view_state(root: Path) -> dict[str, tuple[object, list[dict]]]:
    """Per view: (count, sum of hashes of event_id) and every row ordered by event_id."""
    con = connect(root)
    try:
        state = {}
        for topic in TOPICS:
            t = table_name(topic)
            agg = one(con, f"SELECT count(*), sum(hash(event_id)) FROM {t}")
            rows = con.sql(f"SELECT * FROM {t} ORDER BY event_id").to_arrow_table().to_pylist()
            state[t] = (agg, rows)
        return state
    finally:
        con.close()


def test_write_then_read_through_view(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    events = [task(0), task(1, repo=REPO_B), task(2)]
    paths = lake.write("tasks", events, "function_sampler-tasks-p0-o000000000042", date=DAY)

    expected = {
        tmp_path / "tasks" / f"repo={repo_slug(r)}" / "date=2024-05-01" / name
        for r in (REPO_A, REPO_B)
        for name in ["function_sampler-tasks-p0-o000000000042.parquet"]
    }
    assert set(paths) == expected
    assert files_under(tmp_path) == sorted(expected)
    by_repo = {p: pq.read_table(p).column("repo").to_pylist() for p in paths}
    assert sorted(sum(by_repo.values(), [])) == sorted([REPO_A, REPO_B, REPO_A])
    assert all(len(set(repos)) == 1 for repos in by_repo.values())

    for p in paths:
        meta = pq.ParquetFile(p).metadata
        codecs = {meta.row_group(0).column(i).compression for i in range(meta.num_columns)}
        assert codecs == {"ZSTD"}

    assert lake.read_events("tasks") == sorted(events, key=lambda e: e.event_id)
    assert lake.read_events("tasks", "repo = ? AND line_end > ?", [REPO_A, 21]) == [task(2)]
    con = lake.connect()
    assert one(con, "SELECT count(*) FROM tasks") == (3,)
    con.close()


@pytest.mark.parametrize("topic", ["commits", "tasks", "rollouts.t2", "verdicts", "samples", "dlq"])
def test_every_record_type_round_trips(tmp_path: Path, topic: str) -> None:
    event = one_of_each()[topic]
    Lake(tmp_path).write(topic, [event], "roundtrip", date=DAY)
    assert Lake(tmp_path).read_events(topic) == [event]


def test_date_defaults_to_today_utc(tmp_path: Path) -> None:
    (path,) = Lake(tmp_path).write("tasks", [task(0)], "today")
    today = dt.datetime.now(dt.timezone.utc).date()
    assert path.parent.name in {f"date={today}", f"date={today - dt.timedelta(days=1)}"}


def test_repo_slugs_are_safe_readable_and_unique() -> None:
    a, b = repo_slug(REPO_A), repo_slug(REPO_B)
    assert a.startswith("widgets-") and b.startswith("widgets-") and a != b
    assert repo_slug("") == "_none"
    weird = repo_slug("git@host:team/we ird/na:me..git/")
    assert "/" not in weird and " " not in weird and ":" not in weird
    assert repo_slug("/") != "" and repo_slug(REPO_A) == a


def test_wrong_record_type_raises_and_writes_nothing(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    commit = one_of_each()["commits"]
    with pytest.raises(SchemaError, match="CommitEvent.*TaskEvent"):
        lake.write("tasks", [task(0), commit], "mixed", date=DAY)
    with pytest.raises(SchemaError, match="no record type for topic"):
        lake.write("nope", [task(0)], "unknown", date=DAY)
    assert files_under(tmp_path) == []


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydantic warns when dumping a bad value
def test_record_violating_schema_raises_and_writes_nothing(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    missing = TaskEvent.model_construct(event_id="x", stage="s", created_at=T0)
    with pytest.raises(SchemaError, match="record 1: TaskEvent: field function_file"):
        lake.write("tasks", [task(0), missing], "bad", date=DAY)
    bad_attempt = task(1).model_copy(update={"attempt": 0})  # model_copy skips validation
    with pytest.raises(SchemaError, match="field attempt"):
        lake.write("tasks", [bad_attempt], "bad", date=DAY)
    with pytest.raises(SchemaError, match="line_start"):
        lake.write("tasks", [task(2).model_copy(update={"line_start": "ten"})], "bad", date=DAY)
    assert files_under(tmp_path) == []


def test_bad_file_names_are_refused(tmp_path: Path) -> None:
    for name in ["../escape", "a/b", ".hidden", "x.parquet", "compacted-abc", ""]:
        with pytest.raises(LakeError):
            Lake(tmp_path).write("tasks", [task(0)], name, date=DAY)
    assert files_under(tmp_path) == []


def test_rewriting_a_name_overwrites(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    lake.write("tasks", [task(0), task(1)], "sampler-p0-o1", date=DAY)
    lake.write("tasks", [task(0, seconds=5), task(1, seconds=5)], "sampler-p0-o1", date=DAY)
    assert len(files_under(tmp_path)) == 1
    assert [e.created_at for e in lake.read_events("tasks")] == [T0 + dt.timedelta(seconds=5)] * 2


def test_same_event_in_two_files_appears_once_earliest_wins(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    lake.write("tasks", [task(0, seconds=10, request="later")], "a", date=DAY)
    lake.write("tasks", [task(0, seconds=1, request="first")], "b", date=DAY)
    lake.write("tasks", [task(0, seconds=20, request="latest")], "c", date=DAY + dt.timedelta(1))
    assert len(files_under(tmp_path)) == 3
    assert [e.request for e in lake.read_events("tasks")] == ["first"]
    con = lake.connect()
    assert one(con, "SELECT count(*) FROM tasks") == (1,)
    con.close()


def test_leftover_temp_file_is_invisible(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    (path,) = lake.write("tasks", [task(0)], "ok", date=DAY)
    (other,) = lake.write("rollouts.t1", [rollout(1)], "r", date=DAY)
    # A crash before the rename leaves a complete file under its temporary name.
    shutil.copy(path, path.with_name("ok.parquet.tmp-0123456789abcdef"))
    other.replace(other.with_name("r.parquet.tmp-feedfacecafebeef"))

    con = connect(tmp_path)
    assert one(con, "SELECT count(*) FROM tasks") == (1,)
    assert one(con, "SELECT count(*) FROM rollouts_t1") == (0,)
    assert con.table("rollouts_t1").columns == RolloutEvent.arrow_schema().names
    con.close()
    assert lake.read_events("tasks") == [task(0)]


def test_every_topic_has_a_view_without_files(tmp_path: Path) -> None:
    con = connect(tmp_path / "empty-lake")
    for topic, cls in TOPICS.items():
        rel = con.table(table_name(topic))
        assert rel.columns == cls.arrow_schema().names
        assert one(con, f"SELECT count(*) FROM {table_name(topic)}") == (0,)
    con.close()
    assert not tmp_path.joinpath("empty-lake").exists()
    assert list(tmp_path.rglob("*.duckdb")) == []


def fill_small_files(lake: Lake) -> None:
    """Many small files over two repos and two dates, with duplicate event ids."""
    for n in range(6):
        day = DAY + dt.timedelta(days=n % 2)
        repos = (REPO_A, REPO_B)
        tasks = [task(i, repos[i % 2], seconds=n, request=f"v{n}") for i in range(n, n + 4)]
        lake.write("tasks", tasks, f"sampler-p0-o{n:04d}", date=day)
        rollouts = [rollout(i, repo=REPO_A, seconds=10 - n) for i in range(n, n + 3)]
        lake.write("rollouts.t1", rollouts, f"rollout-p0-o{n:04d}", date=day)
    lake.write("commits", [one_of_each()["commits"]], "single", date=DAY)


def test_compaction_keeps_every_view_unchanged(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    fill_small_files(lake)
    before_files = files_under(tmp_path)
    before = view_state(tmp_path)

    report = compact(tmp_path)

    after_files = files_under(tmp_path)
    assert view_state(tmp_path) == before
    assert len(after_files) == 2 + 1 + 1  # one per repository: tasks 2, rollouts 1, commits 1
    assert report.tables["tasks"].files_before == 12 and report.tables["tasks"].files_after == 2
    assert report.tables["rollouts_t1"].rows_before == 18
    assert report.tables["rollouts_t1"].rows_after == 8  # 8 distinct ids over both dates
    assert report.tables["commits"].files_after == report.tables["commits"].files_before == 1
    assert len(before_files) == 19 and all(".tmp-" not in p.name for p in after_files)

    lines = str(report).splitlines()
    assert any(line.startswith("tasks ") and "12 -> 2 files" in line for line in lines)

    second = compact(tmp_path)
    assert files_under(tmp_path) == after_files
    assert second.files_removed == 0 and second.rows_removed == 0
    assert all(t.repos_compacted == 0 for t in second.tables.values())


def test_crash_between_rename_and_delete_changes_no_answer(tmp_path: Path) -> None:
    root, saved = tmp_path / "lake", tmp_path / "saved"
    fill_small_files(Lake(root))
    before = view_state(root)
    shutil.copytree(root, saved)

    compact(root, tables=["rollouts.t1"])
    # Put the inputs back next to the merged file: as if the deletes never happened.
    shutil.copytree(saved / "rollouts_t1", root / "rollouts_t1", dirs_exist_ok=True)
    assert len(files_under(root / "rollouts_t1")) == 7
    assert view_state(root) == before

    report = compact(root, tables=["rollouts_t1"])
    assert list(report.tables) == ["rollouts_t1"]
    assert report.tables["rollouts_t1"].files_after == 1
    assert view_state(root) == before
    with pytest.raises(LakeError, match="unknown lake tables"):
        compact(root, tables=["nope"])


def test_a_file_without_a_current_column_is_named_and_compaction_upgrades_it(
    tmp_path: Path,
) -> None:
    lake = Lake(tmp_path)
    lake.write("tasks", [task(1)], "new", date=DAY)
    old = events_table("tasks", [task(2, REPO_B)]).drop_columns(["unparsed_files"])  # older
    alone = partition_dir(tmp_path, "tasks", REPO_B, DAY)  # its repository's only file
    alone.mkdir(parents=True)
    pq.write_table(old, alone / "old.parquet")
    with pytest.raises(LakeError, match="old.parquet.*run `trajlake lake compact`"):
        run_sql(tmp_path, "SELECT max(unparsed_files) FROM tasks", "csv")
    assert compact(tmp_path).tables["tasks"].repos_compacted == 1  # only the old file
    rows = run_sql(tmp_path, "SELECT line_end, unparsed_files FROM tasks ORDER BY 1", "csv")
    assert rows.splitlines() == ["line_end,unparsed_files", "21,0", "22,"]


def test_run_sql_formats(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    lake.write("rollouts.t1", [rollout(i) for i in range(1, 4)], "r", date=DAY)
    sql = "SELECT event_id, steps, messages_json, cost_usd FROM rollouts_t1 ORDER BY steps"

    rows = list(csv.DictReader(io.StringIO(run_sql(tmp_path, sql, "csv"))))
    assert [r["steps"] for r in rows] == ["1", "2", "3"]
    assert json.loads(rows[2]["messages_json"]) == json.loads(rollout(3).messages_json)

    lines = run_sql(tmp_path, sql, "json").splitlines()
    assert [json.loads(line)["event_id"] for line in lines] == [
        rollout(i).event_id for i in (1, 2, 3)
    ]

    table = run_sql(tmp_path, sql, "table")
    assert table.splitlines()[0].split(" | ")[:2] == ["event_id" + " " * 24, "steps"]
    assert "…" in table and "(3 rows)" in table
    data = table.splitlines()[2:-1]
    assert len(data) == 3 and max(len(c) for line in data for c in line.split(" | ")) <= 40

    out = tmp_path / "out" / "result.parquet"
    assert run_sql(tmp_path, sql, "parquet", output=out) is None
    assert pq.read_table(out).column("steps").to_pylist() == [1, 2, 3]


def test_run_sql_errors(tmp_path: Path) -> None:
    with pytest.raises(LakeError, match="--output"):
        run_sql(tmp_path, "SELECT 1", "parquet")
    with pytest.raises(LakeError, match="no_such_table"):
        run_sql(tmp_path, "SELECT * FROM no_such_table", "table")
    with pytest.raises(LakeError, match="syntax error"):
        run_sql(tmp_path, "SELEC 1", "csv")
    with pytest.raises(LakeError, match="unknown output format"):
        run_sql(tmp_path, "SELECT 1", "xml")  # type: ignore[arg-type]
