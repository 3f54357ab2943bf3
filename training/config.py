"""The fine-tuning job's one configuration object: a YAML file plus `key=value` overrides.

Defaults are the paper's (3 epochs, lr 1e-5, weight decay 0.01, 32K context). Every field is
documented here; the resolved config is saved beside the final model and in every checkpoint.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from trajlake.errors import ConfigError
from trajlake.yamlfile import apply_override, describe, read_mapping


class TrainConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # data
    mixture: str = Field(
        "",
        description="mixture directory holding data.parquet and manifest.json (empty: "
        "generate a small synthetic mixture into output_dir/mixture)",
    )
    synthetic_samples: int = Field(64, ge=1, description="samples of the generated mixture")
    tokenizer: str = Field(
        "",
        description="Hugging Face tokenizer directory (empty: the model's, or, with no "
        "model path either, a tiny tokenizer trained on the mixture into output_dir/tokenizer)",
    )
    tokenizer_vocab_size: int = Field(1024, description="vocabulary of a tokenizer trained here")
    chat_template: str = Field(
        "", description="a Jinja file replacing the tokenizer's chat template (empty: keep it)"
    )
    max_seq_len: int = Field(
        32768,
        ge=16,
        description="longer samples are cut back to their last complete assistant "
        "turn; samples left with no assistant turn are dropped and counted",
    )
    micro_batch_tokens: int = Field(
        32768,
        ge=16,
        description="tokens per micro-batch on each rank, padding included: the "
        "length of a packed row, or rows x longest sample of a length-grouped batch",
    )
    pack: bool = Field(
        False,
        description="pack several samples in one row, with per-sample position ids; attention "
        "never crosses a sample boundary: flash_attention_2 (variable-length kernels) or "
        "flex_attention (document mask) on CUDA, a dense block-diagonal mask with sdpa and eager",
    )
    # model
    model: str = Field("", description="local Hugging Face model directory (from_pretrained)")
    hf_config: dict[str, Any] = Field(
        default_factory=dict,
        description="with no model path: a Hugging Face config (model_type: qwen3, hidden_size, "
        "...) for a randomly initialised model; vocab_size defaults to the tokenizer's",
    )
    attn_implementation: Literal["auto", "sdpa", "flash_attention_2", "flex_attention", "eager"] = (
        Field(
            "auto",
            description="auto: flash_attention_2 on CUDA with flash-attn; else, packed on CUDA, "
            "flex_attention; else sdpa",
        )
    )
    activation_checkpointing: Literal["full", "selective", "none", "auto"] = Field(
        "full",
        description="full: every decoder layer recomputed in the backward; selective: layers keep "
        "their matmul and attention outputs and recompute the rest; none; auto: the fewest fully "
        "checkpointed layers that fit gpu_memory_gib (full on CPU without it). true/false of "
        "older configs mean full/none. training/checkpointing.py",
    )
    activation_offload: bool = Field(
        False,
        description="with checkpointing, keep the checkpointed layers' inputs in pinned host "
        "memory (frees layers x tokens x hidden x 2 bytes per GPU; costs a copy each way)",
    )
    loss: Literal["auto", "chunked", "liger", "full"] = Field(
        "auto",
        description="cross-entropy without the full logits: chunked (pure PyTorch) or liger "
        "(liger-kernel's fused kernel: CUDA, or the CPU under TRITON_INTERPRET=1 to check it); "
        "full materialises every logit; auto: liger on CUDA with liger-kernel installed, else "
        "chunked. training/loss.py",
    )
    kernels: Literal["auto", "torch", "liger"] = Field(
        "auto",
        description="liger: Liger's fused RMSNorm, RoPE and SwiGLU (CUDA, the train-gpu extra); "
        "auto: liger on CUDA when installed, else torch",
    )
    gpu_memory_gib: float = Field(
        0.0,
        ge=0,
        description="memory per GPU that activation_checkpointing: auto plans for (0: the "
        "device's own)",
    )
    mixed_precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto",
        description="auto: bf16 compute with fp32 master weights and reductions on GPU, "
        "fp32 on CPU",
    )
    # optimisation
    epochs: int = Field(3, ge=1, description="passes over the mixture")
    lr: float = Field(1e-5, gt=0, description="peak learning rate (AdamW)")
    betas: tuple[float, float] = Field((0.9, 0.95), description="AdamW betas")
    weight_decay: float = Field(0.01, ge=0, description="AdamW decay of matrices (not norms)")
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="share of steps warming up")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="cosine floor, as a share of lr")
    grad_accum: int = Field(1, ge=1, description="micro-batches per rank in one optimizer step")
    max_grad_norm: float = Field(1.0, gt=0, description="clip the global gradient norm to this")
    seed: int = Field(0, description="model init and data order; same seed, same run")
    # run
    output_dir: str = Field("runs/sft", description="checkpoints, metrics.jsonl and the model")
    checkpoint_every: int = Field(
        500, ge=0, description="write a resumable checkpoint every N steps (0: never)"
    )
    stop_after_steps: int = Field(
        0,
        ge=0,
        description="stop after this many steps (0: run every epoch); the schedule "
        "still spans all epochs, so `--resume` later continues exactly",
    )
    save_dtype: Literal["bfloat16", "float32"] = Field(
        "bfloat16", description="dtype of the saved Hugging Face model"
    )
    peak_tflops: float = Field(
        0.0, ge=0, description="per-GPU dense bf16 peak for MFU (0: looked up from the GPU name)"
    )

    @field_validator("activation_checkpointing", mode="before")
    @classmethod
    def _boolean_policy(cls, value: Any) -> Any:
        return {True: "full", False: "none"}.get(value, value) if isinstance(value, bool) else value

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if not self.model and not self.hf_config:
            raise ValueError("set model (a local Hugging Face directory) or hf_config")
        if self.model and self.hf_config:
            raise ValueError(
                "set model or hf_config, not both (override with hf_config={} to train the "
                "model directory)"
            )
        if self.micro_batch_tokens < self.max_seq_len:
            raise ValueError("micro_batch_tokens must be at least max_seq_len")
        return self

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain data, as it would be written in the YAML file."""
        return self.model_dump(mode="json")

    def hash(self) -> str:
        """A short, stable hash of the resolved config."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_train_config(path: str | Path, overrides: list[str] = ()) -> TrainConfig:
    """Read the YAML file at `path` and apply `key=value` overrides (values parsed as YAML,
    dotted keys reach into mappings: `hf_config.hidden_size=128`)."""
    data = read_mapping(path, "training config")
    for item in overrides:
        apply_override(data, item)
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(describe(e, f"invalid training config {path}")) from None
