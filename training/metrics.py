"""Throughput and model FLOPs utilisation, and the metrics.jsonl log.

Each line of metrics.jsonl gives, besides loss, lr and grad norm: real tokens, tokens/s (all
ranks) and per GPU (per rank), MFU (where the device's peak is known), the step's model FLOPs,
the padding share (padding positions / computed positions) and the rank-0 peak memory (CUDA:
allocated by torch during the step; CPU: the process's peak resident set). `summary` is the
end-of-run line.

FLOPs per step count what the model needs, not what activation checkpointing recomputes:
6 x matmul parameters x tokens, plus causal attention 6 x layers x (heads x head_dim) x the sum
of squared sample lengths (score and value matmuls, forward and backward, half of them masked).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from transformers import PretrainedConfig

from trajlake.training.step import StepResult

#: dense bf16 peak per GPU, TFLOP/s, by a part of the device name.
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "H800": 989.0, "A100": 312.0, "A800": 312.0}


def peak_flops(configured_tflops: float, device: torch.device) -> float | None:
    """Peak FLOP/s of one device: the configured value, or looked up for known GPUs."""
    if configured_tflops > 0:
        return configured_tflops * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((tf * 1e12 for key, tf in PEAK_TFLOPS.items() if key in name), None)


def step_flops(matmul_params: int, config: Any, tokens: int, sum_sq_lengths: int) -> float:
    """Model FLOPs of one training step over `tokens` tokens (see the module docstring)."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    attn_width = config.num_attention_heads * head_dim
    return 6.0 * matmul_params * tokens + 6.0 * config.num_hidden_layers * attn_width * (
        sum_sq_lengths
    )


def step_record(
    step: int,
    epoch: int,
    result: StepResult,
    n_matmul: int,
    config: PretrainedConfig,
    peak: float | None,
    world: int,
) -> dict[str, Any]:
    """One line of metrics.jsonl. MFU only where the device's peak FLOP/s is known."""
    flops = step_flops(n_matmul, config, result.tokens, result.sum_sq_lengths)
    mfu = flops / (result.seconds * world * peak) if peak else None
    computed = result.tokens + result.padded_tokens
    memory = result.peak_memory
    return {
        "step": step,
        "epoch": epoch,
        "loss": result.loss,
        "lr": result.lr,
        "grad_norm": result.grad_norm,
        "tokens": result.tokens,
        "trained_tokens": result.trained_tokens,
        "padded_tokens": result.padded_tokens,
        "tokens_per_s": result.tokens / result.seconds,
        "tokens_per_s_per_gpu": result.tokens / result.seconds / world,
        "mfu": mfu,
        "flops": flops,
        "padding_share": result.padded_tokens / computed if computed else 0.0,
        "peak_memory_gib": memory / 2**30 if memory is not None else None,
        "seconds": result.seconds,
    }


def summary(records: list[dict[str, Any]], world: int, peak: float | None, skip: int = 2) -> str:
    """The end-of-run line: tokens/s per GPU, MFU, peak memory and padding share, over the
    steps after the first `skip` (warm-up) when there are more."""
    timed = records[skip:] if len(records) > skip else records
    if not timed:
        return "no steps run"
    seconds = sum(r["seconds"] for r in timed)
    tokens = sum(r["tokens"] for r in timed)
    padding = sum(r["padded_tokens"] for r in timed)
    flops = sum(r["flops"] for r in timed)
    mfu = f"{flops / (seconds * world * peak):.1%}" if peak else "n/a (peak FLOP/s unknown)"
    memory = [r["peak_memory_gib"] for r in timed if r["peak_memory_gib"] is not None]
    peak_text = f"{max(memory):.1f} GiB" if memory else "n/a"
    return (
        f"{tokens / seconds / world:,.0f} tokens/s per GPU (rank), MFU {mfu}, peak memory "
        f"{peak_text}, padding {padding / (tokens + padding):.1%} of computed positions "
        f"(steps {timed[0]['step']}-{timed[-1]['step']})"
    )


class MetricsLog:
    """Appends one JSON object per step to `path`. On resume, steps from `start` on are cut
    first, so a resumed run's file reads as one uninterrupted run."""

    def __init__(self, path: Path, start: int):
        lines = path.read_text().splitlines() if path.exists() else []
        kept = [line for line in lines if line and json.loads(line)["step"] < start]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(line + "\n" for line in kept))
        self.file = path.open("a")

    def write(self, record: dict[str, Any]) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl, in order."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line]
