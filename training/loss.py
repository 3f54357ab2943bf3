"""The training loss without the sequence's full-vocabulary logits.

The loss of a micro-batch is the sum of the cross-entropy over its trained tokens (the step
divides by the global batch's count, training/step.py). At 32K context the full fp32 logits
alone are 32,768 x 151,936 x 4 bytes = 20 GB, plus their gradient; so the LM head and the
cross-entropy are fused and never see more than a chunk of positions at once:

- `chunked` (pure PyTorch, any device): only the trained positions are gathered, then
  CHUNK_TOKENS of them at a time go through the head; each chunk's fp32 logits give its loss and,
  right away, its gradients (softmax minus one-hot, times the head weight and times the hidden
  states), then are freed. The backward only scales the stored gradients. Peak: one chunk's
  logits plus the head's fp32 gradient, instead of every position's logits.
- `liger` (CUDA with liger-kernel, the `train-gpu` extra): Liger's fused linear cross-entropy
  (Triton), the same sum. Under Triton's interpreter (TRITON_INTERPRET=1) it runs on the CPU
  too, slowly: that is how the CPU tests check it against the others.
- `full`: the head's logits for every position, then `F.cross_entropy` (the reference).

Every implementation computes the head in the compute dtype and the softmax in fp32, as
`model(...).logits.float()` did. The loss runs inside the model's FSDP root (a method registered
with `register_fsdp_forward_method`), where the head weight is unsharded.
"""

from __future__ import annotations

import importlib.util
import os
from types import MethodType

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributed.fsdp import register_fsdp_forward_method

from trajlake.training.chat import IGNORE_INDEX
from trajlake.training.checkpointing import INSTALL_GPU
from trajlake.training.data import Batch
from trajlake.training.errors import TrainingError

#: the method `attach_loss` gives the model; FSDP unshards the root around it.
LOSS_METHOD = "trajlake_loss_sum"
#: positions per chunk: 512 x 151,936 x 4 bytes = 297 MiB of fp32 logits for Qwen3's vocabulary.
CHUNK_TOKENS = 512


def resolve_loss(choice: str, device: torch.device) -> str:
    """`auto` is liger on CUDA with liger-kernel installed, else chunked."""
    if choice != "auto":
        if choice == "liger" and not liger_available(device):
            raise TrainingError(
                f"loss: liger needs liger-kernel ({INSTALL_GPU}) and CUDA, or Triton's "
                "interpreter (TRITON_INTERPRET=1) to check its numbers on the CPU"
            )
        return choice
    return "liger" if device.type == "cuda" and liger_available(device) else "chunked"


def liger_available(device: torch.device) -> bool:
    """Liger's Triton kernels run on CUDA, or on any device under Triton's interpreter
    (TRITON_INTERPRET=1: slow, for checking the numbers; never chosen by `auto`)."""
    interpreted = os.environ.get("TRITON_INTERPRET") == "1"
    installed = importlib.util.find_spec("liger_kernel") is not None
    return installed and (device.type == "cuda" or interpreted)


def attach_loss(model: nn.Module, implementation: str) -> None:
    """Give `model` (sharded or not) its loss method; call after `fully_shard`."""

    def loss_sum(self: nn.Module, input_ids, position_ids, attention_mask, targets) -> torch.Tensor:
        return head_loss_sum(self, input_ids, position_ids, attention_mask, targets, implementation)

    setattr(model, LOSS_METHOD, MethodType(loss_sum, model))
    register_fsdp_forward_method(model, LOSS_METHOD)  # a no-op on an unsharded model


def token_loss_sum(model: nn.Module, batch: Batch, implementation: str = "chunked") -> torch.Tensor:
    """Sum of the cross-entropy over the batch's trained tokens, by the model's attached loss
    (`attach_loss`), or by `implementation` on a model that has none."""
    method = getattr(model, LOSS_METHOD, None)
    args = (batch.input_ids, batch.position_ids, batch.attention_mask, batch.targets)
    if method is not None:
        return method(*args)
    return head_loss_sum(model, *args, implementation)


def head_loss_sum(
    model: nn.Module,
    input_ids: torch.Tensor,
    position_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    targets: torch.Tensor,
    implementation: str,
) -> torch.Tensor:
    """The decoder's last hidden states through the LM head into the summed cross-entropy."""
    hidden = model.get_decoder()(
        input_ids=input_ids,
        position_ids=position_ids,
        attention_mask=attention_mask,
        use_cache=False,  # with a cache, Hugging Face models ignore packed position ids
    ).last_hidden_state
    head = model.get_output_embeddings()
    hidden, targets = hidden.flatten(0, 1), targets.flatten()
    if implementation == "full":
        logits = head(hidden).float()
        return F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum")
    if head.bias is not None:
        raise TrainingError("the fused losses take an LM head without bias: set loss: full")
    if implementation == "liger":
        from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy

        return liger_fused_linear_cross_entropy(
            hidden, head.weight, targets, ignore_index=IGNORE_INDEX, reduction="sum"
        )
    if implementation != "chunked":
        raise TrainingError(f"unknown loss {implementation!r}: auto, chunked, liger or full")
    trained = (targets != IGNORE_INDEX).nonzero().squeeze(1)
    return chunked_linear_cross_entropy(hidden[trained], head.weight, targets[trained])


def chunked_linear_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int | None = None
) -> torch.Tensor:
    """sum_i CE(hidden[i] @ weight.T, targets[i]) over every row, `chunk` rows at a time
    (CHUNK_TOKENS by default)."""
    return _ChunkedLinearCrossEntropy.apply(hidden, weight, targets, chunk or CHUNK_TOKENS)


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk):  # noqa: ANN001, ANN205
        grad_hidden = torch.empty_like(hidden)
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, hidden.shape[0], chunk):
            rows, target = hidden[start : start + chunk], targets[start : start + chunk]
            logits = (rows @ weight.T).float()
            lse = torch.logsumexp(logits, dim=-1)
            total += (lse - logits.gather(1, target[:, None]).squeeze(1)).sum()
            # d loss / d logits = softmax - one-hot, computed in place over the logits
            grad = logits.sub_(lse[:, None]).exp_()
            grad[torch.arange(grad.shape[0], device=grad.device), target] -= 1.0
            grad = grad.to(hidden.dtype)
            grad_hidden[start : start + chunk] = grad @ weight
            grad_weight += (grad.T @ rows).float()
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.weight_dtype = weight.dtype
        return total

    @staticmethod
    def backward(ctx, grad_output):  # noqa: ANN001, ANN205
        grad_hidden, grad_weight = ctx.saved_tensors
        scale = grad_output.to(grad_hidden.dtype)
        grad_w = (grad_weight * grad_output).to(ctx.weight_dtype)
        return grad_hidden * scale, grad_w, None, None
