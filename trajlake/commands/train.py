"""`trajlake train`: the fine-tuning recipe (trajlake.training.sft) under torchrun.

The command builds the torchrun line and replaces itself with it, so signals reach torchrun
and its exit status is the command's. `--dry-run` prints the line instead; `--plan CONFIG`
prints the per-GPU memory estimate and whether it fits, from the model config alone.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import sys
from pathlib import Path

from trajlake.training.errors import TrainingError

#: torchrun options passed through as given (multi-node runs).
LAUNCHER_FLAGS = (
    "--nnodes",
    "--node-rank",
    "--master-addr",
    "--master-port",
    "--rdzv-backend",
    "--rdzv-endpoint",
    "--rdzv-id",
    "--rdzv-conf",
    "--max-restarts",
)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="fine-tune a model on a mixture (FSDP2 under torchrun)")
    train.add_argument(
        "--config",
        dest="train_config",
        type=Path,
        metavar="PATH",
        help="training YAML (fields: training/config.py)",
    )
    train.add_argument(
        "--plan",
        dest="plan_config",
        type=Path,
        metavar="CONFIG",
        help="print the per-GPU memory estimate of CONFIG and whether it fits; train nothing",
    )
    train.add_argument(
        "--gpus", type=int, default=8, metavar="N", help="--plan: GPUs sharing the model (8)"
    )
    train.add_argument(
        "--gpu-mem",
        type=float,
        metavar="GiB",
        help="--plan: memory per GPU (default: the config's gpu_memory_gib, else 80)",
    )
    train.add_argument(
        "--nproc-per-node",
        default="auto",
        metavar="N",
        help="processes per node (default: one per GPU, or 2 on a machine without one)",
    )
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue from the last checkpoint in output_dir (step 0 when there is none yet)",
    )
    train.add_argument("--dry-run", action="store_true", help="print the torchrun command only")
    for flag in LAUNCHER_FLAGS:
        train.add_argument(flag, metavar="VALUE", help=f"passed to torchrun as {flag}")
    train.add_argument(
        "train_overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. lr=2e-5"
    )
    train.set_defaults(func=cmd_train, needs_config=False)


def torchrun_command(args: argparse.Namespace) -> list[str]:
    """The `python -m torch.distributed.run ... -m trajlake.training.sft ...` argument list."""
    launcher = []
    for flag in LAUNCHER_FLAGS:
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None:
            launcher += [flag, str(value)]
    if not launcher:  # one machine: a free port, no rendezvous settings needed
        launcher = ["--standalone"]
    recipe = ["--config", str(args.train_config.resolve()), *(["--resume"] * args.resume)]
    return [
        sys.executable, "-m", "torch.distributed.run",
        "--nproc-per-node", str(_processes(args.nproc_per_node)), *launcher,
        "-m", "trajlake.training.sft", *recipe, *args.train_overrides,
    ]  # fmt: skip


def cmd_train(args: argparse.Namespace, _overrides: list[str]) -> int:
    missing = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
    if missing:
        raise TrainingError(f'{" and ".join(missing)} not installed: pip install -e ".[train]"')
    if args.plan_config is not None:
        print(plan_text(args.plan_config, args.train_overrides, args.gpus, args.gpu_mem))
        return 0
    if args.train_config is None:
        raise TrainingError("trajlake train needs --config PATH (or --plan CONFIG)")
    if not args.train_config.is_file():
        raise TrainingError(f"training config {args.train_config} not found")
    command = torchrun_command(args)
    if args.dry_run:
        print(shlex.join(command))
        return 0
    processes = int(command[command.index("--nproc-per-node") + 1])
    # torchrun would set 1 thread per process; on CPU, share the cores out instead.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))
    sys.stdout.flush()
    os.execv(sys.executable, command)
    return 0  # not reached: execv replaced this process


def plan_text(path: Path, overrides: list[str], gpus: int, gpu_mem: float | None) -> str:
    """The memory plan of the config at `path` (training/memory.py), allocating nothing."""
    from trajlake.training.config import load_train_config
    from trajlake.training.memory import GIB, architecture, format_plan, plan

    if gpus < 1:
        raise TrainingError(f"--gpus {gpus} must be at least 1")
    cfg = load_train_config(path, overrides)
    arch = architecture(cfg)
    gib = gpu_mem or cfg.gpu_memory_gib or 80.0
    loss = "chunked" if cfg.loss == "auto" else cfg.loss  # liger's chunks are smaller still
    found = plan(arch, cfg, gpus, gib * GIB, loss, 4 if cfg.mixed_precision == "fp32" else 2)
    title = (
        f"{path.name}: {cfg.micro_batch_tokens:,} tokens per micro-batch and GPU, "
        f"activation_checkpointing {cfg.activation_checkpointing}"
        f"{' with offload' if cfg.activation_offload else ''}, loss {loss}"
    )
    return format_plan(found, arch, gpus, gib * GIB, title)


def _processes(value: str) -> int:
    if value != "auto":
        if not value.isdigit() or int(value) < 1:
            raise TrainingError(f"--nproc-per-node {value!r} must be a positive number or auto")
        return int(value)
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 2
