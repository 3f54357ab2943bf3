"""Build a repository's environment once per machine, cached by what it is built from.

The key of a build is a SHA-256 over the spec (its id), the toolchain's version and the git blob
of every key file at the commit, so two commits that change no key file share one environment,
and editing `pyproject.toml` rebuilds. The cache is a folder per key under
`environments.root`; a build happens in `.build-<key>` and is renamed into place only when every
install command succeeded, so a folder under its key is always complete. One build per key at a
time, across threads and processes (an flock per key): the others wait, then find it built.

A failed build is never cached. When its output says the network failed it is an outage
(`EnvironmentUnavailable`: the runner retries the record); otherwise the spec is wrong
(`EnvironmentBuildFailed`: the record becomes a dead letter with the log's tail, and
`trajlake dlq retry` after a fix builds again). Every build, either way, is a row of the lake's
`environments` table.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from trajlake.config import Config
from trajlake.environments.record import disk_size, installed_packages, record_build
from trajlake.environments.resolve import Resolved
from trajlake.errors import EnvironmentBuildFailed, EnvironmentUnavailable
from trajlake.sandbox import EnvironmentMount, open_build_sandbox
from trajlake.sandbox.base import SANDBOX_PATH, TESTBED
from trajlake.schemas import utc_now

log = logging.getLogger(__name__)

#: Written last into a built environment: what the cache knows about it.
META = ".trajlake-env.json"
LOG_TAIL = 4000
#: A spec that failed to build fails again at once for this long in the same process (the
#: repository's other tasks become dead letters without a rebuild each); then it is retried.
FAILED_MEMO_S = 60.0
_FAILED: dict[str, tuple[float, EnvironmentBuildFailed]] = {}
USER_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "trajlake"
#: Output of installers that could not reach their registry: an outage, not a wrong spec.
_NETWORK = re.compile(
    r"(?i)(failed to fetch|could not connect|connection (?:refused|reset|timed out)|"
    r"temporary failure in name resolution|name or service not known|network is unreachable|"
    r"ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|dns error|"
    r"request failed after \d+ retries)"
)
#: Host variables an install may need to reach the registries (never a rollout's).
_PASS = re.compile(
    r"^(UV_|PIP_INDEX_URL|PIP_EXTRA_INDEX_URL|NPM_CONFIG_|npm_config_|SSL_CERT_)|"
    r"^(HTTPS?_PROXY|NO_PROXY|https?_proxy|no_proxy)$"
)


@dataclass(frozen=True)
class Environment:
    """A built environment: where it is on this machine and how sandboxes mount it."""

    resolved: Resolved
    root: Path | None
    meta: dict
    built_now: bool = False  # False: found in this machine's cache

    @property
    def environment_id(self) -> str:
        return self.resolved.key

    def mount(self) -> EnvironmentMount:
        """What a rollout's sandbox mounts: /env read-only, binds, PATH and variables."""
        spec = self.resolved.spec
        path = ":".join([*spec.path, SANDBOX_PATH])
        binds = tuple(
            (self.root / inside, f"{TESTBED}/{target}")
            for inside, target in spec.binds.items()
            if self.root is not None
        )
        return EnvironmentMount(
            self.environment_id, self.root, binds, {"PATH": path, **spec.env}, spec.image
        )


def ensure_environment(
    config: Config,
    resolved: Resolved,
    progress: Callable[[str], None] | None = None,
) -> Environment:
    """The environment `resolved` names, built first unless this machine has it."""
    cache = cache_root(config)
    final = cache / resolved.key
    if (final / META).is_file():
        return _cached(resolved, final)
    cache.mkdir(parents=True, exist_ok=True)
    with locked(cache / f".{resolved.key}.lock"):
        if (final / META).is_file():  # another worker built it while this one waited
            return _cached(resolved, final)
        failed = _FAILED.get(resolved.key)
        if failed and time.monotonic() - failed[0] < FAILED_MEMO_S:
            raise failed[1]  # the repository's other tasks: the same failure, not a rebuild
        try:
            meta = _build(config, resolved, cache, progress or (lambda _: None))
        except EnvironmentBuildFailed as e:
            _FAILED[resolved.key] = (time.monotonic(), e)
            raise
    return Environment(resolved, final, meta, built_now=True)


def cache_root(config: Config) -> Path:
    """Where this machine keeps built environments (see `environments.root`)."""
    from trajlake.lake.objects import is_object_store

    if config.environments.root:
        return Path(config.environments.root).absolute()
    if is_object_store(config.lake.root):
        return USER_CACHE / "environments"
    return Path(config.lake.root).absolute().parent / "environments"


def built_environments(config: Config) -> list[dict]:
    """What the cache says of each environment built on this machine, newest first."""
    root = cache_root(config)
    metas = [json.loads(m.read_text()) for m in root.glob(f"*/{META}")] if root.is_dir() else []
    return sorted(metas, key=lambda meta: meta["built_at"], reverse=True)


def _cached(resolved: Resolved, final: Path) -> Environment:
    return Environment(resolved, final, json.loads((final / META).read_text()))


def _build(
    config: Config, resolved: Resolved, cache: Path, progress: Callable[[str], None]
) -> dict:
    """Run the spec's install commands in a build sandbox; rename the result into place."""
    spec = resolved.spec
    log.info(
        "building the environment of %s at %s (%s, key %s)",
        resolved.repo, resolved.commit[:12], spec.spec_id(), resolved.key,
    )  # fmt: skip
    staging = cache / f".build-{resolved.key}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    started, output = time.monotonic(), []
    failure = _install(config, resolved, staging, output, progress) if spec.install else None
    seconds = time.monotonic() - started
    tail = "\n".join(output)[-LOG_TAIL:]
    if failure is not None:
        shutil.rmtree(staging, ignore_errors=True)
        record_build(config, resolved, "failed", seconds, 0, [], tail)
        raise failure
    packages = installed_packages(staging)
    size = disk_size(staging)
    meta = {
        "environment_id": resolved.key,
        "spec_id": spec.spec_id(),
        "spec_name": spec.name,
        "source": resolved.source,
        "repo": resolved.repo,
        "commit": resolved.commit,
        "toolchain": spec.toolchain,
        "toolchain_version": resolved.toolchain_version,
        "seconds": round(seconds, 3),
        "size_bytes": size,
        "packages": packages,
        "built_at": utc_now().isoformat(),
    }
    (staging / META).write_text(json.dumps(meta, indent=1))
    shutil.rmtree(cache / resolved.key, ignore_errors=True)
    staging.rename(cache / resolved.key)
    record_build(config, resolved, "built", seconds, size, packages, tail)
    return meta


def _install(
    config: Config,
    resolved: Resolved,
    staging: Path,
    output: list[str],
    progress: Callable[[str], None],
) -> Exception | None:
    """Run each install command in a build sandbox until one fails (that failure, or None)."""
    spec = resolved.spec
    downloads = Path(config.environments.downloads or USER_CACHE / "downloads").absolute()
    downloads.mkdir(parents=True, exist_ok=True)
    sandbox = open_build_sandbox(
        config.sandbox,
        resolved.git_dir,
        resolved.commit,
        staging,
        _tools(),
        ((downloads, "/downloads"),),
        _build_variables(),
        spec.image,
    )
    with sandbox:
        for n, command in enumerate(spec.install, 1):
            progress(f"[{n}/{len(spec.install)}] {command}")
            line = command.replace("{python}", resolved.python)
            result = sandbox.run(line, timeout_s=config.environments.build_timeout_s)
            output.append(f"$ {line}\n{result.output}")
            if result.returncode != 0:
                return _failure(resolved, line, result.returncode, "\n".join(output))
    return None


def _failure(resolved: Resolved, line: str, status: int, log: str) -> Exception:
    tail = log[-LOG_TAIL:]
    where = f"{resolved.repo} at {resolved.commit[:12]} (spec {resolved.spec.spec_id()})"
    if _NETWORK.search(log):
        return EnvironmentUnavailable(
            f"building the environment of {where} could not reach a package registry "
            f"(`{line}` exited {status}); it is retried. Output:\n{tail}"
        )
    return EnvironmentBuildFailed(
        f"building the environment of {where} failed: `{line}` exited {status}. Fix the spec "
        f"(`trajlake repo set {resolved.repo} --env FILE`; try it with `trajlake env build "
        f"{resolved.repo}`), then `trajlake dlq retry`. Output:\n{tail}"
    )


def _build_variables() -> dict[str, str]:
    """PATH with uv, download caches under /downloads, and the host's registry settings."""
    variables = {key: value for key, value in os.environ.items() if _PASS.match(key)}
    npmrc = Path.home() / ".npmrc"
    if npmrc.is_file() and "NPM_CONFIG_USERCONFIG" not in variables:
        variables["NPM_CONFIG_USERCONFIG"] = str(npmrc)
    return variables | {
        "PATH": f"{TOOLS_BIN}:{SANDBOX_PATH}",
        "UV_CACHE_DIR": "/downloads/uv",
        "UV_LINK_MODE": "copy",  # the cache and /env are different mounts
        "UV_PYTHON_DOWNLOADS": "never",
        "npm_config_cache": "/downloads/npm",
    }


#: Where the build sandbox finds trajlake's own tools (uv); see trajlake.sandbox.bubblewrap.
TOOLS_BIN = "/trajlake/bin"


def _tools() -> tuple[tuple[Path, str], ...]:
    """uv (from its PyPI wheel, a dependency of trajlake), at /trajlake/bin/uv."""
    try:
        from uv import find_uv_bin

        uv = Path(find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found is None:
            return ()
        uv = Path(found)
    return ((uv.resolve(), f"{TOOLS_BIN}/uv"),)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """One builder per key: an flock, which threads holding separate opens also respect."""
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
