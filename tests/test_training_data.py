"""The fine-tuning job's data plan, collation, generated mixture, config and launcher."""

from __future__ import annotations

import json
import random
import shlex
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from trajlake.errors import ConfigError
from trajlake.training.chat import IGNORE_INDEX
from trajlake.training.config import load_train_config
from trajlake.training.data import Example, collate, plan_epoch, plan_hash, plan_steps
from trajlake.training.errors import TrainingError
from trajlake.training.synthetic import make_synthetic_mixture

pytestmark = pytest.mark.unit

_RNG = random.Random(3)
LENGTHS = [_RNG.randint(5, 300) for _ in range(600)]


@pytest.mark.parametrize("pack", [False, True])
def test_an_epoch_holds_every_sample_once_within_the_budget(pack: bool) -> None:
    batches = plan_epoch(LENGTHS, 600, seed=0, epoch=0, pack=pack)
    assert sorted(i for b in batches for i in b) == list(range(len(LENGTHS)))
    for batch in batches:
        sizes = [LENGTHS[i] for i in batch]
        assert (sum(sizes) if pack else max(sizes) * len(sizes)) <= 600
    assert plan_epoch(LENGTHS, 600, seed=0, epoch=0, pack=pack) == batches
    assert plan_epoch(LENGTHS, 600, seed=0, epoch=1, pack=pack) != batches


def test_length_grouping_pads_less_than_random_batches() -> None:
    def padding(batches: list[list[int]]) -> int:
        return sum(
            max(LENGTHS[i] for i in b) * len(b) - sum(LENGTHS[i] for i in b) for b in batches
        )

    grouped = plan_epoch(LENGTHS, 600, seed=0, epoch=0, pack=False)
    order = random.Random(0).sample(range(len(LENGTHS)), len(LENGTHS))
    same_sizes = []
    for batch in grouped:  # the same batch sizes, filled at random
        same_sizes.append(order[: len(batch)])
        order = order[len(batch) :]
    assert padding(grouped) < 0.2 * padding(same_sizes)


def test_steps_take_ranks_times_accumulation_batches() -> None:
    steps = plan_steps(LENGTHS, 600, seed=0, epochs=2, pack=True, per_step=4)
    assert all(len(s.batches) == 4 for s in steps)
    assert {s.epoch for s in steps} == {0, 1}
    per_epoch = len(plan_epoch(LENGTHS, 600, 0, 0, True)) // 4
    assert sum(s.epoch == 0 for s in steps) == per_epoch
    assert steps[0].for_rank(1, 2) == [steps[0].batches[1], steps[0].batches[3]]
    assert plan_hash(steps) != plan_hash(plan_steps(LENGTHS, 600, 1, 2, True, 4))
    with pytest.raises(TrainingError, match="micro_batch_tokens"):
        plan_steps(LENGTHS, 100, 0, 1, True, 1)
    with pytest.raises(TrainingError, match="grad_accum"):
        plan_steps(LENGTHS[:3], 600, 0, 1, True, 8)


def _example(ids: list[int], labels: list[int]) -> Example:
    return Example("s", torch.tensor(ids, dtype=torch.int32), torch.tensor(labels))


def test_collate_shifts_labels_within_each_sample() -> None:
    a = _example([1, 2, 3, 4], [IGNORE_INDEX, IGNORE_INDEX, 3, 4])
    b = _example([5, 6, 7], [IGNORE_INDEX, 6, 7])
    packed = collate([a, b], pack=True, pad_id=0)
    assert packed.input_ids.tolist() == [[1, 2, 3, 4, 5, 6, 7]]
    assert packed.position_ids.tolist() == [[0, 1, 2, 3, 0, 1, 2]]
    assert packed.targets.tolist() == [[-100, 3, 4, -100, 6, 7, -100]]
    assert packed.attention_mask is None and packed.n_targets == 4
    padded = collate([a, b], pack=False, pad_id=0)
    assert padded.input_ids.tolist() == [[1, 2, 3, 4], [5, 6, 7, 0]]
    assert padded.targets.tolist() == [[-100, 3, 4, -100], [6, 7, -100, -100]]
    assert padded.attention_mask.tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    assert collate([a], pack=False, pad_id=0).attention_mask is None


def test_synthetic_mixture_follows_the_contract(tmp_path: Path) -> None:
    out = make_synthetic_mixture(tmp_path / "mixtures" / "synth", 20, seed=5)
    manifest = json.loads((out / "manifest.json").read_text())
    assert {"name", "seed", "counts", "config_hash", "sql"} <= manifest.keys()
    rows = pq.read_table(out / "data.parquet").to_pylist()
    lines = [json.loads(line) for line in (out / "data.jsonl").read_text().splitlines()]
    assert rows == lines and len(rows) == 20
    for row in rows:
        roles = [m["role"] for m in row["messages"]]
        assert roles[:2] == ["system", "user"] and roles[-1] == "assistant"
        assert all(m["train"] == (m["role"] == "assistant") for m in row["messages"])
        calls = [c for m in row["messages"] for c in m["tool_calls"] or []]
        assert calls and all(
            isinstance(json.loads(c["function"]["arguments"]), dict) for c in calls
        )
        assert any(m["reasoning_content"] for m in row["messages"])
        assert json.loads(row["tools"])[0]["type"] == "function"
    assert make_synthetic_mixture(tmp_path / "again", 20, seed=5) and (
        pq.read_table(tmp_path / "again" / "data.parquet").to_pylist() == rows
    )


def test_config_overrides_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("hf_config:\n  model_type: qwen3\n  hidden_size: 64\n")
    cfg = load_train_config(path, ["hf_config.hidden_size=32", "lr=2e-5", "pack=true"])
    assert cfg.hf_config == {"model_type": "qwen3", "hidden_size": 32}
    assert (cfg.lr, cfg.pack, cfg.epochs, cfg.weight_decay, cfg.betas) == (
        2e-5,
        True,
        3,
        0.01,
        (0.9, 0.95),
    )
    with pytest.raises(ConfigError, match="lr"):
        load_train_config(path, ["lr=-1"])
    with pytest.raises(ConfigError, match="hf_config"):
        load_train_config(path, ["hf_config={}"])
    with pytest.raises(ConfigError, match="not both"):
        load_train_config(path, ["model=/models/qwen3"])
    assert load_train_config(path, ["model=/models/qwen3", "hf_config={}"]).model == "/models/qwen3"
    with pytest.raises(ConfigError, match="not found"):
        load_train_config(tmp_path / "missing.yaml")


def test_trajlake_train_builds_the_torchrun_line(tmp_path: Path) -> None:
    config = tmp_path / "t.yaml"
    config.write_text("hf_config: {model_type: qwen3}\n")
    args = ["train", "--config", str(config), "--nproc-per-node", "3", "--resume", "lr=1e-4"]
    args += ["--nnodes", "2", "--master-addr", "head", "--dry-run"]
    out = subprocess.run(
        [sys.executable, "-m", "trajlake.cli", *args], capture_output=True, text=True, check=True
    ).stdout
    assert shlex.split(out) == [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "3",
        "--nnodes", "2", "--master-addr", "head",
        "-m", "trajlake.training.sft", "--config", str(config.resolve()), "--resume", "lr=1e-4",
    ]  # fmt: skip
    missing = subprocess.run(
        [sys.executable, "-m", "trajlake.cli", "train", "--config", str(tmp_path / "no.yaml")],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and "not found" in missing.stderr
