"""Resumable checkpoints: sharded model and optimizer (torch.distributed.checkpoint) plus each
rank's trainer state (scheduler, data position, RNG), published by one rename.

A checkpoint is `output_dir/checkpoints/step-NNNNNNNN/`, written as `step-NNNNNNNN.tmp/` and
renamed when every rank has finished, so a crash mid-write never leaves a checkpoint that looks
complete. Across nodes, output_dir must be on a file system every node sees.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from trajlake.training.errors import CheckpointError

CHECKPOINTS = "checkpoints"


def checkpoint_path(output_dir: Path, step: int) -> Path:
    """Where the checkpoint taken after `step` completed steps lives."""
    return output_dir / CHECKPOINTS / f"step-{step:08d}"


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The complete checkpoint with the most steps, if any."""
    found = sorted((output_dir / CHECKPOINTS).glob("step-[0-9]*[0-9]"))
    return found[-1] if found else None


def save_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    trainer_state: dict[str, Any],
    files: dict[str, str],
) -> None:
    """Every rank calls this. `trainer_state` is this rank's; rank 0 also writes `files`
    (name -> text: the resolved config, the mixture manifest) into the checkpoint."""
    rank = dist.get_rank()
    tmp = path.with_name(path.name + ".tmp")
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    dist.barrier()
    model_state, optim_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=tmp)
    torch.save({**trainer_state, "rng": _rng_state()}, tmp / f"trainer-rank{rank:05d}.pt")
    dist.barrier()
    if rank == 0:
        for name, text in files.items():
            (tmp / name).write_text(text)
        shutil.rmtree(path, ignore_errors=True)
        tmp.rename(path)
    dist.barrier()


def load_checkpoint(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """Load model and optimizer shards in place, restore this rank's RNG, and return its
    trainer state."""
    state_file = path / f"trainer-rank{dist.get_rank():05d}.pt"
    if not state_file.is_file():
        raise CheckpointError(
            f"{path} has no {state_file.name}: it was written by a run with fewer ranks; "
            "resume with the same number of processes"
        )
    model_state, optim_state = get_state_dict(model, optimizer)
    loaded = {"model": model_state, "optim": optim_state}
    dcp.load(loaded, checkpoint_id=path)
    set_state_dict(
        model, optimizer, model_state_dict=loaded["model"], optim_state_dict=loaded["optim"]
    )
    trainer_state = torch.load(state_file, weights_only=True)
    _set_rng_state(trainer_state.pop("rng"))
    return trainer_state


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
