"""The recipe's CUDA paths, checked on the CPU as far as the CPU allows:

- FlexAttention's document masks for packed rows (the attention `auto` picks on CUDA without
  flash-attn): torch runs its forward on the CPU, not its backward, so the loss is compared;
- Liger's fused linear cross-entropy (the loss `auto` picks on CUDA with the `train-gpu`
  extra): Triton's interpreter (TRITON_INTERPRET=1) runs its kernels on the CPU, so loss and
  every gradient are compared. The `dev` extra installs liger-kernel (and the Triton that
  torch's CUDA build pins), so CI runs it; without liger-kernel the test skips and says so.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
import torch
from test_training_loss import _examples, _loss_and_grads, _model

from trajlake.training.data import collate
from trajlake.training.loss import resolve_loss, token_loss_sum

pytestmark = pytest.mark.training


def test_flex_attention_keeps_packed_samples_apart_as_padding_does() -> None:
    """A packed row under FlexAttention (its block mask built from the per-sample position ids)
    gives the loss of the same samples padded under sdpa; one long sequence does not."""
    examples = _examples([40, 23, 31])
    padded = collate(examples, pack=False, pad_id=0)
    packed = collate(examples, pack=True, pad_id=0)
    sdpa, flex = _model(), _model()
    flex.set_attn_implementation("flex_attention")
    assert flex.config._attn_implementation == "flex_attention"
    with torch.no_grad():
        expected = token_loss_sum(sdpa, padded).item()
        assert token_loss_sum(flex, packed).item() == pytest.approx(expected, rel=1e-5)
        packed.position_ids = torch.arange(packed.input_ids.shape[1])[None]  # one sequence
        assert token_loss_sum(flex, packed).item() != pytest.approx(expected, rel=1e-5)


@pytest.mark.skipif(
    importlib.util.find_spec("liger_kernel") is None,
    reason='liger-kernel is not installed (pip install -e ".[dev,train]"); with it, '
    "this test runs Liger's kernels on the CPU under Triton's interpreter",
)
@pytest.mark.parametrize("pack", [False, True])
def test_liger_loss_and_every_gradient_equal_the_chunked_ones(
    pack: bool, request: pytest.FixtureRequest
) -> None:
    if os.environ.get("TRITON_INTERPRET") != "1":  # Triton reads it when the kernels load
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        env = {**os.environ, "TRITON_INTERPRET": "1"}
        done = subprocess.run(
            [*command, request.node.nodeid], cwd=request.config.rootpath, env=env,
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[-3000:]
        return
    assert resolve_loss("liger", torch.device("cpu")) == "liger"
    assert resolve_loss("auto", torch.device("cpu")) == "chunked"  # never chosen on the CPU
    model = _model(tied=False)
    batch = collate(_examples([40, 23, 31]), pack, pad_id=0)
    chunked, chunked_grads = _loss_and_grads(model, batch, "chunked")
    liger, liger_grads = _loss_and_grads(model, batch, "liger")
    assert liger == pytest.approx(chunked, rel=1e-5)
    for name, grad in chunked_grads.items():
        torch.testing.assert_close(liger_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)
