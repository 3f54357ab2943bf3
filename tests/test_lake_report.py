"""`trajlake report`: the PNG and the HTML page, whose numbers are recomputed here from the lake.

The lake is a copy of the session's demo plus four dead letters written to it here (the demo
has none), so that every table of the page has rows. Expectations come from Polars over the
lake's tables (`trajlake.open`), SQL over its views, or the dead letters this file wrote.
"""

from __future__ import annotations

import base64
import contextlib
import io
import math
import re
import struct
from html.parser import HTMLParser

import polars as pl
import pytest

import trajlake
from trajlake.cli import main
from trajlake.config import load_config
from trajlake.lake import Lake
from trajlake.lake.lake_report import write_lake_report
from trajlake.schemas import DeadLetter, make_event_id

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: (stage, error_type, source offset) of the dead letters written: verifier fails one input twice
LETTERS = [("verifier", "ValueError", 1), ("verifier", "ValueError", 1),
           ("verifier", "KeyError", 2), ("filter", "MalformedTrajectory", 3)]  # fmt: skip


class Tables(HTMLParser):
    """Each <table id=…> of a page: its rows of cell texts, the header row first."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: list[list[str]] | None = None
        self._cell: list[str] | None = None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._table = self.tables.setdefault(dict(attrs)["id"], [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._table[-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def rows(page: Tables, table: str, key: int) -> dict[tuple[str, ...], dict[str, str]]:
    """A table's rows by their first `key` cells, each as {column: cell}."""
    header, *body = page.tables[table]
    return {tuple(row[:key]): dict(zip(header, row, strict=True)) for row in body}


def near(cell: str, value: float | int | None) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return cell == ""
    return math.isclose(float(cell), value, abs_tol=6e-4)


@pytest.fixture(scope="module")
def demo(demo_copy, tmp_path_factory):
    demo = demo_copy(tmp_path_factory.mktemp("report"))
    root = load_config(demo.config_file).lake.root
    letters = [
        DeadLetter(event_id=make_event_id("report-test", str(i)), parent_ids=[], stage=stage,
                   repo="sample-repo", repo_url="", commit="c" * 40, teacher_id="",
                   config_hash="", scaffold_id="", source_topic="rollouts.t2", source_partition=0,
                   source_offset=offset, error_type=error_type, error="boom", payload=b"{}")
        for i, (stage, error_type, offset) in enumerate(LETTERS)
    ]  # fmt: skip
    Lake(root).write("dlq", letters, "report-test")
    return demo


@pytest.mark.integration
def test_report_writes_the_picture_and_a_page_with_the_lakes_numbers(demo):
    out = demo.workdir / "reports"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        args = ["report", "--out", str(out), "--min-recall", "0.9"]
        assert main(["--config", str(demo.config_file), *args]) == 0
    png, page = (out / "lake-report.png").read_bytes(), (out / "lake-report.html").read_text()
    assert png[:8] == PNG_MAGIC and "lake-report.html" in stdout.getvalue()
    width, height = struct.unpack(">II", png[16:24])
    assert width > height >= 500
    [inline] = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert base64.b64decode(inline) == png
    tables = Tables(page)

    lake = trajlake.open(demo.config_file)
    rollouts = pl.concat([lake.table("rollouts_t1"), lake.table("rollouts_t2")]).collect()
    trajectories = lake.table("trajectories").collect()
    activity = rows(tables, "activity", 1)
    for repo, group in rollouts.group_by("repo"):
        tasks = lake.table("tasks").filter(pl.col("repo") == repo[0]).collect().height
        shown = activity[repo]
        assert (int(shown["tasks"]), int(shown["t1"]) + int(shown["t2"])) == (tasks, group.height)

    recall = rows(tables, "recall", 2)
    verdicts = lake.table("verdicts").collect()
    for (teacher, scaffold), group in verdicts.group_by("teacher_id", "scaffold_id"):
        shown = recall[(teacher, scaffold)]
        assert near(shown["mean"], group["recall"].mean())
        assert near(shown["median"], group["recall"].median())
        assert int(shown["hard"]) == (group["label"] == "hard").sum()
        assert int(shown["verdicts"]) == group.height

    measured = trajectories.select("budgets", "truncation_ratios").explode(
        "budgets", "truncation_ratios"
    )
    truncation = rows(tables, "truncation", 1)
    assert len(truncation) == measured["budgets"].n_unique() == 3
    for (budget,), group in measured.drop_nulls().group_by("budgets"):
        shown = truncation[(str(budget),)]
        assert near(shown["mean"], group["truncation_ratios"].mean())
        assert int(shown["fit_whole"]) == (group["truncation_ratios"] == 1).sum()

    patches = rows(tables, "patches", 1)
    for (rollout,), group in trajectories.drop_nulls("patch_lines").group_by("rollout"):
        lines = sorted(group["patch_lines"])
        assert int(patches[(rollout,)]["max"]) == lines[-1]
        assert int(patches[(rollout,)]["rollouts"]) == len(lines)

    exits = rows(tables, "exits", 2)
    counted = rollouts.group_by("rollout", "exit_status").len()
    assert {k: int(v["rollouts"]) for k, v in exits.items()} == {
        (r, s): n for r, s, n in counted.iter_rows()
    }

    spend = rows(tables, "spend", 1)
    for (teacher,), group in rollouts.group_by("teacher_id"):
        tokens = (group["prompt_tokens"] + group["completion_tokens"]).sum()
        accepted = trajectories.filter(
            (pl.col("teacher_id") == teacher)
            & (pl.col("exit_status") == "Submitted")
            & (pl.col("recall") >= 0.9)
        ).height
        shown = spend[(teacher,)]
        assert 0 < accepted < group.height  # the threshold mattered
        assert (int(shown["tokens"]), int(shown["accepted"])) == (tokens, accepted)
        half_up = math.floor(tokens / accepted + 0.5)  # SQL's round; Python's rounds to even
        assert near(shown["tokens_per_accepted"], half_up)

    tested = rows(tables, "tests", 1)
    outcomes = ("ok", "broken", "flaky", "timeout_or_error", "no_tests", "untested")
    labels = trajectories.with_columns(pl.col("label").fill_null("(no verdict)"))
    for (label,), group in labels.group_by("label"):
        shown = tested[(label,)]
        assert int(shown["rollouts"]) == group.height == sum(int(shown[o]) for o in outcomes)
        statuses = group["tests_status"].fill_null("untested").value_counts()
        for status, n in statuses.iter_rows():
            column = "timeout_or_error" if status in ("timeout", "error") else status
            assert int(shown[column]) >= n > 0

    dead = rows(tables, "dead_letters", 2)
    assert {k: (int(v["dead_letters"]), int(v["inputs"])) for k, v in dead.items()} == {
        ("filter", "MalformedTrajectory"): (1, 1),
        ("verifier", "KeyError"): (1, 1),
        ("verifier", "ValueError"): (2, 1),
    }
    lake.close()


@pytest.mark.unit
def test_an_empty_lake_gets_a_report_that_says_so(tmp_path):
    png, page = write_lake_report(tmp_path / "lake", tmp_path / "out")
    assert png.read_bytes()[:8] == PNG_MAGIC
    tables = Tables(page.read_text())
    assert len(tables.tables) == 8
    for table in tables.tables.values():
        assert table[1] == ["no rows"], table
