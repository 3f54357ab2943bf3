"""Activation checkpointing policies and the fused kernels, applied to a model before sharding.

`activation_checkpointing` (training/config.py):

- `full`: every decoder layer keeps only its input and is recomputed in the backward;
- `selective`: every decoder layer keeps the outputs of its matrix multiplies and of attention
  (the expensive ops) and recomputes the rest (norms, rotary embeddings, activations, products);
- `none`: every layer keeps everything;
- `auto`: the first K layers checkpointed fully and the rest not, K the fewest that fit the
  memory budget (training/memory.py estimates it from the model config).

All four compute the same loss and gradients; they trade memory for recomputation.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import CheckpointPolicy, create_selective_checkpoint_contexts

from trajlake.training.errors import TrainingError

POLICIES = ("full", "selective", "none", "auto")
INSTALL_GPU = 'pip install -e ".[train,train-gpu]"'
_aten = torch.ops.aten
#: ops whose outputs `selective` keeps: matrix multiplies and attention kernels.
SAVED_OPS = {
    _aten.mm.default,
    _aten.addmm.default,
    _aten.bmm.default,
    _aten._scaled_dot_product_flash_attention.default,
    _aten._scaled_dot_product_efficient_attention.default,
    _aten._scaled_dot_product_cudnn_attention.default,
    _aten._scaled_dot_product_flash_attention_for_cpu.default,
}


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks named by the model's `_no_split_modules`, in order (sharded too:
    FSDP2 subclasses them)."""
    names = set(getattr(model, "_no_split_modules", None) or ())
    layers = [m for m in model.modules() if any(c.__name__ in names for c in type(m).__mro__)]
    if not layers:
        raise TrainingError(f"{type(model).__name__} names no decoder layers (_no_split_modules)")
    return layers


def apply_checkpointing(
    model: nn.Module, policy: str, checkpointed_layers: int, offload: bool = False
) -> int:
    """Checkpoint `model` by `policy` (`auto`: the first `checkpointed_layers` layers, fully;
    `offload`: what they keep goes to host memory); the number of layers checkpointed."""
    layers = decoder_layers(model)
    if policy not in POLICIES:
        raise TrainingError(f"activation_checkpointing {policy!r}: one of {', '.join(POLICIES)}")
    count = {"none": 0, "auto": min(checkpointed_layers, len(layers))}.get(policy, len(layers))
    if count == 0:
        return 0
    kwargs: dict[str, Any] = {"use_reentrant": False}
    if policy == "selective":
        kwargs["context_fn"] = selective_contexts
    enable_checkpointing(model, kwargs, offload)
    for index, layer in enumerate(layers):
        layer.gradient_checkpointing = index < count
    return count


def enable_checkpointing(
    model: nn.Module, kwargs: dict[str, Any] | None = None, offload: bool = False
) -> None:
    """Hugging Face's checkpointing on every decoder layer. Transformers renamed
    `gradient_checkpointing_enable` to `activation_checkpointing_enable` during 5.x (the old
    name then warns); CUDA images still ship the releases before it, so both are taken."""
    enable = getattr(model, "activation_checkpointing_enable", None)
    if enable is not None:
        enable(activation_checkpointing_kwargs=kwargs, offload=offload)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs, offload=offload)


def selective_contexts() -> tuple[Any, Any]:
    """The forward and recompute contexts of `selective`: keep SAVED_OPS, recompute the rest."""
    return create_selective_checkpoint_contexts(_keep_matmuls_and_attention)


def _keep_matmuls_and_attention(ctx: Any, op: Any, *args: Any, **kwargs: Any) -> CheckpointPolicy:
    return CheckpointPolicy.MUST_SAVE if op in SAVED_OPS else CheckpointPolicy.PREFER_RECOMPUTE


def resolve_kernels(choice: str, device: torch.device) -> str:
    """`auto` is liger (fused RMSNorm, RoPE, SwiGLU) on CUDA with liger-kernel, else torch."""
    has_liger = importlib.util.find_spec("liger_kernel") is not None
    if choice == "liger" and not (device.type == "cuda" and has_liger):
        raise TrainingError(f"kernels: liger needs CUDA and liger-kernel: {INSTALL_GPU}")
    if choice == "auto":
        return "liger" if device.type == "cuda" and has_liger else "torch"
    return choice


def apply_kernels(model: nn.Module, kernels: str) -> bool:
    """Swap in Liger's RMSNorm, RoPE and SwiGLU for a model type Liger patches; False when
    `kernels` is torch or Liger has no patch for this model type (it then runs as is)."""
    if kernels != "liger":
        return False
    liger = importlib.import_module("liger_kernel.transformers")
    patch = getattr(liger, f"apply_liger_kernel_to_{model.config.model_type}", None)
    if patch is None:
        return False
    # the loss is training/loss.py's: Liger's model-level loss patches stay off
    patch(rope=True, rms_norm=True, swiglu=True, cross_entropy=False,
          fused_linear_cross_entropy=False, model=model)  # fmt: skip
    return True
