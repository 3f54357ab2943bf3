"""Mixtures: SQL over a lake the demo pipeline filled, to training data in the agent's format.

The lake is real (two repositories through the whole pipeline, with the scripted teacher), the
build is the real `trajlake mixture build`, and every expectation is recomputed from the lake
with plain SQL rather than written down.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from trajlake.cli import main
from trajlake.config import load_config
from trajlake.demo import run_demo
from trajlake.lake import connect
from trajlake.lake.mixture_spec import load_spec
from trajlake.lake.mixture_sql import mixture_sql
from trajlake.lake.mixtures import lake_files
from trajlake.repos import Registry

pytestmark = pytest.mark.mixture

TARGET, OTHER = "sample-repo", "other-repo"


@pytest.fixture(scope="module")
def demo(demo_once, demo_copy, tmp_path_factory):
    """`trajlake demo` (the session's, copied), then a second repository (a clone) through the
    same pipeline."""
    assert f"trajlake --config {demo_once.config_file} mixture build" in demo_once.output
    copied = demo_copy(tmp_path_factory.mktemp("mixture"))
    workdir, config_file = copied.workdir, copied.config_file
    config = load_config(config_file)
    other = workdir / OTHER
    subprocess.run(["git", "clone", "-q", str(workdir / TARGET), str(other)], check=True)
    Registry(config.producer.registry, config.producer.mirrors).add(
        str(other), branch="main", name=OTHER, backfill=3
    )
    run_demo(workdir)
    return workdir, config_file, config


def cli(config_file, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["--config", str(config_file), *args])
    return rc, out.getvalue(), err.getvalue()


def write_spec(path, **changes):
    spec = {
        "name": "mix",
        "seed": 5,
        "context_budget": 2048,
        "specialization": {"repos": [TARGET], "ratio": 0.5},
        "sources": [
            {"name": "t2-soft", "rollout": "t2", "min_recall": 0.5, "count": 6},
            {"name": "t1-small", "rollout": "t1", "max_patch_lines": 40, "count": 6},
        ],
    } | changes
    path.write_text(yaml.safe_dump(spec))
    return path


def available(con, condition: str, repo_is_target: bool) -> int:
    """Distinct patches a source could take from one side, counted straight from the lake."""
    side = "=" if repo_is_target else "<>"
    return con.execute(
        f"SELECT count(DISTINCT (repo, rollout, coalesce(nullif(patch_hash, ''), rollout_id))) "
        f"FROM trajectories WHERE {condition} AND repo {side} '{TARGET}' "
        "AND truncation_ratios[list_position(budgets, 2048)] > 0"
    ).fetchone()[0]


def test_build_counts_order_seed_and_manifest(demo, tmp_path):
    workdir, config_file, config = demo
    spec_file = write_spec(tmp_path / "spec.yaml")
    rc, out, err = cli(config_file, "mixture", "build", str(spec_file))
    assert rc == 0, err
    directory = workdir / "data" / "mixtures" / "mix"
    rows = pq.read_table(directory / "data.parquet").to_pylist()
    manifest = json.loads((directory / "manifest.json").read_text())

    con = connect(config.lake.root)
    conditions = {
        "t2-soft": "rollout = 't2' AND recall >= 0.5",
        "t1-small": "rollout = 't1' AND patch_lines <= 40",
    }
    for source, condition in conditions.items():
        for target in (True, False):
            expected = min(3, available(con, condition, target))
            got = sum(1 for r in rows if r["source"] == source and r["target_repo"] is target)
            assert got == expected > 0, (source, target)
            key = "target_selected" if target else "other_selected"
            assert manifest["counts"][source][key] == expected
    assert manifest["samples"] == len(rows) == 12
    assert {r["repo"] for r in rows} == {TARGET, OTHER}

    lake = {
        r[0]: r[1:]
        for r in con.execute(
            "SELECT rollout_id, recall, patch_lines, rollout FROM trajectories"
        ).fetchall()
    }
    for row in rows:
        recall, patch_lines, rollout = lake[row["sample_id"]]
        assert (recall >= 0.5) if row["source"] == "t2-soft" else (patch_lines <= 40)
        assert rollout == row["rollout"]
    ratios = [r["truncation_ratio"] for r in rows]
    assert ratios == sorted(ratios, reverse=True)  # fully fitting first, then highest ratio
    assert 1.0 in ratios and min(ratios) < 1.0  # the demo's T1s do not fit 2048 tokens

    assert manifest["sql"] == mixture_sql(load_spec(spec_file)).strip()
    assert manifest["seed"] == 5 and manifest["config_hash"] == config.hash()
    assert manifest["lake_files"] == lake_files(config.lake.root) != []
    assert (directory / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    copy = tmp_path / "first"
    shutil.copytree(directory, copy)
    assert cli(config_file, "mixture", "build", str(spec_file))[0] == 2  # exists: no overwrite
    assert cli(config_file, "mixture", "build", str(spec_file), "--force")[0] == 0
    for name in ("data.parquet", "data.jsonl", "manifest.json"):
        assert (directory / name).read_bytes() == (copy / name).read_bytes(), name


def test_samples_are_rendered_for_training(demo, tmp_path):
    workdir, config_file, config = demo
    spec_file = write_spec(tmp_path / "spec.yaml", name="rendered")
    assert cli(config_file, "mixture", "build", str(spec_file))[0] == 0
    directory = workdir / "data" / "mixtures" / "rendered"
    rows = pq.read_table(directory / "data.parquet").to_pylist()
    jsonl = [json.loads(line) for line in (directory / "data.jsonl").read_text().splitlines()]
    assert [r["sample_id"] for r in jsonl] == [r["sample_id"] for r in rows]
    assert jsonl[0]["messages"] == rows[0]["messages"]

    con = connect(config.lake.root)
    for row in rows:
        (recorded,) = con.execute(
            "SELECT messages_json FROM trajectories WHERE rollout_id = ?", [row["sample_id"]]
        ).fetchone()
        recorded = json.loads(recorded)
        messages = row["messages"]
        assert [m["train"] for m in messages] == [m["role"] == "assistant" for m in messages]
        assert messages[-1]["role"] == "assistant"
        assert row["kept_messages"] == len(messages) <= len(recorded) == row["messages_total"]
        for kept, original in zip(messages, recorded, strict=False):
            assert kept["content"] == original["content"]
            assert kept["reasoning_content"] == original.get("reasoning_content")
            assert [c["function"] for c in kept["tool_calls"] or []] == [
                c["function"] for c in original.get("tool_calls", [])
            ]
        if row["truncation_ratio"] < 1.0:  # cut: exactly what the filter said fits
            assert len(messages) == round(row["truncation_ratio"] * len(recorded))
        assert json.loads(row["tools"]) == json.loads(
            con.execute(
                "SELECT tools_json FROM trajectories WHERE rollout_id = ?", [row["sample_id"]]
            ).fetchone()[0]
        )


def test_random_order_follows_the_seed(demo, tmp_path):
    _, config_file, config = demo
    con = connect(config.lake.root)
    orders = []
    everything = {"sources": [{"name": "all", "count": 1000}], "dedup_by_patch": False}
    for seed in (1, 1, 2):  # every row is taken, so only the order can change
        spec = write_spec(tmp_path / "s.yaml", order="random", seed=seed, **everything)
        orders.append([r[0] for r in con.execute(mixture_sql(load_spec(spec))).fetchall()])
    assert orders[0] == orders[1] != orders[2]
    assert sorted(orders[0]) == sorted(orders[2])


def test_shortfall_is_reported_per_source(demo, tmp_path):
    _, config_file, _ = demo
    sources = [{"name": "few", "rollout": "t2", "min_recall": 1.0, "count": 500}]
    spec_file = write_spec(tmp_path / "s.yaml", name="short", sources=sources)
    rc, _, err = cli(config_file, "mixture", "build", str(spec_file))
    assert rc == 0  # a short mixture is still built, and says how short it is
    rc, out, again = cli(config_file, "mixture", "show", "short")
    assert rc == 0 and "few" in out and again == err
    con = connect(load_config(config_file).lake.root)
    for side, target in (("target repos", True), ("other repos", False)):
        have = available(con, "rollout = 't2' AND recall >= 1.0", target)
        assert f"source 'few' ({side}): {have} of 250 selected, {250 - have} short" in err
    unsplit = write_spec(tmp_path / "u.yaml", name="short2", sources=sources, specialization=None)
    rc, _, err = cli(config_file, "mixture", "build", str(unsplit))
    have = sum(available(con, "rollout = 't2' AND recall >= 1.0", t) for t in (True, False))
    assert rc == 0 and f"source 'few': {have} of 500 selected, {500 - have} short" in err


def test_spec_errors_name_the_field(demo, tmp_path):
    _, config_file, _ = demo
    bad = {"name": "bad", "sources": [{"name": "a", "count": 1, "share": 0.5}]}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    rc, _, err = cli(config_file, "mixture", "build", str(tmp_path / "bad.yaml"))
    assert rc == 2 and "exactly one of count or share" in err
    spec_file = write_spec(tmp_path / "s.yaml", name="nobudget", context_budget=999)
    rc, _, err = cli(config_file, "mixture", "build", str(spec_file))
    assert rc == 2 and "1024, 2048, 32768" in err


def test_check_passes_on_demo_data_and_fails_on_an_edited_tool_schema(demo, tmp_path):
    workdir, config_file, _ = demo
    assert cli(config_file, "mixture", "build", str(workdir / "mixture.yaml"))[0] == 0
    rc, out, _ = cli(config_file, "mixture", "check", "demo")
    assert rc == 0 and "12 samples match" in out

    directory = workdir / "data" / "mixtures" / "demo"
    edited = tmp_path / "edited"
    shutil.copytree(directory, edited)
    table = pq.read_table(edited / "data.parquet")
    tools = table.column("tools").to_pylist()
    tools[3] = tools[3].replace("Run a bash command", "Run a shell command")
    index = table.schema.get_field_index("tools")
    pq.write_table(table.set_column(index, "tools", pa.array(tools)), edited / "data.parquet")
    rc, out, err = cli(config_file, "mixture", "check", str(edited))
    assert rc == 1
    assert "tools: line" in out and "Run a shell command" in out and "Run a bash command" in out
    assert "1 of 12 samples differ" in err


def test_lake_views_script_runs_in_plain_duckdb(demo):
    _, config_file, config = demo
    rc, script, _ = cli(config_file, "lake", "views")
    assert rc == 0
    con = duckdb.connect()
    con.execute(script)
    plain = con.execute("SELECT count(*), count(recall) FROM trajectories").fetchone()
    ours = (
        connect(config.lake.root)
        .execute("SELECT count(*), count(recall) FROM trajectories")
        .fetchone()
    )
    assert plain == ours and plain[0] > 0


def test_hf_datasets_and_chat_template_render_every_sample(demo, tmp_path):
    datasets = pytest.importorskip("datasets")
    transformers = pytest.importorskip("transformers")
    from trajlake.tokenizer import train_tiny_tokenizer
    from trajlake.training.chat import template_inputs

    workdir, config_file, _ = demo
    spec_file = write_spec(tmp_path / "spec.yaml", name="hf")
    assert cli(config_file, "mixture", "build", str(spec_file))[0] == 0
    data = workdir / "data" / "mixtures" / "hf" / "data.parquet"
    dataset = datasets.load_dataset("parquet", data_files=str(data), split="train")
    assert dataset.num_rows == 12
    texts = [m["content"] or "" for row in dataset for m in row["messages"]]
    tokenizer = transformers.AutoTokenizer.from_pretrained(
        train_tiny_tokenizer(texts, tmp_path / "tok", vocab_size=600)
    )
    for row in dataset:
        messages, tools = template_inputs(row["messages"], row["tools"])
        out = tokenizer.apply_chat_template(
            messages, tools=tools, return_dict=True, return_assistant_tokens_mask=True
        )
        ids, mask = out["input_ids"], out["assistant_masks"]
        spans, start = [], None
        for i, bit in enumerate([*mask, 0]):
            if bit and start is None:
                start = i
            elif not bit and start is not None:
                spans.append(tokenizer.decode(ids[start:i]))
                start = None
        assistants = [m for m in row["messages"] if m["role"] == "assistant"]
        assert len(spans) == len(assistants) == sum(m["train"] for m in row["messages"])
        for span, message in zip(spans, assistants, strict=True):
            assert span.endswith("<|im_end|>") and "<|im_start|>" not in span
            assert "<tool_response>" not in span  # tool results are never trained
            assert (message["reasoning_content"] or "").strip() in span
            for call in message["tool_calls"] or []:
                command = json.loads(call["function"]["arguments"])["command"]
                assert json.dumps(command) in span
        untrained = tokenizer.decode([t for t, bit in zip(ids, mask, strict=True) if not bit])
        after_system = untrained.split("</tool_call><|im_end|>", 1)[1]  # past the tool docs
        assert "<tool_call>" not in after_system  # every call is in a trained span
        assert row["messages"][0]["content"] in untrained
