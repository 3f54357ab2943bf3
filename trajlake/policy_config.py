"""Who acts in the loop: the teacher, the student, and how DAgger mixes them.

Sections of the configuration (`trajlake.config.Config`), kept apart from the pipeline's own
(bus, lake, sampler, …): the same fields speak to any OpenAI-compatible endpoint, the teacher
that generates and labels, and the student that DAgger puts in the loop.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Frozen(BaseModel):
    """A configuration section: immutable, and no field it does not know."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class TeacherConfig(Frozen):
    base_url: str = Field(
        "http://127.0.0.1:8000/v1", description="any OpenAI-compatible endpoint (vLLM, SGLang, …)"
    )
    base_urls: tuple[str, ...] = Field(
        (),
        description="more endpoints serving the same model as base_url (a list, or one string "
        "of comma-separated URLs); calls are spread over base_url and these, and a call that "
        "fails on one is retried on another. Not part of the teacher id",
    )
    pool_strategy: Literal["least_loaded", "round_robin"] = Field(
        "least_loaded",
        description="least_loaded: the endpoint with the fewest calls in flight; "
        "round_robin: each in turn",
    )
    down_after: int = Field(
        3, ge=1, description="an endpoint failing this many calls in a row is marked down"
    )
    down_for_s: float = Field(
        30, ge=0, description="a down endpoint gets no calls for this long, then is tried again"
    )
    model: str = Field("teacher", description="model name sent with every request")
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="environment variable holding the API key (never stored)"
    )
    endpoint_kind: str = Field(
        "openai-compatible", description="vllm, sglang, openai, double, …: part of the teacher id"
    )
    temperature: float = Field(0.6, description="sampling temperature")
    top_p: float = Field(1.0, description="nucleus sampling")
    max_tokens: int = Field(4096, description="most completion tokens per call")
    prompt_version: str = Field("v1", description="version of trajlake's prompt templates")
    tool_call_parse: Literal["auto", "native", "content"] = Field(
        "auto",
        description="where tool calls are read when tools were offered: native: only the "
        "reply's tool_calls field; auto: also the content (<tool_call> tags, fenced or bare "
        "JSON) when tool_calls is empty; content: the content always, its calls after any "
        "native ones (for a server whose parser takes only some). Part of the teacher id "
        "unless auto",
    )
    timeout_s: float = Field(120, description="one HTTP call longer than this is retried")
    max_retries: int = Field(4, ge=0, description="retries with backoff on 5xx, timeouts, drops")
    usd_per_mtok_in: float = Field(0.0, description="price per million prompt tokens")
    usd_per_mtok_out: float = Field(0.0, description="price per million completion tokens")
    budget_tokens: int = Field(
        0, ge=0, description="stop starting work before this many tokens are spent (0: no cap)"
    )

    @field_validator("base_urls", mode="before")
    @classmethod
    def _split_urls(cls, value: object) -> object:
        if isinstance(value, str):  # `--set teacher.base_urls=http://a/v1,http://b/v1`
            return tuple(url.strip() for url in value.split(",") if url.strip())
        return value

    def endpoints(self) -> list[str]:
        """Every endpoint calls may go to: base_url first, then base_urls, without repeats."""
        return list(dict.fromkeys([self.base_url, *self.base_urls]))


class StudentConfig(TeacherConfig):
    """The student as a policy (DAgger): any OpenAI-compatible endpoint serving the student,
    typically vLLM serving the last `trajlake train` output. The same fields as `teacher`."""

    model: str = Field("student", description="model name sent with every request")
    temperature: float = Field(0.7, description="sampling temperature (the DAgger paper's)")
    top_p: float = Field(0.9, description="nucleus sampling (the DAgger paper's)")
    checkpoint: str = Field(
        "",
        description="the served `trajlake train` output directory: its config.json and "
        "mixture_manifest.json make the student id, so every row knows which generation of the "
        "student visited the state; empty: the id comes from the model name and sampling",
    )


class DaggerConfig(Frozen):
    beta: tuple[float, ...] = Field(
        (),
        description="teacher probability per iteration, [beta_1, beta_2, ...], the last one "
        "repeating; empty: the paper's max(0.6, 1.0 - 0.2 (i - 1))",
    )
    kappa: int = Field(
        0,
        ge=0,
        description="> 0: the AggreVaTe-style variant, the student acts for the first kappa "
        "turns and the teacher completes the trajectory (beta unused)",
    )
    label_every: int = Field(
        1, ge=1, description="ask the teacher to label every k-th student state (cost control)"
    )
    label_budget_tokens: int = Field(
        0,
        ge=0,
        description="tokens (prompt + completion) the teacher's label calls may spend per "
        "rollout; past them the rollout goes on and its states stay unlabelled. 0: no limit. "
        "Label calls never count against agent.token_limit",
    )
    seed: int = Field(0, description="coin flips are drawn from (seed, task, iteration, turn)")

    @field_validator("beta")
    @classmethod
    def _probabilities(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0 <= b <= 1 for b in value):
            raise ValueError(f"every beta must be within [0, 1], got {list(value)}")
        return value

    def beta_for(self, iteration: int) -> float:
        """beta_i: the schedule's, else the paper's max(0.6, 1.0 - 0.2 (i - 1))."""
        if iteration < 1:
            raise ValueError(f"iterations count from 1, got {iteration}")
        if self.beta:
            return self.beta[min(iteration, len(self.beta)) - 1]
        return max(0.6, round(1.0 - 0.2 * (iteration - 1), 10))
