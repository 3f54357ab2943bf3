"""The FSDP2 fine-tuning recipe, run for real: 2 CPU processes (torchrun, gloo), a tiny
Qwen3-architecture model built from a config, a tokenizer trained here, a generated mixture.

One uninterrupted run A (checkpoint every 5 steps) and one run B resumed from A's step-5
checkpoint serve every test: the loss falls, step 0 under sharding equals the same global
batch on one process, B repeats A's losses, and the saved model loads and generates.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from trajlake.training.chat import template_inputs
from trajlake.training.config import TrainConfig, load_train_config
from trajlake.training.data import collate, encode_mixture, plan_steps, read_mixture
from trajlake.training.metrics import read_metrics, summary
from trajlake.training.model import build_full_model, load_hf_config
from trajlake.training.step import token_loss_sum

pytestmark = pytest.mark.training

CONFIG = """\
synthetic_samples: 24
tokenizer_vocab_size: 600
hf_config:
  model_type: qwen3
  hidden_size: 32
  intermediate_size: 64
  num_hidden_layers: 2
  num_attention_heads: 4
  num_key_value_heads: 2
  head_dim: 8
  tie_word_embeddings: true
max_seq_len: 768
micro_batch_tokens: 1024
pack: true
epochs: 3
lr: 1.0e-2
warmup_ratio: 0.1
checkpoint_every: 5
activation_checkpointing: true
save_dtype: float32
"""
RESUME_AT = 5


@dataclass(frozen=True)
class Runs:
    config: Path
    a: Path  # uninterrupted
    b: Path  # resumed from a's checkpoint at step RESUME_AT


def _train(config: Path, out: Path, *extra: str) -> None:
    command = [sys.executable, "-m", "trajlake.cli", "train", "--config", str(config)]
    command += ["--nproc-per-node", "2", f"output_dir={out}", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-4000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    root = tmp_path_factory.mktemp("sft")
    config = root / "tiny.yaml"
    config.write_text(CONFIG)
    a, b = root / "a", root / "b"
    _train(config, a)
    for name in ("mixture", "tokenizer"):
        shutil.copytree(a / name, b / name)
    checkpoint = f"checkpoints/step-{RESUME_AT:08d}"
    shutil.copytree(a / checkpoint, b / checkpoint)
    _train(config, b, "--resume")
    return Runs(config, a, b)


def _config(runs: Runs) -> TrainConfig:
    return load_train_config(runs.config, [f"output_dir={runs.a}"])


def test_loss_falls(runs: Runs) -> None:
    losses = [r["loss"] for r in read_metrics(runs.a / "metrics.jsonl")]
    assert len(losses) >= 12
    assert sum(losses[-3:]) / 3 < 0.7 * losses[0]


def test_metrics_give_throughput_per_gpu_padding_and_memory(runs: Runs) -> None:
    records = read_metrics(runs.a / "metrics.jsonl")
    for record in records:
        assert record["tokens_per_s_per_gpu"] == pytest.approx(record["tokens_per_s"] / 2)
        assert record["padded_tokens"] == 0 and record["padding_share"] == 0.0  # packed rows
        assert record["peak_memory_gib"] > 0  # CPU: the process's peak resident set
        assert record["flops"] > 0 and record["mfu"] is None  # no known peak FLOP/s on a CPU
    line = summary(records, world=2, peak=None)
    assert "tokens/s per GPU" in line and "padding 0.0%" in line
    assert f"steps 2-{records[-1]['step']}" in line


def test_step0_under_sharding_equals_one_process(runs: Runs) -> None:
    """Rank 0 and rank 1 each took one micro-batch of step 0; one process takes both."""
    cfg = _config(runs)
    tokenizer = AutoTokenizer.from_pretrained(runs.a / "tokenizer")
    rows, _ = read_mixture(runs.a / "mixture")
    encoded = encode_mixture(rows, tokenizer, cfg.max_seq_len)
    lengths = [len(e) for e in encoded.examples]
    steps = plan_steps(lengths, cfg.micro_batch_tokens, cfg.seed, cfg.epochs, cfg.pack, 2)
    model = build_full_model(cfg, load_hf_config(cfg, len(tokenizer)), "sdpa")
    batches = [collate([encoded.examples[i] for i in b], True, 0) for b in steps[0].batches]
    trained = sum(b.n_targets for b in batches)
    loss = sum(token_loss_sum(model, b) for b in batches) / trained
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
    first = read_metrics(runs.a / "metrics.jsonl")[0]
    assert first["trained_tokens"] == trained
    assert first["loss"] == pytest.approx(loss.item(), rel=1e-5)
    assert first["grad_norm"] == pytest.approx(grad_norm.item(), rel=1e-4)


def test_resumed_run_repeats_the_uninterrupted_one(runs: Runs) -> None:
    a = read_metrics(runs.a / "metrics.jsonl")
    b = read_metrics(runs.b / "metrics.jsonl")
    assert [r["step"] for r in b] == [r["step"] for r in a[RESUME_AT:]]
    assert {r["epoch"] for r in b} == {0, 1, 2}  # crosses epoch boundaries
    for ra, rb in zip(a[RESUME_AT:], b, strict=True):
        assert rb["loss"] == pytest.approx(ra["loss"], abs=1e-5)
        assert rb["lr"] == pytest.approx(ra["lr"], rel=1e-9)
    weights_a = load_file(runs.a / "model" / "model.safetensors")
    weights_b = load_file(runs.b / "model" / "model.safetensors")
    for name, tensor in weights_a.items():
        torch.testing.assert_close(weights_b[name], tensor, atol=1e-5, rtol=0)


def test_saved_model_loads_and_generates(runs: Runs) -> None:
    model_dir = runs.a / "model"
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert type(model).__name__ == "Qwen3ForCausalLM"
    rows, manifest = read_mixture(runs.a / "mixture")
    messages, tools = template_inputs(rows[1]["messages"][:2], rows[1]["tools"])
    prompt = tokenizer.apply_chat_template(
        messages, tools=tools, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = model.generate(**prompt, max_new_tokens=12, do_sample=False)
    assert out.shape[1] > prompt["input_ids"].shape[1]
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in model.generation_config.eos_token_id
    assert (model_dir / "mixture_manifest.json").read_text().count(manifest["config_hash"]) == 1
    saved = load_train_config(model_dir / "train_config.yaml")
    assert saved == _config(runs)


def test_packed_rows_keep_samples_apart(runs: Runs) -> None:
    """Packing changes nothing about the loss; without per-sample positions it would."""
    tokenizer = AutoTokenizer.from_pretrained(runs.a / "tokenizer")
    rows, _ = read_mixture(runs.a / "mixture")
    examples = encode_mixture(rows[:6], tokenizer, 700).examples[:3]
    model = AutoModelForCausalLM.from_pretrained(runs.a / "model", attn_implementation="sdpa")
    packed = collate(examples, pack=True, pad_id=0)
    padded = collate(examples, pack=False, pad_id=0)
    n = len(examples[0])
    second = slice(n, n + len(examples[1]))

    def second_sample_logits(position_ids: torch.Tensor) -> torch.Tensor:
        out = model(input_ids=packed.input_ids, position_ids=position_ids, use_cache=False)
        return out.logits[0, second]

    with torch.no_grad():
        assert packed.n_targets == padded.n_targets
        expected = token_loss_sum(model, padded).item()
        assert token_loss_sum(model, packed).item() == pytest.approx(expected, rel=1e-5)
        alone = model(input_ids=examples[1].input_ids.long()[None]).logits[0]
        apart = second_sample_logits(packed.position_ids)
        torch.testing.assert_close(apart, alone, atol=1e-4, rtol=0)
        one_sequence = torch.arange(packed.input_ids.shape[1])[None]
        assert (second_sample_logits(one_sequence) - alone).abs().max() > 1e-2
