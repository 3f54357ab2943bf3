"""The loss without full logits: chunked linear cross-entropy against the full logits' loss and
gradients, packed rows against the same samples padded, and the choice of implementation."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from transformers import AutoConfig, AutoModelForCausalLM

from trajlake.training.chat import IGNORE_INDEX
from trajlake.training.data import Example, collate
from trajlake.training.errors import TrainingError
from trajlake.training.loss import (
    attach_loss,
    chunked_linear_cross_entropy,
    head_loss_sum,
    resolve_loss,
    token_loss_sum,
)
from trajlake.training.model import attention_implementation

pytestmark = pytest.mark.training

VOCAB = 300


def _model(tied: bool = True) -> torch.nn.Module:
    config = AutoConfig.for_model(
        "qwen3", vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, tie_word_embeddings=tied,
    )  # fmt: skip
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, attn_implementation="sdpa").train()


def _examples(lengths: list[int]) -> list[Example]:
    generator = torch.Generator().manual_seed(1)
    examples = []
    for n, length in enumerate(lengths):
        ids = torch.randint(0, VOCAB, (length,), generator=generator, dtype=torch.int32)
        labels = ids.clone()
        labels[: length // 3] = IGNORE_INDEX  # the prompt: not trained
        examples.append(Example(f"s{n}", ids, labels))
    return examples


def _loss_and_grads(model, batch, implementation) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    loss = token_loss_sum(model, batch, implementation)
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("pack", [False, True])
def test_chunked_loss_and_every_gradient_equal_the_full_logits_ones(
    tied: bool, pack: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("trajlake.training.loss.CHUNK_TOKENS", 7)  # many chunks, a ragged last
    model = _model(tied)
    batch = collate(_examples([40, 23, 31]), pack, pad_id=0)
    full, full_grads = _loss_and_grads(model, batch, "full")
    chunked, chunked_grads = _loss_and_grads(model, batch, "chunked")
    assert chunked == pytest.approx(full, rel=1e-6)
    assert full_grads.keys() == chunked_grads.keys()
    for name, grad in full_grads.items():
        torch.testing.assert_close(chunked_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


class _LargestLogits(TorchDispatchMode):
    """The most rows of any tensor over the vocabulary an op returns."""

    def __init__(self) -> None:
        super().__init__()
        self.rows = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor) and tensor.ndim and tensor.shape[-1] == VOCAB:
                self.rows = max(self.rows, tensor.numel() // VOCAB)
        return out


def test_the_chunked_loss_never_holds_every_positions_logits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("trajlake.training.loss.CHUNK_TOKENS", 8)
    model = _model(tied=False)
    batch = collate(_examples([60, 50]), pack=True, pad_id=0)
    largest = {}
    for implementation in ("full", "chunked"):
        with _LargestLogits() as seen:
            token_loss_sum(model, batch, implementation).backward()
        largest[implementation] = seen.rows
    assert largest["full"] >= 110  # every position's logits
    assert largest["chunked"] <= 32  # the head weight's transpose (hidden 32); logits: 8 rows


def test_chunked_cross_entropy_matches_in_bf16() -> None:
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(50, 16, generator=generator).bfloat16().requires_grad_()
    weight = torch.randn(VOCAB, 16, generator=generator).bfloat16().requires_grad_()
    targets = torch.randint(0, VOCAB, (50,), generator=generator)
    full = torch.nn.functional.cross_entropy((hidden @ weight.T).float(), targets, reduction="sum")
    full.backward()
    expected = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    chunked = chunked_linear_cross_entropy(hidden, weight, targets, chunk=16)
    chunked.backward()
    assert chunked.item() == pytest.approx(full.item(), rel=1e-4)
    assert weight.grad.dtype == torch.bfloat16
    torch.testing.assert_close(hidden.grad, expected[0], rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(weight.grad, expected[1], rtol=2e-2, atol=2e-2)


def test_no_trained_token_gives_zero_and_a_backward() -> None:
    model = _model()
    batch = collate(_examples([12]), pack=False, pad_id=0)
    batch.targets[:] = IGNORE_INDEX
    loss = token_loss_sum(model, batch, "chunked")
    loss.backward()
    assert loss.item() == 0.0
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())


def test_packed_rows_train_as_the_samples_padded() -> None:
    """One packed row and the same samples as padded rows: same loss, same gradients. Without
    the per-sample position ids (attention across samples) the loss differs."""
    model = _model()
    examples = _examples([40, 23, 31])
    packed = collate(examples, pack=True, pad_id=0)
    padded = collate(examples, pack=False, pad_id=0)
    assert packed.n_targets == padded.n_targets
    loss_packed, grads_packed = _loss_and_grads(model, packed, "chunked")
    loss_padded, grads_padded = _loss_and_grads(model, padded, "chunked")
    assert loss_packed == pytest.approx(loss_padded, rel=1e-5)
    for name, grad in grads_padded.items():
        torch.testing.assert_close(grads_packed[name], grad, rtol=1e-3, atol=1e-5, msg=name)
    packed.position_ids = torch.arange(packed.input_ids.shape[1])[None]  # one long sequence
    with torch.no_grad():
        leaking = token_loss_sum(model, packed, "chunked").item()
    assert leaking != pytest.approx(loss_padded, rel=1e-5)


def test_an_attached_loss_is_the_one_used() -> None:
    model = _model()
    batch = collate(_examples([20, 18]), pack=True, pad_id=0)
    with torch.no_grad():
        expected = head_loss_sum(
            model, batch.input_ids, batch.position_ids, None, batch.targets, "full"
        ).item()
        attach_loss(model, "chunked")
        assert token_loss_sum(model, batch, "full").item() == pytest.approx(expected, rel=1e-6)
        attach_loss(model, "no-such-loss")
        with pytest.raises(TrainingError, match="unknown loss"):
            token_loss_sum(model, batch)


def test_packed_rows_get_an_attention_that_keeps_samples_apart() -> None:
    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    assert attention_implementation("auto", cpu, pack=True) == "sdpa"  # block-diagonal mask
    assert attention_implementation("auto", cuda, pack=False) == "sdpa"
    flash = importlib.util.find_spec("flash_attn") is not None
    expected = "flash_attention_2" if flash else "flex_attention"  # varlen, or a document mask
    assert attention_implementation("auto", cuda, pack=True) == expected
    assert attention_implementation("eager", cuda, pack=True) == "eager"


def test_liger_is_chosen_only_where_it_runs() -> None:
    cpu = torch.device("cpu")
    assert resolve_loss("auto", cpu) == "chunked"
    assert resolve_loss("full", cpu) == "full"
    with pytest.raises(TrainingError, match="train-gpu"):
        resolve_loss("liger", cpu)
