"""An environment spec as data: what to install for a repository, and how to run its tests.

A spec is a YAML mapping (the built-in ones live in trajlake/environments/specs/, users bring
their own). Every command runs with bash in the sandbox, in the checkout at `/testbed`:

- `install` commands run once per build, with the network on and `/env` (the environment, empty
  at first) writable; `{python}` stands for the host's Python interpreter (uv cannot download
  one here). Whatever the environment needs must end up under `/env`.
- rollouts get `/env` read-only, `path` in front of PATH, `env` set, and each `binds` entry
  (a directory of `/env` → a path under `/testbed`) mounted read-only, as a `node_modules`.
- `test` runs the repository's tests; `results` says how its results are read: `junit` (the
  JUnit XML file named by `--junitxml=` or `junit_xml`: per test), `summary` (the runner's own
  summary line, pytest's, node's, mocha's, jest's: counts only), or a runner's log read per test
  by the swebench package's parsers (`pytest-log` for pytest -rA, `tap`, `jest`, `vitest`, `go`,
  `cargo`, `maven`, `phpunit`). `test_files` says which files are tests: the tester stage runs
  the ones a patch reaches by appending them to `test`.

Where a spec comes from is the repository's *source* (`trajlake repo add --env`): `auto` (a
built-in spec detected from the files at the commit), `none` (the empty spec), `swesmith` (the
repository's SWE-smith profile, translated) or the path of a YAML file.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from trajlake.errors import ConfigError
from trajlake.yamlfile import describe, read_mapping

SPEC_DIR = Path(__file__).parent / "specs"
#: Sources other than a file path.
SOURCES = ("auto", "none", "swesmith")
#: How a test run's output is read: see trajlake.environments.results.
Results = Literal[
    "junit", "summary", "pytest-log", "tap", "jest", "vitest", "go", "cargo", "maven", "phpunit"
]


class EnvSpec(BaseModel):
    """One environment spec; unknown keys are an error (a typo must not build silently)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, description="readable name, shown in `trajlake env list`")
    toolchain: Literal["python", "node", "none"] = Field(
        "none", description="whose version is recorded and keys the build (python3, node)"
    )
    detect: list[str] = Field(
        default_factory=list, description="built-ins: root files that make `auto` pick this spec"
    )
    key_files: list[str] = Field(
        default_factory=list,
        description="glob patterns (from the root) of the files whose contents key the build",
    )
    install: list[str] = Field(default_factory=list, description="build commands, in order")
    test: str = Field("", description="command that runs the repository's tests")
    test_files: list[str] = Field(
        default_factory=list,
        description="glob patterns of the repository's test files (no `/`: the file name; with "
        "`/`: the whole path); the tester appends the ones it selects to `test`",
    )
    results: Results = Field(
        "summary",
        description="how test results are read: junit, summary (counts only) or the name of a "
        "log parser (per test; the swebench package's, from the `swesmith` extra)",
    )
    junit_xml: str = Field("", description="junit: the report's path (default: from --junitxml=)")
    path: list[str] = Field(default_factory=list, description="directories put in front of PATH")
    env: dict[str, str] = Field(default_factory=dict, description="variables rollouts get")
    binds: dict[str, str] = Field(
        default_factory=dict, description="directory of /env → path under /testbed, read-only"
    )
    image: str = Field("", description="docker: the image rollouts run in (else sandbox.image)")
    source_commit: str = Field("", description="swesmith: the commit the profile was written for")

    @field_validator("binds")
    @classmethod
    def _relative_binds(cls, binds: dict[str, str]) -> dict[str, str]:
        for inside, target in binds.items():
            for part in (inside, target):
                if part.startswith("/") or ".." in Path(part).parts or not part.strip():
                    raise ValueError(f"binds entry {inside}: {target} must be relative paths")
        return binds

    def spec_id(self) -> str:
        """`NAME-<10 hex>`: a hash of every field, so any change to a spec is a new build."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return f"{self.name}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"

    def junit_path(self) -> str:
        """Where the junit report is written, inside the sandbox."""
        if self.junit_xml:
            return self.junit_xml
        found = re.search(r"--junit-?xml[= ](\S+)", self.test)
        if found is None:
            raise ConfigError(
                f"environment spec {self.name}: results is junit but the test command has no "
                "--junitxml=PATH: add one, or set junit_xml"
            )
        return found.group(1)


def read_spec(path: str | Path) -> EnvSpec:
    """The spec in the YAML file `path`; ConfigError naming each wrong or unknown key."""
    return parse_spec(read_mapping(path, "environment spec"), str(path))


def parse_spec(data: dict, where: str) -> EnvSpec:
    try:
        return EnvSpec.model_validate(data)
    except ValidationError as e:
        raise ConfigError(describe(e, f"invalid environment spec {where}")) from None


@functools.cache
def builtin(name: str) -> EnvSpec:
    """A built-in spec (read once: `auto` asks for them at every record)."""
    return read_spec(SPEC_DIR / f"{name}.yaml")


def detect(root_files: set[str]) -> EnvSpec:
    """The built-in spec `auto` picks for a commit whose root holds `root_files`."""
    for name in ("python", "node"):
        spec = builtin(name)
        if root_files & set(spec.detect):
            return spec
    return builtin("empty")


def check_source(source: str) -> str:
    """`source` if it can name a spec (auto, none, swesmith or an existing file); else why not."""
    if source in SOURCES:
        return source
    path = Path(source).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"--env {source!r} is neither one of {', '.join(SOURCES)} nor a spec file: "
            "pass auto, none, swesmith or the path of a YAML spec"
        )
    read_spec(path)  # a bad file fails now, not at the first rollout
    return str(path.resolve())
