"""Activation checkpointing policies (same loss, different recomputation), the memory estimate
(against the tensors a layer really saves, and the issue's measured peak), `trajlake train
--plan` on the shipped configs, and those configs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from transformers import AutoConfig, AutoModelForCausalLM

from trajlake.cli import main as cli_main
from trajlake.training import checkpointing
from trajlake.training.chat import IGNORE_INDEX
from trajlake.training.checkpointing import apply_checkpointing, decoder_layers, selective_contexts
from trajlake.training.config import TrainConfig, load_train_config
from trajlake.training.data import Batch
from trajlake.training.loss import token_loss_sum
from trajlake.training.memory import (
    GIB,
    KNOWN,
    Arch,
    activation_bytes_per_token,
    architecture,
    estimate,
    plan,
)

pytestmark = pytest.mark.training

CONFIGS = Path(__file__).resolve().parent.parent / "training" / "configs"
TINY = dict(
    vocab_size=256, hidden_size=96, intermediate_size=200, num_hidden_layers=3,
    num_attention_heads=6, num_key_value_heads=2, head_dim=8, tie_word_embeddings=True,
)  # fmt: skip


def _model(dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    torch.manual_seed(0)
    config = AutoConfig.for_model("qwen3", **TINY)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    return model.to(dtype).train()


def _batch(tokens: int = 64) -> Batch:
    generator = torch.Generator().manual_seed(2)
    ids = torch.randint(0, TINY["vocab_size"], (1, tokens), generator=generator)
    targets = ids.roll(-1, 1)
    targets[0, -1] = IGNORE_INDEX
    return Batch(ids, targets, torch.arange(tokens)[None], None, [tokens])


class _OpCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        self.ops[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def _run(policy: str, layers: int = 0) -> tuple[float, dict[str, torch.Tensor], Counter[str]]:
    """Loss, gradients and the ops the backward ran, under `policy`."""
    model = _model()
    assert apply_checkpointing(model, policy, layers) == {"none": 0, "auto": layers}.get(policy, 3)
    loss = token_loss_sum(model, _batch())
    with _OpCounter() as backward:
        loss.backward()
    return loss.item(), {n: p.grad for n, p in model.named_parameters()}, backward.ops


def test_checkpointing_policies_give_identical_losses_and_gradients() -> None:
    """Same numbers; what differs is what the backward recomputes: `full` reruns the layers'
    matmuls, `selective` only their cheap ops (norms), `none` nothing."""
    runs = {p: _run(p) for p in ("none", "full", "selective")} | {"auto": _run("auto", 2)}
    loss, grads, plain = runs["none"]
    for policy, (other_loss, other_grads, _) in runs.items():
        assert other_loss == loss, policy
        for name, grad in grads.items():
            torch.testing.assert_close(other_grads[name], grad, rtol=1e-6, atol=1e-7)
    full, selective, auto = runs["full"][2], runs["selective"][2], runs["auto"][2]
    assert full["mm"] > auto["mm"] > plain["mm"]  # auto: 2 of 3 layers recomputed
    assert selective["mm"] == plain["mm"]  # matmul outputs kept
    assert selective["rsqrt"] > plain["rsqrt"]  # norms recomputed


def test_auto_checkpoints_the_first_layers() -> None:
    model = _model()
    apply_checkpointing(model, "auto", 2)
    assert [layer.gradient_checkpointing for layer in decoder_layers(model)] == [True, True, False]


def test_booleans_of_older_configs_still_load() -> None:
    path = CONFIGS / "tiny-cpu.yaml"
    assert load_train_config(path).activation_checkpointing == "full"  # `true` in the file
    off = load_train_config(path, ["activation_checkpointing=false"])
    assert off.activation_checkpointing == "none"
    assert load_train_config(path, ["activation_checkpointing=selective"]).loss == "auto"


def _saved_bytes_per_token_and_layer(policy: str, monkeypatch: pytest.MonkeyPatch) -> float:
    """What autograd (and, under `selective`, the checkpoint's cache) keeps after a bf16
    forward, per token and layer (two lengths, so what does not grow with the tokens drops
    out)."""
    caches: list = []

    def recorded_contexts() -> tuple:
        forward, recompute = selective_contexts()
        caches.append(forward.storage)  # torch's cache of the kept op outputs (torch pinned)
        return forward, recompute

    monkeypatch.setattr(checkpointing, "selective_contexts", recorded_contexts)

    def saved(tokens: int) -> int:
        model = _model(torch.bfloat16)
        apply_checkpointing(model, policy, 0)
        storages: dict[int, int] = {}

        def keep(tensor: torch.Tensor) -> torch.Tensor:
            storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
            return tensor

        batch = _batch(tokens)
        caches.clear()
        with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
            model.get_decoder()(input_ids=batch.input_ids, position_ids=batch.position_ids)
        for cache in caches:
            for outputs in cache.values():
                for kept in tree_flatten(list(outputs.values()))[0]:
                    kept = getattr(kept, "val", kept)  # unwrapped from its version check
                    if isinstance(kept, torch.Tensor):  # not the marker of a recomputed op
                        keep(kept)
        return sum(storages.values())

    return (saved(512) - saved(256)) / 256 / TINY["num_hidden_layers"]


@pytest.mark.parametrize("policy", ["none", "selective", "full"])
def test_the_activation_estimate_is_what_a_layer_saves(
    policy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    arch = Arch.from_config(TINY)
    measured = _saved_bytes_per_token_and_layer(policy, monkeypatch)
    measured -= (6 * arch.hidden + 4) / arch.layers  # the final norm's: it is in no layer
    assert activation_bytes_per_token(arch, policy, 2) == pytest.approx(measured, rel=0.05)


def test_the_estimate_against_the_measured_32k_peak() -> None:
    """The issue's H200 figure: a Qwen3-1.7B-sized model, one GPU, 32K tokens, full
    checkpointing, the full-logits loss then in use: 79.5 GiB peak."""
    arch = Arch.from_config(KNOWN["qwen3-1.7b"])
    cfg = TrainConfig(hf_config={"model_type": "qwen3"}, micro_batch_tokens=32768)
    old = estimate(arch, cfg, 1, "full", arch.layers, "full")
    assert old.total / GIB == pytest.approx(79.5, rel=0.05)
    new = estimate(arch, cfg, 1, "full", arch.layers, "chunked")
    assert new.total / GIB < 40  # the logits were ~46 GiB of it


def test_auto_checkpoints_as_many_layers_as_the_memory_needs() -> None:
    small = Arch.from_config(KNOWN["qwen3-1.7b"])
    cfg = TrainConfig(hf_config={"model_type": "qwen3"}, activation_checkpointing="auto")
    gpus = (80, 110, 141)  # GiB
    counts = [plan(small, cfg, 1, gib * GIB, "chunked").checkpointed_layers for gib in gpus]
    assert small.layers > counts[0] > counts[1] > counts[2] == 0  # an H200 checkpoints nothing
    big = Arch.from_config(KNOWN["qwen3-32b"])
    assert plan(big, cfg, 16, 80 * GIB, "chunked").checkpointed_layers == big.layers


@pytest.mark.parametrize(
    ("name", "gpus", "verdict"),
    [("qwen3-8b-32k", 8, "fits"), ("qwen3-32b-32k", 16, "fits"), ("qwen3-32b-32k", 8, "does not")],
)
def test_plan_prints_a_table_and_a_verdict(
    name: str, gpus: int, verdict: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = CONFIGS / f"{name}.yaml"
    assert cli_main(["train", "--plan", str(path), "--gpus", str(gpus), "--gpu-mem", "80"]) == 0
    out = capsys.readouterr().out
    for row in ("parameters (fp32, sharded)", "optimizer (AdamW, sharded)", "activations", "loss"):
        assert row in out
    assert out.splitlines()[-1].startswith(f"{verdict} fit" if verdict == "does not" else verdict)
    assert f"on each of {gpus} GPUs" in out


@pytest.mark.parametrize("name", ["qwen3-8b-32k", "qwen3-32b-32k"])
def test_the_large_configs_validate_with_the_papers_hyperparameters(name: str) -> None:
    cfg = load_train_config(CONFIGS / f"{name}.yaml")
    assert (cfg.epochs, cfg.lr, cfg.weight_decay, cfg.max_seq_len) == (3, 1e-5, 0.01, 32768)
    assert cfg.pack and cfg.loss == "auto"
    size = name.split("-")[1]
    arch = architecture(cfg)
    assert arch == Arch.from_config(KNOWN[f"qwen3-{size}"])
    assert f"{arch.params / 1e9:.0f}B" == {"8b": "8B", "32b": "33B"}[size]
    header = (CONFIGS / f"{name}.yaml").read_text().splitlines()[1]
    assert header.lstrip("# ").startswith("torchrun")
