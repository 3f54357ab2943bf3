"""A mixture spec (YAML): its sources, amounts and export styles, validated.

A spec names sources; each source is a condition on the `trajectories` view (shorthand fields,
a SQL `where`, or both: they are ANDed) and asks for a `count` of samples or a `share` of
`total`. A row that matches several sources is counted by the first one listed. `EXAMPLE_FILE`
(printed by `trajlake mixture example`) shows every field. `mixture_sql` compiles a spec to
the one DuckDB statement that builds it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from trajlake.consumers.languages import LanguageError, catalog
from trajlake.errors import ConfigError
from trajlake.lake.chat_styles import Style
from trajlake.lake.views import quote_literal
from trajlake.yamlfile import describe, read_mapping

#: A spec with every field, commented (`trajlake mixture example` prints it).
EXAMPLE_FILE = Path(__file__).with_name("mixture_example.yaml")


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


#: Fields that only mean something for one kind of source.
SVG_ONLY = (
    "rollout",
    "min_recall",
    "max_patch_lines",
    "max_tool_tokens",
    "min_truncation_ratio",
    "languages",
)
DAGGER_ONLY = ("iterations", "students", "max_label_samples_per_rollout", "label_pick")


class Source(_Spec):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="label of the source")
    count: int | None = Field(None, ge=0, description="samples wanted from this source")
    share: float | None = Field(None, ge=0, le=1, description="or this share of `total`")
    rollout: Literal["t1", "t2"] | None = Field(None, description="T1 or T2 trajectories")
    min_recall: float | None = Field(None, ge=0, le=1, description="verifier recall at least")
    max_patch_lines: int | None = Field(None, ge=0, description="changed lines at most")
    max_tool_tokens: int | None = Field(None, ge=0, description="longest tool output, tokens")
    min_truncation_ratio: float | None = Field(
        None, ge=0, le=1, description="truncation ratio at the context budget at least"
    )
    repos: list[str] | None = Field(None, description="only these repositories")
    languages: list[str] | None = Field(
        None,
        description="only tasks in these languages: keys or aliases of "
        "consumers/languages.yaml (go, ts, typescript, rust, …)",
    )
    teachers: list[str] | None = Field(None, description="only these teacher ids")
    exit_status: list[str] | None = Field(None, description="only rollouts that ended so")
    where: str | None = Field(None, description="any SQL condition on `trajectories`")
    kind: Literal["svg", "dagger"] = Field(
        "svg", description="svg: SVG trajectories; dagger: DAgger labels (rollouts_dagger)"
    )
    iterations: Literal["all", "last"] | list[int] = Field(
        "all", description="dagger: all (the aggregate DAgger trains on) | last | [1, 2, ...]"
    )
    students: list[str] | None = Field(None, description="dagger: only these student ids")
    max_label_samples_per_rollout: int | None = Field(
        None, ge=0, description="dagger: at most this many label samples per rollout"
    )
    label_pick: Literal["newest", "uniform"] = Field(
        "newest", description="dagger: which labels a cap keeps (uniform: seeded draw)"
    )

    @field_validator("languages")
    @classmethod
    def _language_keys(cls, names: list[str] | None) -> list[str] | None:
        """Aliases (ts) become keys (typescript); an unknown name fails the spec's load."""
        try:
            return None if names is None else catalog().resolve(names, "languages")
        except LanguageError as e:
            raise ValueError(str(e)) from None

    @model_validator(mode="after")
    def _one_amount(self) -> Source:
        if (self.count is None) == (self.share is None):
            raise ValueError(f"source {self.name!r}: give exactly one of count or share")
        wrong = SVG_ONLY if self.kind == "dagger" else DAGGER_ONLY
        given = [name for name in wrong if name in self.model_fields_set]
        if given:
            raise ValueError(
                f"source {self.name!r} (kind {self.kind}) cannot take {', '.join(given)}"
            )
        return self

    def condition(self) -> str:
        """The SQL condition this source selects (true when it has none)."""
        parts = [f"rollout = {quote_literal(self.rollout)}"] if self.rollout else []
        if self.min_recall is not None:
            parts.append(f"recall >= {self.min_recall!r}")
        if self.max_patch_lines is not None:
            parts.append(f"patch_lines <= {self.max_patch_lines}")
        if self.max_tool_tokens is not None:
            parts.append(f"tool_tokens_max <= {self.max_tool_tokens}")
        if self.min_truncation_ratio is not None:
            parts.append(f"ratio >= {self.min_truncation_ratio!r}")
        for column, values in (
            ("language", self.languages),
            ("repo", self.repos),
            ("teacher_id", self.teachers),
            ("exit_status", self.exit_status),
        ):
            if values is not None:
                parts.append(in_list(column, values))
        if self.where:
            parts.append(f"({self.where})")
        return " AND ".join(parts) or "true"


def in_list(column: str, values: list[str]) -> str:
    """`column IN ('a', 'b')`; false for an empty list."""
    return f"{column} IN ({', '.join(map(quote_literal, values)) or 'NULL'})"


class Specialization(_Spec):
    repos: list[str] = Field(min_length=1, description="the target repositories")
    ratio: float = Field(ge=0, le=1, description="share of each source from the target repos")


class Export(_Spec):
    styles: list[Style] = Field(
        default_factory=list,
        description="also write data.<style>.jsonl, tool calls written into the text: hermes "
        "(<tool_call> JSON, Qwen/Hermes), xml (<function=NAME>, SWE-agent) or raw (plain JSON)",
    )

    @model_validator(mode="after")
    def _unique(self) -> Export:
        if len(set(self.styles)) != len(self.styles):
            raise ValueError(f"styles must be unique: {self.styles}")
        return self


class MixtureSpec(_Spec):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="directory name")
    sources: list[Source] = Field(min_length=1)
    total: int | None = Field(None, ge=0, description="samples in all; needed for shares")
    specialization: Specialization | None = None
    order: Literal["truncation", "random"] = Field(
        "truncation", description="truncation: fully fitting first, then highest ratio"
    )
    context_budget: int = Field(32768, gt=0, description="tokens; must be a measured budget")
    dedup_by_patch: bool = Field(True, description="one sample per (repo, rollout, patch hash)")
    seed: int = Field(0, description="ties and random order are drawn from it")
    export: Export | None = Field(None, description="trainer formats written besides data.jsonl")

    @model_validator(mode="after")
    def _valid(self) -> MixtureSpec:
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError(f"source names must be unique: {names}")
        if self.total is None and any(s.share is not None for s in self.sources):
            raise ValueError("a source asks for a share: set `total`")
        return self

    def export_styles(self) -> list[str]:
        return list(self.export.styles) if self.export else []

    def quotas(self) -> dict[tuple[str, bool], int]:
        """Samples wanted per (source, from a target repo)."""
        quotas = {}
        for source in self.sources:
            wanted = source.count if source.count is not None else round(source.share * self.total)
            target = round(wanted * self.specialization.ratio) if self.specialization else 0
            quotas[(source.name, True)] = target
            quotas[(source.name, False)] = wanted - target
        return quotas


def load_spec(path: str | Path) -> MixtureSpec:
    """The spec in a YAML file; errors name the file and the field."""
    data = read_mapping(path, "mixture spec")
    try:
        return MixtureSpec.model_validate(data)
    except ValidationError as e:
        raise ConfigError(describe(e, f"mixture spec {path}")) from None
