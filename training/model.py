"""The student model: built from a local Hugging Face directory or a config, sharded with FSDP2.

Every rank builds the model on the meta device (no memory), shards it (`fully_shard` per
decoder layer, then the root), allocates only its shards, and receives the weights from rank 0,
the only rank that holds a full copy. So a 32B student needs one full copy per node's rank 0,
not one per GPU.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    set_model_state_dict,
)
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig, PretrainedConfig

from trajlake.training.checkpointing import (
    apply_checkpointing,
    apply_kernels,
    decoder_layers,
    resolve_kernels,
)
from trajlake.training.config import TrainConfig
from trajlake.training.errors import TrainingError
from trajlake.training.loss import attach_loss, resolve_loss
from trajlake.training.memory import GIB, Arch, plan


def attention_implementation(choice: str, device: torch.device, pack: bool = False) -> str:
    """`auto`: on CUDA, flash_attention_2 with flash-attn installed (variable-length kernels
    from the packed position ids), else for packed rows flex_attention (a block-sparse document
    mask from the same position ids, torch's own); sdpa otherwise. Every one of them keeps a
    packed row's samples apart: Hugging Face derives the sample boundaries from the position ids
    (sdpa and eager get a dense block-diagonal mask: right, but quadratic in the row's length)."""
    if choice != "auto":
        return choice
    if device.type != "cuda":
        return "sdpa"
    if importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "flex_attention" if pack else "sdpa"


def load_hf_config(cfg: TrainConfig, vocab_size: int) -> PretrainedConfig:
    """The model's config: from `cfg.model`, or built from `cfg.hf_config` (vocab defaults to
    the tokenizer's)."""
    if cfg.model:
        return AutoConfig.from_pretrained(cfg.model)
    fields = {"vocab_size": vocab_size, **cfg.hf_config}
    model_type = fields.pop("model_type", None)
    if not model_type:
        raise TrainingError("hf_config needs a model_type, e.g. model_type: qwen3")
    if fields["vocab_size"] < vocab_size:
        raise TrainingError(f"hf_config.vocab_size is below the tokenizer's {vocab_size}")
    return AutoConfig.for_model(model_type, **fields)


def build_full_model(cfg: TrainConfig, config: PretrainedConfig, attn: str) -> nn.Module:
    """An unsharded model with real weights on the CPU: the checkpoint's, or a seeded init."""
    if cfg.model:
        return AutoModelForCausalLM.from_pretrained(
            cfg.model, config=config, dtype="auto", attn_implementation=attn
        )
    torch.manual_seed(cfg.seed)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation=attn)


def build_sharded_model(
    cfg: TrainConfig, config: PretrainedConfig, device: torch.device, bf16: bool
) -> nn.Module:
    """The FSDP2-sharded model on `device`, with rank 0's weights, ready to train."""
    attn = attention_implementation(cfg.attn_implementation, device, cfg.pack)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(
            config, dtype=torch.float32, attn_implementation=attn
        )
    model.config.use_cache = False
    apply_kernels(model, resolve_kernels(cfg.kernels, device))
    policy, offload = cfg.activation_checkpointing, cfg.activation_offload
    apply_checkpointing(model, policy, auto_layers(cfg, config, device, bf16), offload)
    shard(model, bf16)
    attach_loss(model, resolve_loss(cfg.loss, device))
    model.to_empty(device=device)
    full = build_full_model(cfg, config, attn) if dist.get_rank() == 0 else None
    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
    set_model_state_dict(model, full.state_dict() if full else {}, options=options)
    _broadcast_buffers(model, full, device)
    model.train()
    return model


def auto_layers(
    cfg: TrainConfig, config: PretrainedConfig, device: torch.device, bf16: bool
) -> int:
    """Layers that `activation_checkpointing: auto` checkpoints: the fewest that fit the GPU's
    memory by training/memory.py's estimate; all of them where no memory size is known (CPU)."""
    layers = config.num_hidden_layers
    if cfg.activation_checkpointing != "auto":
        return layers
    gib = cfg.gpu_memory_gib
    if not gib and device.type == "cuda":
        gib = torch.cuda.get_device_properties(device).total_memory / GIB
    if not gib:
        return layers
    arch = Arch.from_config(config.to_dict())
    loss = resolve_loss(cfg.loss, device)
    world = dist.get_world_size() if dist.is_initialized() else 1
    found = plan(arch, cfg, world, gib * GIB, loss, 2 if bf16 else 4)
    return found.checkpointed_layers


def shard(model: nn.Module, bf16: bool) -> None:
    """`fully_shard` each decoder layer, then the root (embeddings, final norm, LM head)."""
    layers = decoder_layers(model)
    policy = MixedPrecisionPolicy(
        param_dtype=torch.bfloat16 if bf16 else None,
        reduce_dtype=torch.float32 if bf16 else None,
    )
    for layer in layers:
        fully_shard(layer, mp_policy=policy)
    fully_shard(model, mp_policy=policy)


def _broadcast_buffers(model: nn.Module, full: nn.Module | None, device: torch.device) -> None:
    """Buffers outside the state dict (rotary frequencies) were left empty by `to_empty`:
    rank 0 sends its own."""
    persistent = set(model.state_dict())
    source = dict(full.named_buffers()) if full is not None else {}
    for name, buffer in model.named_buffers():
        if name in persistent:
            continue
        value = source[name].to(device, buffer.dtype) if full is not None else buffer
        dist.broadcast(value, src=0)
        buffer.copy_(value)


def gather_full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every rank takes part; rank 0 gets the full, unsharded weights on the CPU."""
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=options)


def save_hf_model(
    state: dict[str, Any],
    config: PretrainedConfig,
    generation: GenerationConfig,
    out_dir: Path,
    dtype: torch.dtype,
) -> None:
    """Write `state` as a Hugging Face model (`from_pretrained` and vLLM load it)."""
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, assign=True)
    model.tie_weights()  # assign gave tied parameters separate tensors: share them again
    model.config.use_cache = True
    model.generation_config = generation
    model.save_pretrained(out_dir)


def generation_config(cfg: TrainConfig, end_of_turn: int, tokenizer: Any) -> GenerationConfig:
    """The pretrained model's generation settings; for a model built from a config, stop at
    the end of an assistant turn or of the text."""
    if cfg.model and (Path(cfg.model) / "generation_config.json").is_file():
        return GenerationConfig.from_pretrained(cfg.model)
    stop = sorted({end_of_turn, tokenizer.eos_token_id} - {None})
    return GenerationConfig(eos_token_id=stop, pad_token_id=tokenizer.pad_token_id)


def matmul_params(config: PretrainedConfig, model: nn.Module) -> int:
    """Parameters that take part in matrix multiplies (all but an untied input embedding)."""
    total = sum(p.numel() for p in model.parameters())  # shared (tied) parameters count once
    tied = getattr(config, "tie_word_embeddings", False)
    return total if tied else total - config.vocab_size * config.hidden_size


def describe_model(cfg: TrainConfig, device: torch.device, model: nn.Module) -> str:
    """One line: the attention, kernels, loss and checkpointing the run uses."""
    layers = decoder_layers(model)
    checkpointed = sum(bool(getattr(layer, "gradient_checkpointing", False)) for layer in layers)
    return (
        f"attention {model.config._attn_implementation}, kernels "
        f"{resolve_kernels(cfg.kernels, device)}, loss {resolve_loss(cfg.loss, device)}, "
        f"activation checkpointing {cfg.activation_checkpointing} "
        f"({checkpointed}/{len(layers)} layers)"
    )
