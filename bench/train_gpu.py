"""The GPU part of bench/train.py: the recipe against two plain Hugging Face loops, same run.

For a Qwen3-1.7B-sized model (random init, random tokens, one process, bf16) at each sequence
length: tokens/s, MFU (training/metrics.py's FLOPs) and peak memory of

- the recipe: `build_sharded_model` + `train_step` as `trajlake train` runs them (FSDP2, fp32
  master weights, bf16 compute, the loss without full logits, Liger kernels where installed,
  the configured activation checkpointing, `auto` by default);
- a plain HF loop: fp32 parameters, bf16 autocast, activation checkpointing, sdpa,
  `model(input_ids, labels=...).loss`, AdamW;
- the same loop with liger-kernel's fused linear cross-entropy, RMSNorm, RoPE and SwiGLU.

A loop that runs out of memory is reported as such and the others still run.
"""

from __future__ import annotations

import gc
import importlib.util
import time
from dataclasses import dataclass

import torch
from transformers import AutoModelForCausalLM

from trajlake.training.checkpointing import enable_checkpointing
from trajlake.training.config import TrainConfig
from trajlake.training.data import Batch
from trajlake.training.metrics import peak_flops, step_flops
from trajlake.training.model import build_sharded_model, describe_model, load_hf_config
from trajlake.training.model import matmul_params as count_matmul_params
from trajlake.training.step import make_optimizer, make_scheduler, train_step

#: Qwen3-1.7B's architecture (Hugging Face config.json of Qwen/Qwen3-1.7B).
QWEN3_1_7B = {
    "model_type": "qwen3",
    "hidden_size": 2048,
    "intermediate_size": 6144,
    "num_hidden_layers": 28,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "vocab_size": 151936,
    "max_position_embeddings": 40960,
    "rope_theta": 1000000,
    "tie_word_embeddings": True,
}
#: a Qwen3 small enough for `bench/train.py --gpu-dry-run` to run every loop on the CPU.
TINY_QWEN3 = {
    **QWEN3_1_7B,
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 1024,
}  # fmt: skip
WARMUP = 2
#: the issue's goals on an H100/H200: MFU at 8K and 32K, peak GiB at 32K.
GOALS = {"mfu": {8192: 0.35, 32768: 0.45}, "peak_gib": {32768: 35.0}}


@dataclass(frozen=True)
class Row:
    loop: str
    seq_len: int
    tokens_per_s: float | None  # None: out of memory or not installed
    mfu: float | None
    peak_gib: float | None
    note: str = ""


def recipe(seq_len: int, steps: int, device: torch.device, policy: str, arch: dict) -> Row:
    """The recipe with `activation_checkpointing: policy`."""
    cfg = TrainConfig(
        hf_config=arch, max_seq_len=seq_len, micro_batch_tokens=seq_len, lr=1e-5,
        mixed_precision="bf16", activation_checkpointing=policy,
    )  # fmt: skip
    config = load_hf_config(cfg, arch["vocab_size"])
    model = build_sharded_model(cfg, config, device, bf16=True)
    note = describe_model(cfg, device, model)
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, WARMUP + steps)
    batch = _random_batch(seq_len, config.vocab_size, device)
    n_matmul = count_matmul_params(config, model)
    seconds = 0.0
    _reset_peak(device)
    for step in range(WARMUP + steps):
        result = train_step(model, optimizer, scheduler, [batch], 1.0)
        seconds += result.seconds if step >= WARMUP else 0.0
    return _row(f"recipe, AC {policy}", seq_len, steps, seconds, n_matmul, config, device, note)


def plain(seq_len: int, steps: int, device: torch.device, liger: bool, arch: dict) -> Row:
    label = "plain HF loop" + (" + Liger" if liger else "")
    if liger and importlib.util.find_spec("liger_kernel") is None:
        return Row(label, seq_len, None, None, None, 'liger-kernel not installed (".[train-gpu]")')
    if liger and device.type != "cuda":
        return Row(label, seq_len, None, None, None, "liger-kernel needs CUDA")
    cfg = TrainConfig(hf_config=arch)
    config = load_hf_config(cfg, arch["vocab_size"])
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa").to(device)
    if liger:
        from liger_kernel.transformers import apply_liger_kernel_to_qwen3

        apply_liger_kernel_to_qwen3(model=model)  # fused linear CE, RMSNorm, RoPE, SwiGLU
    enable_checkpointing(model)
    model.config.use_cache = False
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=cfg.betas)
    batch = _random_batch(seq_len, config.vocab_size, device)
    n_matmul = count_matmul_params(config, model)
    seconds = 0.0
    _reset_peak(device)
    for step in range(WARMUP + steps):
        _synchronize(device)
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = model(input_ids=batch.input_ids, labels=batch.input_ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _synchronize(device)
        seconds += time.perf_counter() - start if step >= WARMUP else 0.0
    return _row(label, seq_len, steps, seconds, n_matmul, config, device, "sdpa, full AC")


def run_all(
    seq_lens: list[int],
    steps: int,
    device: torch.device,
    policies: list[str],
    arch: dict = QWEN3_1_7B,
) -> list[Row]:
    """Every loop at every length (the recipe under each checkpointing policy), each in a
    clean CUDA memory state, for the model `arch`; the table lists them by length. The plain
    loop runs first: Liger patches the Qwen3 module's norm, rotary and MLP for every model built
    after it (the recipe's too, where it is installed), so no plain row may follow one that
    used it."""
    loops = [
        ("plain HF loop", n, lambda n=n: plain(n, steps, device, False, arch)) for n in seq_lens
    ]
    loops += [
        (f"recipe, AC {p}", n, lambda n=n, p=p: recipe(n, steps, device, p, arch))
        for n in seq_lens
        for p in policies
    ]
    loops += [
        ("plain HF loop + Liger", n, lambda n=n: plain(n, steps, device, True, arch))
        for n in seq_lens
    ]
    rows = []
    for label, seq_len, run in loops:
        try:
            rows.append(run())
        except torch.cuda.OutOfMemoryError:
            rows.append(Row(label, seq_len, None, None, None, "out of memory"))
        gc.collect()
        torch.cuda.empty_cache()
    return sorted(rows, key=lambda r: r.seq_len)  # stable: the order above within a length


def report(rows: list[Row]) -> list[str]:
    """The table, then the issue's goals for the recipe, met or not: MFU and speed by its
    fastest policy, peak memory by its leanest."""
    lines = [f"{'loop':<24} {'seq':>6} {'tokens/s':>10} {'MFU':>6} {'peak GiB':>9}  notes"]
    for r in rows:
        rate = f"{r.tokens_per_s:,.0f}" if r.tokens_per_s else "-"
        mfu = f"{r.mfu:.1%}" if r.mfu is not None else "-"
        peak = f"{r.peak_gib:.1f}" if r.peak_gib is not None else "-"
        lines.append(f"{r.loop:<24} {r.seq_len:>6} {rate:>10} {mfu:>6} {peak:>9}  {r.note}")
    for seq_len in sorted({r.seq_len for r in rows}):
        here = [r for r in rows if r.seq_len == seq_len and r.tokens_per_s]
        mine = [r for r in here if r.loop.startswith("recipe")]
        others = [r for r in here if not r.loop.startswith("recipe")]
        best = max((r.tokens_per_s for r in mine), default=0.0)
        checks = []
        if seq_len in GOALS["mfu"]:
            goal = GOALS["mfu"][seq_len]
            checks.append((f"MFU >= {goal:.0%}", any((r.mfu or 0) >= goal for r in mine)))
        if seq_len in GOALS["peak_gib"]:
            goal = GOALS["peak_gib"][seq_len]
            lean = any(r.peak_gib is not None and r.peak_gib <= goal for r in mine)
            checks.append((f"peak <= {goal:.0f} GiB", lean))
        ahead = bool(mine) and all(best > o.tokens_per_s for o in others)
        checks.append(("ahead of the baselines that ran", ahead))
        text = ", ".join(f"{name}: {'met' if ok else 'NOT met'}" for name, ok in checks)
        lines.append(f"goals at {seq_len}: {text}")
    return lines


def _random_batch(seq_len: int, vocab: int, device: torch.device) -> Batch:
    ids = torch.randint(0, vocab, (1, seq_len + 1), device=device)
    positions = torch.arange(seq_len, device=device)[None]
    return Batch(ids[:, :-1], ids[:, 1:].clone(), positions, None, [seq_len])


def _row(label, seq_len, steps, seconds, n_matmul, config, device, note) -> Row:  # noqa: ANN001
    flops = steps * step_flops(n_matmul, config, seq_len, seq_len * seq_len)
    peak = peak_flops(0.0, device)
    cuda = device.type == "cuda"
    peak_gib = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None
    mfu = flops / seconds / peak if peak else None
    return Row(label, seq_len, seq_len * steps / seconds, mfu, peak_gib, note)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
