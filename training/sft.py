r"""Run as:

    trajlake train --config training/configs/tiny-cpu.yaml
    trajlake train --config training.yaml --nproc-per-node 8 [--resume] [key=value ...]
    trajlake train --config training.yaml --nproc-per-node 8 --nnodes 4 --node-rank R \
        --master-addr HOST --master-port 29500
    torchrun --nproc-per-node 8 -m trajlake.training.sft --config training.yaml [--resume] [k=v ...]

Supervised fine-tuning of a causal LM on a mixture, sharded with FSDP2. One recipe, top to
bottom: setup (process group, mixture, tokenizer, model, optimizer, resume), train, save,
cleanup. The loss of a step is the mean over the trained tokens of the whole global batch
(every rank, every accumulated micro-batch), so it does not depend on how the batch is split
over ranks. Under output_dir it writes metrics.jsonl (one line per step), checkpoints/step-N/
every `checkpoint_every` steps, and model/: the Hugging Face model with its tokenizer,
mixture_manifest.json and train_config.yaml. With no mixture or tokenizer given, a small
synthetic mixture and a tokenizer trained on it go to output_dir/mixture and /tokenizer.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import yaml
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from tqdm import tqdm
from transformers import AutoTokenizer, PretrainedConfig

from trajlake.errors import TrajlakeError
from trajlake.tokenizer import train_tiny_tokenizer
from trajlake.training.checkpoint import (
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from trajlake.training.config import TrainConfig, load_train_config
from trajlake.training.data import (
    Encoded,
    Step,
    collate,
    encode_mixture_shared,
    mixture_texts,
    plan_hash,
    plan_steps,
    read_mixture,
)
from trajlake.training.errors import ChatTemplateError, CheckpointError
from trajlake.training.metrics import MetricsLog, peak_flops, read_metrics, step_record, summary
from trajlake.training.model import (
    build_sharded_model,
    describe_model,
    gather_full_state_dict,
    generation_config,
    load_hf_config,
    matmul_params,
    save_hf_model,
)
from trajlake.training.step import make_optimizer, make_scheduler, train_step
from trajlake.training.synthetic import make_synthetic_mixture


@dataclass
class Run:
    """Everything `setup` builds and the later phases use."""

    cfg: TrainConfig
    out: Path
    device: torch.device
    tokenizer: Any
    manifest: dict[str, Any]
    encoded: Encoded
    steps: list[Step]
    hf_config: PretrainedConfig
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: LambdaLR
    start_step: int = 0
    last_loss: float = math.nan


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        cfg = load_train_config(args.config, args.overrides)
        try:
            run = setup(cfg, args.resume)
            train(run)
            save(run)
        finally:
            cleanup()
    except TrajlakeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def setup(cfg: TrainConfig, resume: bool) -> Run:
    device = _init_distributed()
    out = Path(cfg.output_dir)
    mixture_dir, tokenizer_dir = _prepare_inputs(cfg, out)
    tokenizer = _load_tokenizer(tokenizer_dir, cfg.chat_template)
    rows, manifest = read_mixture(mixture_dir)
    encoded = encode_mixture_shared(rows, tokenizer, cfg.max_seq_len)
    per_step = dist.get_world_size() * cfg.grad_accum
    lengths = [len(e) for e in encoded.examples]
    steps = plan_steps(lengths, cfg.micro_batch_tokens, cfg.seed, cfg.epochs, cfg.pack, per_step)
    hf_config = load_hf_config(cfg, len(tokenizer))
    bf16 = cfg.mixed_precision == "bf16" or (cfg.mixed_precision, device.type) == ("auto", "cuda")
    model = build_sharded_model(cfg, hf_config, device, bf16)
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, len(steps))
    run = Run(
        cfg,
        out,
        device,
        tokenizer,
        manifest,
        encoded,
        steps,
        hf_config,
        model,
        optimizer,
        scheduler,
    )
    if resume:
        run.start_step = _resume(run)
    _say(describe_model(cfg, device, model))
    _say(
        f"{len(encoded.examples)} samples ({encoded.truncated} truncated to their last complete "
        f"assistant turn, {encoded.dropped} dropped: no assistant turn fits max_seq_len "
        f"{cfg.max_seq_len}); {len(steps)} steps on {dist.get_world_size()} ranks"
        + (f", resuming after step {run.start_step}" if resume else "")
    )
    return run


def train(run: Run) -> None:
    cfg, rank, world = run.cfg, dist.get_rank(), dist.get_world_size()
    end = min(len(run.steps), cfg.stop_after_steps or len(run.steps))
    pad_id = run.tokenizer.pad_token_id if run.tokenizer.pad_token_id is not None else 0
    peak = peak_flops(cfg.peak_tflops, run.device)
    n_matmul = matmul_params(run.hf_config, run.model)
    log = MetricsLog(run.out / "metrics.jsonl", run.start_step) if rank == 0 else None
    bar = tqdm(total=end, initial=run.start_step, desc="train", unit="step", disable=rank != 0)
    try:
        for step in range(run.start_step, end):
            plan = run.steps[step]
            batches = [
                collate([run.encoded.examples[i] for i in ids], cfg.pack, pad_id).to(run.device)
                for ids in plan.for_rank(rank, world)
            ]
            result = train_step(run.model, run.optimizer, run.scheduler, batches, cfg.max_grad_norm)
            run.last_loss = result.loss
            record = step_record(step, plan.epoch, result, n_matmul, run.hf_config, peak, world)
            if log is not None:
                log.write(record)
            bar.update(1)
            bar.set_postfix(loss=f"{result.loss:.4f}", lr=f"{result.lr:.2e}")
            done = step + 1
            stopping = done == end and end < len(run.steps)
            if (cfg.checkpoint_every and done % cfg.checkpoint_every == 0) or stopping:
                _checkpoint(run, done)
    finally:
        bar.close()
        if log is not None:
            log.close()
    if rank == 0:
        records = read_metrics(run.out / "metrics.jsonl")[run.start_step :]
        _say(f"throughput: {summary(records, world, peak)}")


def save(run: Run) -> None:
    """The Hugging Face model, its tokenizer, the mixture manifest and the resolved config."""
    state = gather_full_state_dict(run.model)
    target = run.out / "model"
    if dist.get_rank() == 0:
        tmp = target.with_name("model.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        dtype = getattr(torch, run.cfg.save_dtype)
        end_of_turn = int(run.encoded.examples[0].labels[-1])  # every sample ends on one
        generation = generation_config(run.cfg, end_of_turn, run.tokenizer)
        save_hf_model(state, run.hf_config, generation, tmp, dtype)
        run.tokenizer.save_pretrained(tmp)
        for name, text in _run_files(run).items():
            (tmp / name).write_text(text)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    dist.barrier()
    _say(f"final loss {run.last_loss:.4f}; model saved to {target}")


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="trajlake.training.sft", description=__doc__)
    parser.add_argument("--config", required=True, help="training YAML")
    parser.add_argument(
        "--resume", action="store_true", help="continue from the last checkpoint, if there is one"
    )
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. lr=2e-5")
    return parser.parse_args(argv)


def _init_distributed() -> torch.device:
    """gloo on CPU, nccl on GPU; one GPU per local rank."""
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
        return device
    dist.init_process_group("gloo")
    return torch.device("cpu")


def _prepare_inputs(cfg: TrainConfig, out: Path) -> tuple[Path, Path]:
    """The mixture and tokenizer directories; rank 0 generates what the config leaves empty."""
    mixture = Path(cfg.mixture) if cfg.mixture else out / "mixture"
    tokenizer = (
        Path(cfg.tokenizer or cfg.model) if cfg.tokenizer or cfg.model else out / "tokenizer"
    )
    if dist.get_rank() == 0:
        if not cfg.mixture and not (mixture / "manifest.json").exists():
            make_synthetic_mixture(mixture, cfg.synthetic_samples, cfg.seed)
        if not (cfg.tokenizer or cfg.model) and not (tokenizer / "tokenizer.json").exists():
            rows, _ = read_mixture(mixture)
            train_tiny_tokenizer(mixture_texts(rows), tokenizer, cfg.tokenizer_vocab_size)
    dist.barrier()
    return mixture, tokenizer


def _load_tokenizer(path: Path, chat_template: str) -> Any:
    tokenizer = AutoTokenizer.from_pretrained(path)
    if chat_template:
        tokenizer.chat_template = Path(chat_template).read_text()
    if not tokenizer.chat_template:
        raise ChatTemplateError(f"the tokenizer at {path} has no chat template: set chat_template")
    return tokenizer


def _resume(run: Run) -> int:
    path = latest_checkpoint(run.out)
    if path is None:  # a first attempt: the same command line works after a preemption too
        _say(f"--resume: no checkpoint under {run.out / 'checkpoints'} yet, starting at step 0")
        return 0
    state = load_checkpoint(path, run.model, run.optimizer)
    if state["plan"] != plan_hash(run.steps):
        raise CheckpointError(
            f"{path} was written for another data plan: keep the mixture, seed, epochs, "
            "max_seq_len, micro_batch_tokens, pack and ranks x grad_accum of that run"
        )
    run.scheduler.load_state_dict(state["scheduler"])
    return int(state["step"])


def _checkpoint(run: Run, done: int) -> None:
    state = {
        "step": done,
        "epoch": run.steps[done - 1].epoch,
        "plan": plan_hash(run.steps),
        "scheduler": run.scheduler.state_dict(),
    }
    path = checkpoint_path(run.out, done)
    save_checkpoint(path, run.model, run.optimizer, state, _run_files(run))


def _run_files(run: Run) -> dict[str, str]:
    return {
        "train_config.yaml": yaml.safe_dump(run.cfg.to_dict(), sort_keys=False),
        "mixture_manifest.json": json.dumps(run.manifest, indent=2) + "\n",
    }


def _say(text: str) -> None:
    if dist.get_rank() == 0:
        print(text, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
