"""Per-GPU memory of a training run, estimated from the model config alone (nothing allocated).

With P parameters sharded over N ranks (FSDP2), T tokens per micro-batch, L layers, hidden size
h, attention widths q = heads x head_dim and k = kv heads x head_dim, MLP width I, vocabulary V,
b bytes per compute value (2 in bf16) and 4 per fp32 value, the estimate in bytes is:

- states: fp32 parameters 4P/N, gradients 4P/N, AdamW moments 8P/N;
- gathered (unsharded for compute): the root (embeddings, LM head) b x P_root for the whole step,
  two decoder layers' parameters (one computing, one prefetched) and one layer's gradients in the
  compute dtype plus its fp32 copy for the reduce-scatter, (3b + 4) x P_layer;
- activations, per layer and token, as measured from the tensors a Qwen3 decoder layer saves:
  kept whole (`none`): A = 2h(4 + 2b) + (q + k)(4 + 3b) + 4bI + 4(2 + 2 x heads + kv heads);
  `selective` keeps the layer input, the matmul outputs and attention's: S = b(3h + 2q + 2k + 2I)
  + 4 x heads; `full` keeps the layer input, b x h (none on the GPU with activation_offload).
  Checkpointed layers add one layer's A during its recompute. Times T, summed over the layers
  (`auto`: K checkpointed, L - K kept whole);
- the loss: `full` holds the logits in the compute dtype, their fp32 copy and the fp32
  log-softmax, (b + 8) x T x V; `chunked` one chunk's logits (2b + 8) x CHUNK_TOKENS x V, the
  head's gradient in fp32 and compute dtype (4 + b) x V x h and the trained hidden states and
  their gradient 2b x T x h; `liger` like chunked, its chunks sized like the hidden states.

A run fits when the total is within USABLE of the GPU's memory (the rest: CUDA context, NCCL
buffers, allocator fragmentation).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trajlake.training.config import TrainConfig
from trajlake.training.errors import TrainingError
from trajlake.training.loss import CHUNK_TOKENS

GIB = 2**30
#: share of the GPU's memory a run may plan to use.
USABLE = 0.92
#: architectures (Hugging Face config.json of the Qwen3 models), for a config whose `model`
#: directory is not on this machine: looked up by the directory's name.
KNOWN = {
    "qwen3-1.7b": dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28,
                       num_attention_heads=16, num_key_value_heads=8, head_dim=128,
                       vocab_size=151936, tie_word_embeddings=True),
    "qwen3-8b": dict(hidden_size=4096, intermediate_size=12288, num_hidden_layers=36,
                     num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                     vocab_size=151936, tie_word_embeddings=False),
    "qwen3-32b": dict(hidden_size=5120, intermediate_size=25600, num_hidden_layers=64,
                      num_attention_heads=64, num_key_value_heads=8, head_dim=128,
                      vocab_size=151936, tie_word_embeddings=False),
}  # fmt: skip


@dataclass(frozen=True)
class Arch:
    """The numbers of a decoder-only transformer the estimate needs."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Arch:
        heads = config["num_attention_heads"]
        return cls(
            hidden=config["hidden_size"],
            intermediate=config["intermediate_size"],
            layers=config["num_hidden_layers"],
            heads=heads,
            kv_heads=config.get("num_key_value_heads") or heads,
            head_dim=config.get("head_dim") or config["hidden_size"] // heads,
            vocab=config["vocab_size"],
            tied=bool(config.get("tie_word_embeddings", False)),
        )

    @property
    def q(self) -> int:
        return self.heads * self.head_dim

    @property
    def k(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def layer_params(self) -> int:
        h, norms = self.hidden, 2 * self.hidden + 2 * self.head_dim
        return 2 * h * self.q + 2 * h * self.k + 3 * h * self.intermediate + norms

    @property
    def root_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied else 2) + self.hidden

    @property
    def params(self) -> int:
        return self.layers * self.layer_params + self.root_params


def architecture(cfg: TrainConfig, vocab_size: int = 0) -> Arch:
    """The model's architecture: `hf_config`, or the `model` directory's config.json, or, for a
    directory not on this machine, KNOWN by its name."""
    if cfg.hf_config:
        fields = dict(cfg.hf_config)
        fields.setdefault("vocab_size", vocab_size or cfg.tokenizer_vocab_size)
        return Arch.from_config(fields)
    config_file = Path(cfg.model) / "config.json"
    if config_file.is_file():
        data = json.loads(config_file.read_text())
        return Arch.from_config(data.get("text_config", data))
    name = Path(cfg.model).name.lower()
    if name in KNOWN:
        return Arch.from_config(KNOWN[name])
    raise TrainingError(
        f"{cfg.model} has no config.json here and is none of {', '.join(KNOWN)}: "
        "download the model first, or plan with hf_config"
    )


def activation_bytes_per_token(arch: Arch, policy: str, b: int) -> float:
    """What one decoder layer keeps per token for the backward (see the module docstring)."""
    h, q, k, i = arch.hidden, arch.q, arch.k, arch.intermediate
    if policy == "none":
        small = 4 * (2 + 2 * arch.heads + arch.kv_heads)
        return 2 * h * (4 + 2 * b) + (q + k) * (4 + 3 * b) + 4 * b * i + small
    if policy == "selective":
        return b * (3 * h + 2 * q + 2 * k + 2 * i) + 4 * arch.heads
    if policy == "full":
        return b * h
    raise TrainingError(f"no per-layer activation size for policy {policy!r}")


def loss_bytes(arch: Arch, tokens: int, loss: str, b: int) -> float:
    v, h = arch.vocab, arch.hidden
    if loss == "full":
        return (b + 8) * tokens * v
    chunk = CHUNK_TOKENS if loss == "chunked" else max(1, tokens * h // v)
    return (2 * b + 8) * min(chunk, tokens) * v + (4 + b) * v * h + 2 * b * tokens * h


@dataclass(frozen=True)
class Estimate:
    """Bytes per GPU by what holds them, and the activation policy they assume."""

    rows: dict[str, float]
    policy: str
    checkpointed_layers: int

    @property
    def total(self) -> float:
        return sum(self.rows.values())


def estimate(
    arch: Arch, cfg: TrainConfig, gpus: int, policy: str, checkpointed: int, loss: str, b: int = 2
) -> Estimate:
    """Per-GPU bytes with `checkpointed` of the layers under `policy` (full or selective) and
    the rest kept whole; `loss` is chunked, liger or full."""
    t, n = cfg.micro_batch_tokens, max(1, gpus)
    kept = activation_bytes_per_token(arch, "none", b)
    if policy == "none":
        checkpointed = 0
    per_layer = activation_bytes_per_token(arch, "full" if policy == "auto" else policy, b)
    if cfg.activation_offload and policy in ("full", "auto"):
        per_layer = 0.0  # in pinned host memory
    recompute = kept if checkpointed else 0.0
    activations = t * (checkpointed * per_layer + (arch.layers - checkpointed) * kept + recompute)
    rows = {
        "parameters (fp32, sharded)": 4 * arch.params / n,
        "gradients (fp32, sharded)": 4 * arch.params / n,
        "optimizer (AdamW, sharded)": 8 * arch.params / n,
        "gathered parameters and grads": b * arch.root_params + (3 * b + 4) * arch.layer_params,
        f"activations ({policy}, {checkpointed}/{arch.layers} layers checkpointed)": activations,
        f"loss ({loss})": loss_bytes(arch, t, loss, b),
    }
    return Estimate(rows, policy, checkpointed)


def plan(
    arch: Arch, cfg: TrainConfig, gpus: int, gpu_bytes: float, loss: str, b: int = 2
) -> Estimate:
    """The estimate under the config's policy; `auto`: the fewest fully checkpointed layers that
    fit `gpu_bytes` (all of them when nothing fits)."""
    policy = cfg.activation_checkpointing
    if policy != "auto":
        count = 0 if policy == "none" else arch.layers
        return estimate(arch, cfg, gpus, policy, count, loss, b)
    for count in range(arch.layers + 1):
        found = estimate(arch, cfg, gpus, "auto", count, loss, b)
        if found.total <= USABLE * gpu_bytes:
            return found
    return found


def format_plan(found: Estimate, arch: Arch, gpus: int, gpu_bytes: float, title: str) -> str:
    """The table `trajlake train --plan` prints, ending in the verdict."""
    lines = [title, f"{'per GPU':<62} {'GiB':>8}"]
    lines += [f"{name:<62} {value / GIB:>8.1f}" for name, value in found.rows.items()]
    lines.append(f"{'total':<62} {found.total / GIB:>8.1f}")
    budget = USABLE * gpu_bytes
    verdict = "fits" if found.total <= budget else "does not fit"
    lines.append(
        f"{verdict}: {found.total / GIB:.1f} GiB of {budget / GIB:.1f} GiB usable "
        f"({USABLE:.0%} of {gpu_bytes / GIB:.0f} GiB) on each of {gpus} GPUs; "
        f"{arch.params / 1e9:.2f}B parameters"
    )
    return "\n".join(lines)
