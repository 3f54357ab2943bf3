"""The one configuration object: `trajlake.yaml` plus `key.path=value` overrides.

Every field is documented here; `trajlake config show` prints the resolved result. The config
never holds a secret: the teacher's API key is read from the environment variable it names.
The teacher, student and DAgger sections live in `trajlake.policy_config`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from trajlake.errors import ConfigError
from trajlake.policy_config import DaggerConfig, Frozen, StudentConfig, TeacherConfig
from trajlake.yamlfile import apply_override, describe, read_mapping

DEFAULT_CONFIG_FILE = "trajlake.yaml"


class BusConfig(Frozen):
    kind: Literal["embedded", "kafka"] = Field(
        "embedded", description="embedded: a SQLite log on this machine; kafka: a Kafka broker"
    )
    path: str = Field("trajlake-data/bus.db", description="embedded: the SQLite log file")
    bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="kafka: comma-separated host:port of the brokers"
    )
    namespace: str = Field(
        "", description="prefix of topic and group names (ns.tasks) so pipelines share a cluster"
    )
    partitions: int = Field(4, ge=1, description="partitions per topic when trajlake creates it")
    session_timeout_ms: int = Field(
        6000, description="a group member silent this long loses its partitions"
    )
    heartbeat_interval_ms: int = Field(1000, description="how often members say they are alive")
    max_record_bytes: int = Field(
        1_000_000,
        ge=1024,
        description="the largest record put on the bus; Apache Kafka brokers accept ~1 MB by "
        "default (message.max.bytes), and kafka-python refuses bigger records before sending",
    )
    claim_check: bool = Field(
        True,
        description="send a record bigger than max_record_bytes as a reference to its lake row "
        "(its biggest text fields stay in the lake, written before the bus; consumers fetch "
        "them). Off: such a record is refused and dead-lettered",
    )
    compression: Literal["zstd", "gzip", "none"] = Field(
        "zstd", description="kafka: producer compression of record batches"
    )


class LakeConfig(Frozen):
    root: str = Field(
        "trajlake-data/lake",
        description="directory that holds the Parquet lake, or s3://bucket/prefix for object "
        "storage (endpoint, region and credentials from the standard AWS_* environment "
        "variables, see trajlake.lake.objects)",
    )
    mixtures: str = Field(
        "trajlake-data/mixtures", description="where `trajlake mixture build` writes mixtures"
    )


class RunnerConfig(Frozen):
    batch_size: int = Field(500, ge=1, description="most records taken per poll")
    poll_timeout_s: float = Field(1.0, gt=0, description="how long a poll waits for records")
    concurrency: int = Field(
        8, ge=1, description="records processed at once by stages marked concurrent (rollouts)"
    )
    outage_patience_s: float = Field(
        600,
        ge=0,
        description="a record whose infrastructure fails (the teacher or student unreachable, a "
        "sandbox that does not start) is run again with backoff for this long, then becomes a "
        "dead letter for `trajlake dlq retry`; never a row of data",
    )
    outage_backoff_max_s: float = Field(
        30, gt=0, description="longest wait between two runs of a record during an outage"
    )


class SandboxConfig(Frozen):
    kind: Literal["bubblewrap", "docker", "local"] = Field(
        "bubblewrap", description="where rollout commands run; local needs allow_unsafe_local"
    )
    allow_unsafe_local: bool = Field(False, description="opt in to running commands unsandboxed")
    command_timeout_s: float = Field(
        60, gt=0, description="a command running longer is killed, with every process it started"
    )
    memory_mb: int = Field(
        2048, ge=1, description="memory per command: address space (ulimit -v); docker --memory"
    )
    cpu_time_s: int = Field(0, ge=0, description="CPU seconds per process (ulimit -t; 0: no limit)")
    max_output_bytes: int = Field(
        1_000_000, ge=1024, description="output beyond this is cut out of the middle of a result"
    )
    image: str = Field("python:3.11-slim", description="docker: the image commands run in")


class EnvironmentsConfig(Frozen):
    root: str = Field(
        "",
        description="this machine's cache of built repository environments, one folder each "
        "(default: `environments` beside a local lake's root, else ~/.cache/trajlake/environments)",
    )
    downloads: str = Field(
        "",
        description="installers' download cache, shared by every build on this machine "
        "(default: ~/.cache/trajlake/downloads)",
    )
    python: str = Field(
        "",
        description="interpreter environments are built on (default: python3 on the "
        "sandbox's PATH); its version keys the build",
    )
    build_timeout_s: float = Field(
        1800, gt=0, description="one install command running longer fails the build"
    )


class TestsConfig(Frozen):
    budget_s: float = Field(
        600,
        gt=0,
        description="the tester: one run of a rollout's selected tests (or of their "
        "baseline) killed past this, and recorded as timeout",
    )
    max_files: int = Field(20, ge=1, description="the tester: most test files selected per patch")


class AgentConfig(Frozen):
    step_limit: int = Field(115, ge=1, description="most model calls per rollout")
    wall_time_s: float = Field(1800, description="a rollout running longer ends TimeExceeded")
    token_limit: int = Field(400_000, description="most tokens (in + out) per rollout")
    no_progress_s: float = Field(
        600, description="a rollout with no step for this long is abandoned and re-queued"
    )
    max_requeues: int = Field(2, ge=0, description="re-queues of an abandoned rollout")
    max_attempts: int = Field(3, ge=1, description="rollout 1: new requests after a 'no'")
    output_chars: int = Field(10_000, description="tool output beyond this is cut in the middle")
    scaffold: str = Field(
        "mini-bash",
        description="what the agent model sees and how its actions run: a built-in scaffold "
        "(mini-bash) or a scaffold YAML file (`trajlake scaffold example`); its id is recorded "
        "on every rollout",
    )
    trajectories: str = Field(
        "trajlake-data/trajectories",
        description="each rollout's steps as ROLLOUT_ID.json; saved as they happen in "
        "ROLLOUT_ID.attempt-N.part, renamed when the attempt is the one kept",
    )


class ProducerConfig(Frozen):
    registry: str = Field(
        "trajlake-data/repos.db", description="SQLite file listing the registered repositories"
    )
    mirrors: str = Field(
        "trajlake-data/mirrors", description="bare mirrors of repositories registered by URL"
    )
    interval_s: float = Field(60, gt=0, description="`trajlake watch`: seconds between polls")


class SamplerConfig(Frozen):
    mode: str = Field("all", description="all | changed | N (a number: N functions per commit)")
    seed: int = Field(0, description="same seed, same tasks")
    skip: list[str] = Field(
        default_factory=list,
        description="glob patterns of files that are never sampled, on top of each language's "
        "tests, generated and vendored files (consumers/languages.yaml) and the repository's "
        ".gitattributes linguist-generated/-vendored; a pattern without / matches the file "
        "name, one with / the whole path (* crosses /)",
    )
    skip_trivial: bool = Field(
        True,
        description="skip functions whose body (docstring aside) is empty, or one return of "
        "nothing, a constant, a name or a field, or a not-implemented raise/throw/panic",
    )
    languages: list[str] = Field(
        default_factory=list,
        description="languages to sample (keys of consumers/languages.yaml: python, go, "
        "typescript, tsx, javascript, java, kotlin, rust, c, cpp, csharp, ruby, php, swift, "
        "scala); empty: all of them",
    )
    language_weights: dict[str, float] = Field(
        default_factory=dict,
        description="mode N: each language's share of the N draws (normalised over the "
        "languages present at the commit; a language left out gets 0); empty: in proportion "
        "to each language's function count",
    )
    workers: int = Field(
        0,
        ge=0,
        description="processes that parse a commit's files; 0: one per CPU (at most 8) for "
        "commits of 256 files or more, this process alone for smaller ones; 1: never others",
    )

    @field_validator("languages")
    @classmethod
    def _known_languages(cls, names: list[str]) -> list[str]:
        return _language_keys(names)  # keys for aliases (ts: typescript); unknown: error

    @field_validator("language_weights")
    @classmethod
    def _known_weights(cls, weights: dict[str, float]) -> dict[str, float]:
        if any(w < 0 for w in weights.values()):
            raise ValueError("weights must not be negative")
        return dict(zip(_language_keys(list(weights)), weights.values(), strict=True))

    @field_validator("mode", mode="before")
    @classmethod
    def _check_mode(cls, value: object) -> object:
        text = str(value).strip() if isinstance(value, int | str) else value
        numeric = isinstance(text, str) and text.isdigit() and int(text) >= 1
        if isinstance(text, str) and text not in ("all", "changed") and not numeric:
            raise ValueError(f"mode {text!r} must be all, changed or a positive number N")
        return text


def _language_keys(names: list[str]) -> list[str]:
    from trajlake.consumers.languages import LanguageError, catalog  # data read on first use

    try:
        return catalog().resolve(names)
    except LanguageError as e:
        raise ValueError(str(e)) from None


class FilterConfig(Frozen):
    tokenizer: str = Field(
        "", description="student tokenizer: a directory or tokenizer.json (empty: a regex count)"
    )
    budgets: list[int] = Field(default_factory=lambda: [32768], description="context budgets")


class PrWriterConfig(Frozen):
    demos: str = Field(
        "", description="JSONL of demonstration PRs ({title, body}); empty: from git history"
    )


class Config(Frozen):
    bus: BusConfig = BusConfig()
    lake: LakeConfig = LakeConfig()
    runner: RunnerConfig = RunnerConfig()
    teacher: TeacherConfig = TeacherConfig()
    sandbox: SandboxConfig = SandboxConfig()
    environments: EnvironmentsConfig = EnvironmentsConfig()
    tests: TestsConfig = TestsConfig()
    agent: AgentConfig = AgentConfig()
    sampler: SamplerConfig = SamplerConfig()
    filter: FilterConfig = FilterConfig()
    pr_writer: PrWriterConfig = PrWriterConfig()
    producer: ProducerConfig = ProducerConfig()
    student: StudentConfig = StudentConfig()
    dagger: DaggerConfig = DaggerConfig()

    def hash(self) -> str:
        """A short, stable hash of the resolved config, saved with every output."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """Read `path` (or ./trajlake.yaml when it exists) and apply `key.path=value` overrides.

    Values in overrides are parsed as YAML scalars, so `runner.concurrency=8` is an int and
    `sandbox.allow_unsafe_local=true` a bool.
    """
    data: dict[str, Any] = {}
    if path is None and Path(DEFAULT_CONFIG_FILE).exists():
        path = DEFAULT_CONFIG_FILE
    if path is not None:
        data = read_mapping(path, "config file")
    for item in overrides:
        apply_override(data, item)
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        where = f" in {path}" if path else ""
        raise ConfigError(describe(e, f"invalid configuration{where}")) from None
