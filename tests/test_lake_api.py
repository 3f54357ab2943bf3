"""`trajlake.open`: the demo lake from Python, checked against `trajlake sql` and the built files.

The lake is the session's demo (copied: mixtures are built into it); every expectation comes
from the CLI or from the files on disk, not from the API under test.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
import yaml

import trajlake
from trajlake.cli import main
from trajlake.config import load_config
from trajlake.errors import LakeError
from trajlake.lake.mixture_export import MixtureError

pytestmark = pytest.mark.integration

COLUMNS = "rollout_id, rollout, repo, teacher_id, exit_status, matched, total, recall, patch_lines"


@pytest.fixture(scope="module")
def demo(demo_copy, tmp_path_factory):
    return demo_copy(tmp_path_factory.mktemp("api"))


def cli(config_file, *args: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["--config", str(config_file), *args])
    assert rc == 0, err.getvalue()
    return out.getvalue()


def cli_rows(config_file, sql: str) -> pl.DataFrame:
    """`trajlake sql … --format csv`, every cell as the text the CLI printed."""
    text = cli(config_file, "sql", sql, "--format", "csv")
    return pl.read_csv(io.StringIO(text), infer_schema=False)


def as_text(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select(pl.all().cast(pl.String))


def test_trajectories_as_a_polars_frame_hold_the_rows_trajlake_sql_prints(demo):
    expected = cli_rows(demo.config_file, f"SELECT {COLUMNS} FROM trajectories ORDER BY 1")
    assert expected.height > 0 and set(expected["rollout"]) == {"t1", "t2"}

    with trajlake.open(demo.config_file) as lake:
        frame = lake.table("trajectories")
        assert isinstance(frame, pl.LazyFrame)
        got = frame.select(COLUMNS.split(", ")).sort("rollout_id").collect()
        assert as_text(got).equals(expected)
        everything = frame.collect()
        assert everything.height == expected.height
        assert everything["rollout_id"].n_unique() == expected.height  # one row per rollout
        assert "messages_json" in everything.columns

        by_sql = lake.sql(f"SELECT {COLUMNS} FROM trajectories ORDER BY 1")
        assert as_text(by_sql.pl()).equals(expected)
        assert by_sql.to_arrow_table().num_rows == by_sql.df().shape[0] == expected.height
        assert by_sql.arrow().read_all().column_names == COLUMNS.split(", ")


def test_every_view_of_trajlake_sql_is_a_table(demo):
    with trajlake.open(demo.config_file) as lake:
        assert {"trajectories", "teacher_compare", "rollouts_t1", "verdicts", "dlq"} <= set(
            lake.views()
        )
        for view in ("tasks", "verdicts", "teacher_compare"):
            count = lake.table(view).select(pl.len()).collect().item()
            assert (
                str(count)
                == cli_rows(demo.config_file, f"SELECT count(*) AS n FROM {view}")["n"].item()
            )
        with pytest.raises(LakeError, match="no view 'trajectory'.*trajectories"):
            lake.table("trajectory")
        with pytest.raises(LakeError, match="SQL failed"):
            lake.sql("SELECT nope FROM tasks")


def test_open_a_lake_root_or_nothing(demo, tmp_path):
    root = load_config(demo.config_file).lake.root
    with trajlake.open(root) as lake:
        assert lake.sql("SELECT count(*) FROM trajectories").fetchall()[0][0] > 0
    with pytest.raises(LakeError, match="no config file or lake directory"):
        trajlake.open(tmp_path / "missing.yaml")


def test_a_mixture_built_by_the_cli_and_by_python_reads_back_as_written(demo):
    spec = demo.workdir / "mixture.yaml"
    cli(demo.config_file, "mixture", "build", str(spec))
    with trajlake.open(demo.config_file) as lake:
        built = lake.mixture("demo")
        on_disk = pq.read_table(lake.mixture_dir("demo") / "data.parquet")
        assert built.height == on_disk.num_rows > 0
        assert built.columns == on_disk.column_names
        assert built["sample_id"].to_list() == on_disk.column("sample_id").to_pylist()

        again = lake.build_mixture(yaml.safe_load(spec.read_text()) | {"name": "demo-again"})
        assert again.equals(built)  # the same spec and seed under another name
        assert (lake.mixtures_root / "demo-again" / "manifest.json").is_file()
        with pytest.raises(MixtureError, match="build one with"):
            lake.mixture("not-built")


def test_import_trajlake_loads_no_lake():
    code = "import sys, trajlake; print(sorted({'duckdb', 'polars'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_readme_example_runs_on_the_demo(demo_copy, tmp_path, monkeypatch):
    """README's "From Python" block, as written, next to a copy of `trajlake demo`."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = readme.split("## From Python", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    demo_copy(tmp_path)  # tmp_path/trajlake-demo, where the example looks
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - our own documentation
    assert isinstance(scope["samples"], pl.DataFrame) and scope["samples"].height > 0
