"""Which environment a repository needs at a commit: its spec, and the key it is built under.

The spec comes from the repository's source (`trajlake repo add|set --env`; `auto` for a
repository the registry does not know). The key is a SHA-256 over the spec's id, the
toolchain's version and the git blob of every key file at the commit: the same key is the same
environment, wherever and whenever it was built.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from trajlake.config import Config
from trajlake.environments.spec import EnvSpec, builtin, detect, parse_spec, read_spec
from trajlake.errors import ConfigError
from trajlake.producers.git import git
from trajlake.sandbox.base import SANDBOX_PATH


@dataclass(frozen=True)
class Resolved:
    """A spec tied to one commit of one repository, and its build key."""

    repo: str
    repo_url: str
    git_dir: Path
    commit: str
    source: str
    spec: EnvSpec
    python: str
    toolchain_version: str
    key_files: tuple[str, ...]
    key: str


def resolve(config: Config, repo: str, repo_url: str, git_dir: Path, commit: str) -> Resolved:
    """The environment of `repo` at `commit` (a full sha), from the repository's source.

    The spec is read on every call (a spec file fixed in place takes effect at the next record
    of a running worker); the tree and the key are computed once per spec and commit.
    """
    source = repo_source(config, repo)
    tree = _tree(git_dir, commit)
    spec = load_source(source, repo, repo_url, {path for path in tree if "/" not in path})
    python = host_python(config.environments.python)
    version = toolchain_version(spec.toolchain, python)
    keyed = tuple(
        sorted(f"{path}:{blob}" for path, blob in tree.items() if _matches(path, spec.key_files))
    )
    digest = hashlib.sha256("\n".join([spec.spec_id(), version, *keyed]).encode()).hexdigest()
    return Resolved(
        repo, repo_url, git_dir, commit, source, spec, python, version, keyed, digest[:20]
    )


def repo_source(config: Config, repo: str) -> str:
    """The repository's `--env` (auto when it is not registered)."""
    from trajlake.repos import Registry

    return Registry(config.producer.registry, config.producer.mirrors).env_source(repo)


def load_source(source: str, repo: str, repo_url: str, root_files: set[str]) -> EnvSpec:
    """The spec a source names; `root_files` (the commit's top-level files) are for auto."""
    if source == "auto":
        return detect(root_files)
    if source == "none":
        return builtin("empty")
    if source == "swesmith":
        return _swesmith(repo_url, repo)
    return read_spec(source)


@functools.lru_cache(maxsize=256)
def _swesmith(repo_url: str, repo: str) -> EnvSpec:
    """The repository's SWE-smith profile as a spec (the package's tables do not change)."""
    from trajlake.environments.swesmith import swesmith_spec

    return parse_spec(swesmith_spec(repo_url, repo), f"from the SWE-smith profile of {repo}")


def host_python(setting: str) -> str:
    """The interpreter environments are built on: the setting, or python3 on the sandbox's PATH."""
    found = shutil.which(setting or "python3", path=SANDBOX_PATH if not setting else None)
    if found is None:
        raise ConfigError(
            f"no Python interpreter {setting or 'python3'!r} to build environments on: "
            "install python3, or set environments.python to an interpreter's path"
        )
    return str(Path(found).resolve())


@functools.cache
def toolchain_version(toolchain: str, python: str) -> str:
    """`Python 3.11.2`, `v20.19.2`, or "" (no toolchain)."""
    if toolchain == "none":
        return ""
    argv = [python, "--version"] if toolchain == "python" else ["node", "--version"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as e:
        raise ConfigError(
            f"the {toolchain} toolchain is not usable here (`{' '.join(argv)}`: {e}): install it"
        ) from None
    return (done.stdout or done.stderr).strip()


@functools.lru_cache(maxsize=64)
def _tree(git_dir: Path, commit: str) -> dict[str, str]:
    """path -> blob sha of every file at `commit` (a full sha: what it names never changes)."""
    listing = git(git_dir, "ls-tree", "-r", "-z", "--full-tree", commit).decode()
    tree = {}
    for entry in filter(None, listing.split("\0")):
        meta, _, path = entry.partition("\t")
        tree[path] = meta.split()[2]
    return tree


def _matches(path: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(path, pattern) for pattern in patterns)
