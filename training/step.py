"""One optimizer step under FSDP2, and the optimizer and schedule it steps.

The loss of a micro-batch comes from training/loss.py (no full logits).

The step's loss is the sum of per-token losses over the trained tokens of the global batch
(every rank, every accumulated micro-batch) divided by their number. Ranks first agree on that
number, so each micro-batch's backward already carries its exact share of the gradient.
"""

from __future__ import annotations

import math
import resource
import sys
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.tensor import DTensor
from torch.optim.lr_scheduler import LambdaLR

from trajlake.training.config import TrainConfig
from trajlake.training.data import Batch
from trajlake.training.loss import token_loss_sum


@dataclass(frozen=True)
class StepResult:
    loss: float  # mean over the global batch's trained tokens
    grad_norm: float  # before clipping, over all shards
    lr: float  # the rate this step used
    tokens: int  # real (unpadded) tokens of the global batch
    trained_tokens: int
    sum_sq_lengths: int  # sum of squared sample lengths: attention cost
    seconds: float
    padded_tokens: int = 0  # padding positions the global batch computed on
    peak_memory: int | None = None  # bytes, this rank (see `peak_memory`)


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: LambdaLR,
    batches: list[Batch],
    max_grad_norm: float,
) -> StepResult:
    """Forward and backward every micro-batch of this rank, clip, step. Collective: every rank
    calls it with its own micro-batches."""
    device = batches[0].input_ids.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    world = dist.get_world_size()
    trained, tokens, sum_sq, padded = _global_counts(batches)
    loss_sum = torch.zeros((), device=batches[0].input_ids.device)
    for batch in batches:
        loss = token_loss_sum(model, batch)
        # FSDP averages gradients over ranks: scaling by the world size turns that average
        # into the sum, so the gradient is that of the global mean over trained tokens.
        (loss * world / trained).backward()
        loss_sum += loss.detach()
    grad_norm = nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    if isinstance(grad_norm, DTensor):
        grad_norm = grad_norm.full_tensor()
    lr = scheduler.get_last_lr()[0]
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    dist.all_reduce(loss_sum)
    loss = float(loss_sum) / trained
    seconds = time.perf_counter() - start
    result = (loss, float(grad_norm), lr, tokens, trained, sum_sq, seconds, padded)
    return StepResult(*result, peak_memory(device))


def peak_memory(device: torch.device) -> int | None:
    """On CUDA, the most memory torch held at once since the step began; on a CPU, the
    process's peak resident set (since it started: an upper bound); None where neither is
    known."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    if sys.platform == "linux":
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return None


def _global_counts(batches: list[Batch]) -> tuple[int, int, int, int]:
    """Trained tokens, real tokens, the sum of squared sample lengths and padding positions
    over all ranks."""
    real = sum(sum(b.lengths) for b in batches)
    local = [
        sum(b.n_targets for b in batches),
        real,
        sum(n * n for b in batches for n in b.lengths),
        sum(b.input_ids.numel() for b in batches) - real,
    ]
    counts = torch.tensor(local, dtype=torch.long, device=batches[0].input_ids.device)
    dist.all_reduce(counts)
    return max(1, int(counts[0])), int(counts[1]), int(counts[2]), int(counts[3])


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; matrices decay, norms and biases do not."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total: int) -> LambdaLR:
    """Linear warmup over `warmup_ratio` of the steps, then cosine down to `min_lr_ratio`."""
    warmup = int(cfg.warmup_ratio * total)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cosine

    return LambdaLR(optimizer, factor)
