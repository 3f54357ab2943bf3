"""Run as: python bench/train.py [--steps S] [--nproc N] [--batch-size B] [--gpu-steps S]
          [--gpu-seq-lens 8192,32768] [--cpu-only | --gpu-only]

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
  (random weights), one process, the recipe's own FSDP2 model (bf16 compute, fp32 master
  weights, activation checkpointing, sdpa or flash attention) and training step, on random
  tokens at each sequence length: tokens/s, model FLOPs utilisation (see
  training/metrics.py for what is counted) and peak GPU memory. Goal on an H100/H200:
  MFU >= 40% at 32K.
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

from trajlake.training.config import TrainConfig, load_train_config
from trajlake.training.data import Batch, encode_mixture, read_mixture
from trajlake.training.metrics import peak_flops, read_metrics, step_flops
from trajlake.training.model import build_sharded_model, load_hf_config, matmul_params
from trajlake.training.step import make_optimizer, make_scheduler, train_step

TINY = Path(__file__).resolve().parent.parent / "training" / "configs" / "tiny-cpu.yaml"
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
    if not torch.cuda.is_available():
        print("GPU part skipped: no CUDA device here (torch.cuda.is_available() is False)")
        return
    device = torch.device("cuda", 0)
    torch.cuda.set_device(device)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "WORLD_SIZE": "1"}
    os.environ.update(env)
    dist.init_process_group("nccl", device_id=device)
    try:
        name = torch.cuda.get_device_name(device)
        print(f"GPU: {name}; Qwen3-1.7B-sized model from config, 1 process, bf16, AC")
        print(f"{'seq len':>8} {'tokens/s':>10} {'MFU':>6} {'peak GiB':>9}")
        for seq_len in [int(n) for n in args.gpu_seq_lens.split(",")]:
            tokens_per_s, mfu, peak_gib = _gpu_run(seq_len, args.gpu_steps, device)
            mfu_text = f"{mfu:.1%}" if mfu is not None else "n/a"
            print(f"{seq_len:>8} {tokens_per_s:>10,.0f} {mfu_text:>6} {peak_gib:>9.1f}")
    finally:
        dist.destroy_process_group()


def _gpu_run(seq_len: int, steps: int, device: torch.device) -> tuple[float, float | None, float]:
    cfg = TrainConfig(
        hf_config=QWEN3_1_7B, max_seq_len=seq_len, micro_batch_tokens=seq_len, lr=1e-5,
        mixed_precision="bf16", activation_checkpointing=True,
    )  # fmt: skip
    config = load_hf_config(cfg, QWEN3_1_7B["vocab_size"])
    model = build_sharded_model(cfg, config, device, bf16=True)
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, WARMUP + steps)
    ids = torch.randint(0, config.vocab_size, (1, seq_len + 1), device=device)
    positions = torch.arange(seq_len, device=device)[None]
    batch = Batch(ids[:, :-1], ids[:, 1:].clone(), positions, None, [seq_len])
    torch.cuda.reset_peak_memory_stats(device)
    results = [train_step(model, optimizer, scheduler, [batch], 1.0) for _ in range(WARMUP + steps)]
    timed = results[WARMUP:]
    seconds = sum(r.seconds for r in timed)
    flops = sum(step_flops(matmul_params(config, model), config, r.tokens, r.sum_sq_lengths)
                for r in timed)  # fmt: skip
    peak = peak_flops(0.0, device)
    peak_gib = torch.cuda.max_memory_allocated(device) / 2**30
    del model, optimizer
    torch.cuda.empty_cache()
    return seq_len * len(timed) / seconds, (flops / seconds / peak if peak else None), peak_gib


def _args(argv: list[str]) -> Namespace:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="CPU: measured steps of each loop")
    parser.add_argument("--nproc", type=int, default=2, help="CPU: recipe processes")
    parser.add_argument("--batch-size", type=int, default=4, help="CPU: plain loop batch rows")
    parser.add_argument("--gpu-steps", type=int, default=5, help="GPU: measured steps")
    parser.add_argument("--gpu-seq-lens", default="8192,32768", help="GPU: sequence lengths")
    parser.add_argument("--cpu-only", action="store_true")
    parser.add_argument("--gpu-only", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = _args(argv)
    if not args.gpu_only:
        cpu_part(args)
    if not args.cpu_only:
        gpu_part(args)


if __name__ == "__main__":
    main(sys.argv[1:])
