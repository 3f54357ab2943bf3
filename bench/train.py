"""Run as: python bench/train.py [--steps S] [--nproc N] [--batch-size B] [--gpu-steps S]
          [--gpu-seq-lens 8192,32768] [--gpu-policies auto,full] [--cpu-only | --gpu-only]
          [--gpu-dry-run]

Training throughput of the fine-tuning recipe (training/sft.py), in tokens/s (real tokens,
padding not counted), two parts:

- CPU (always): the recipe as users run it, `trajlake train --config
  training/configs/tiny-cpu.yaml` (N = 2 processes under torchrun, FSDP2 over gloo,
  length-grouped batches, activation checkpointing), once more with activation checkpointing
  off, against a plain single-process Hugging Face loop (`model(input_ids, attention_mask,
  labels).loss.backward()`, AdamW, right-padded batches of B samples in mixture order, no
  sharding, no checkpointing), on the same tiny Qwen3 config, the same generated mixture and
  tokenizer, the same cores, in the same run. All count only the training step (forward,
  backward, optimizer) from step 3 on; the first two warm up.
- GPU (only with CUDA; otherwise skipped with a message): a Qwen3-1.7B-sized model from config
  (random weights, random tokens), one process, at each sequence length, in the same run: the
  recipe (its FSDP2 model and training step: bf16 compute, fp32 master weights, the loss
  without full logits, Liger kernels where installed, each of `--gpu-policies`' checkpointing)
  against a plain Hugging Face loop (fp32 parameters, bf16 autocast, checkpointing, sdpa) and
  the same loop with liger-kernel's fused kernels: tokens/s, MFU (training/metrics.py's FLOPs)
  and peak memory, then the issue's goals on an H100/H200 (recipe MFU >= 35% at 8K and >= 45%
  at 32K, peak <= 35 GiB at 32K, ahead of both baselines), met or not. bench/train_gpu.py.
  `--gpu-dry-run` runs the GPU part's loops on the CPU with a tiny Qwen3 instead: it checks the
  script end to end before device time is spent on it (its numbers mean nothing).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from argparse import ArgumentParser, Namespace
from pathlib import Path

import torch
import torch.distributed as dist
from transformers import AutoModelForCausalLM, AutoTokenizer

from trajlake.training.config import load_train_config
from trajlake.training.data import encode_mixture, read_mixture
from trajlake.training.metrics import read_metrics
from trajlake.training.model import load_hf_config

TINY = Path(__file__).resolve().parent.parent / "training" / "configs" / "tiny-cpu.yaml"
WARMUP = 2


def recipe_cpu(out: Path, steps: int, nproc: int, *overrides: str) -> tuple[float, int]:
    """tokens/s and steps measured of `trajlake train` on the tiny CPU config."""
    command = [sys.executable, "-m", "trajlake.cli", "train", "--config", str(TINY)]
    command += ["--nproc-per-node", str(nproc), f"output_dir={out}", f"stop_after_steps={steps}"]
    command += ["checkpoint_every=0", *overrides]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"trajlake train failed:\n{done.stderr[-3000:]}")
    timed = read_metrics(out / "metrics.jsonl")[WARMUP:]
    return sum(r["tokens"] for r in timed) / sum(r["seconds"] for r in timed), len(timed)


def plain_cpu(out: Path, steps: int, batch_size: int) -> tuple[float, int]:
    """tokens/s of a plain Hugging Face loop on the recipe's model config, mixture, tokenizer."""
    cfg = load_train_config(TINY, [f"output_dir={out}"])
    tokenizer = AutoTokenizer.from_pretrained(out / "tokenizer")
    rows, _ = read_mixture(out / "mixture")
    examples = encode_mixture(rows, tokenizer, cfg.max_seq_len).examples
    torch.manual_seed(cfg.seed)
    config = load_hf_config(cfg, len(tokenizer))
    model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa").train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas)
    tokens, seconds = 0, 0.0
    for step in range(WARMUP + steps):
        chunk = examples[step * batch_size : (step + 1) * batch_size] or examples[:batch_size]
        ids, mask, labels = _padded(chunk, tokenizer.pad_token_id)
        start = time.perf_counter()
        model(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step >= WARMUP:
            tokens, seconds = tokens + int(mask.sum()), seconds + time.perf_counter() - start
    return tokens / seconds, steps


def _padded(examples: list, pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    width = max(len(e) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        ids[row, : len(e)], labels[row, : len(e)], mask[row, : len(e)] = e.input_ids, e.labels, 1
    return ids, mask, labels


def cpu_part(args: Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        recipe, n_recipe = recipe_cpu(out, WARMUP + args.steps, args.nproc)
        no_ac, _ = recipe_cpu(
            Path(tmp) / "no-ac", WARMUP + args.steps, args.nproc, "activation_checkpointing=false"
        )
        threads = torch.get_num_threads()
        plain, n_plain = plain_cpu(out, args.steps, args.batch_size)
    print(f"CPU: {os.cpu_count()} cores; tiny Qwen3 from {TINY.name}; steps after {WARMUP} warm-up")
    print(f"{'loop':<62} {'steps':>6} {'tokens/s':>10} {'ratio':>6}")
    rows = [
        (f"recipe as configured: {args.nproc} processes, FSDP2/gloo, AC", n_recipe, recipe),
        ("recipe, activation checkpointing off", n_recipe, no_ac),
        (
            f"plain HF loop: 1 process, {threads} threads, batches of {args.batch_size}",
            n_plain,
            plain,
        ),
    ]
    for label, steps, rate in rows:
        print(f"{label:<62} {steps:>6} {rate:>10,.0f} {rate / plain:>5.2f}x")


def gpu_part(args: Namespace) -> None:
    from train_gpu import QWEN3_1_7B, TINY_QWEN3, report, run_all  # bench/ is on sys.path

    if args.gpu_dry_run:
        device, backend, arch, seq_lens = torch.device("cpu"), "gloo", TINY_QWEN3, "64,128"
        print("GPU part, dry run on the CPU: a tiny Qwen3 through every loop; checks the script")
        print("end to end before GPU time is spent on it, and its numbers mean nothing")
    elif torch.cuda.is_available():
        device, backend, arch, seq_lens = torch.device("cuda", 0), "nccl", QWEN3_1_7B, None
        torch.cuda.set_device(device)
        name = torch.cuda.get_device_name(device)
        print(f"GPU: {name}; Qwen3-1.7B-sized model from config, 1 process, bf16, random tokens")
    else:
        print(
            "GPU part skipped: no CUDA device here (torch.cuda.is_available() is False); "
            "the recipe vs plain HF vs HF + Liger comparison needs one "
            "(--gpu-dry-run runs its loops on the CPU with a tiny model)"
        )
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "WORLD_SIZE": "1"}
    os.environ.update(env)
    dist.init_process_group(backend, device_id=device if backend == "nccl" else None)
    try:
        lengths = [int(n) for n in (seq_lens or args.gpu_seq_lens).split(",")]
        policies = args.gpu_policies.split(",")
        for line in report(run_all(lengths, args.gpu_steps, device, policies, arch)):
            print(line, flush=True)
    finally:
        dist.destroy_process_group()


def _args(argv: list[str]) -> Namespace:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="CPU: measured steps of each loop")
    parser.add_argument("--nproc", type=int, default=2, help="CPU: recipe processes")
    parser.add_argument("--batch-size", type=int, default=4, help="CPU: plain loop batch rows")
    parser.add_argument("--gpu-steps", type=int, default=5, help="GPU: measured steps")
    parser.add_argument("--gpu-seq-lens", default="8192,32768", help="GPU: sequence lengths")
    parser.add_argument(
        "--gpu-policies",
        default="auto,full",
        help="GPU: the recipe's activation_checkpointing policies, each a row",
    )
    parser.add_argument("--cpu-only", action="store_true")
    parser.add_argument("--gpu-only", action="store_true")
    parser.add_argument(
        "--gpu-dry-run",
        action="store_true",
        help="run the GPU part's loops on the CPU with a tiny model (checks the script)",
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = _args(argv)
    if not args.gpu_only:
        cpu_part(args)
    if not args.cpu_only:
        gpu_part(args)


if __name__ == "__main__":
    main(sys.argv[1:])
