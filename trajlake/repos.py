"""The repository registry (a SQLite file) and where each repository is read from.

A repository is registered by local path (stored absolute, read in place and never modified:
only read-only git commands run there) or by URL (kept as a `git clone --mirror` under the
mirrors directory, fetched when needed). The registry also remembers, per repository, the last
commit the producer emitted, so a restart picks up where it stopped.
"""

from __future__ import annotations

import fcntl
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from trajlake.errors import TrajlakeError
from trajlake.lake.files import repo_slug
from trajlake.producers.git import GitError, git, has_commit
from trajlake.schemas import utc_now

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://|^[^/@:]+@[^/:]+:")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS repos (
    name TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    branch TEXT NOT NULL,
    backfill INTEGER NOT NULL,
    last_emitted TEXT,
    added_at TEXT NOT NULL,
    env TEXT NOT NULL DEFAULT 'auto',
    UNIQUE (url, branch)
)
"""
_COLUMNS = "name, url, branch, backfill, last_emitted, added_at, env"


class RepoError(TrajlakeError):
    """A repository cannot be registered, found or read as asked."""


@dataclass(frozen=True)
class Repo:
    """One registered repository.

    Attributes:
        name: readable unique name; the `repo` of every event about it.
        url: an absolute local path or a URL, exactly as events carry it in `repo_url`.
        branch: the branch whose commits are emitted.
        backfill: how many commits (up to the branch head) the first poll emits.
        last_emitted: the newest commit emitted so far; None before the first poll.
        env: where its environment spec comes from: auto, none, swesmith or a spec file's path
            (trajlake.environments).
    """

    name: str
    url: str
    branch: str
    backfill: int
    last_emitted: str | None = None
    added_at: str = ""
    env: str = "auto"

    @property
    def is_remote(self) -> bool:
        return is_url(self.url)


def is_url(text: str) -> bool:
    """`scheme://…` or scp-like `user@host:path`; anything else is a local path."""
    return bool(_URL.match(text))


class Registry:
    """The registered repositories, stored in the SQLite file `path`."""

    def __init__(self, path: str | Path, mirrors_dir: str | Path) -> None:
        self.path = Path(path)
        self.mirrors_dir = Path(mirrors_dir)

    def add(
        self,
        url_or_path: str,
        branch: str = "main",
        name: str | None = None,
        backfill: int = 1,
        env: str = "auto",
    ) -> Repo:
        """Register a repository; RepoError says what is wrong with it (nothing is stored then)."""
        if backfill < 1:
            raise RepoError(f"backfill must be at least 1 (the branch head), not {backfill}")
        if name is not None and not _NAME.fullmatch(name):
            raise RepoError(
                f"repository name {name!r} is not allowed: use letters, digits, . _ -, "
                "starting with a letter or digit"
            )
        url = url_or_path if is_url(url_or_path) else str(_repo_root(url_or_path))
        git_dir = refresh(url, self.mirrors_dir) if is_url(url) else Path(url)
        _check_branch(git_dir, url, branch)
        with self._connect() as con:
            row = con.execute("SELECT name FROM repos WHERE url = ? AND branch = ?", (url, branch))
            if (taken := row.fetchone()) is not None:
                raise RepoError(f"{url} branch {branch} is already registered as {taken[0]!r}")
            name = name or _free_name(con, _default_name(url))
            repo = Repo(name, url, branch, backfill, None, utc_now().isoformat(), env)
            try:
                con.execute(
                    f"INSERT INTO repos ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (repo.name, url, branch, backfill, None, repo.added_at, env),
                )
            except sqlite3.IntegrityError:
                raise RepoError(
                    f"the name {name!r} is taken: pass another one with --name"
                ) from None
        return repo

    def list(self) -> list[Repo]:
        """Every registered repository, by name."""
        with self._connect() as con:
            rows = con.execute(f"SELECT {_COLUMNS} FROM repos ORDER BY name").fetchall()
        return [Repo(*row) for row in rows]

    def get(self, name: str) -> Repo:
        with self._connect() as con:
            row = con.execute(f"SELECT {_COLUMNS} FROM repos WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise RepoError(f"no repository named {name!r}: see `trajlake repo list`")
        return Repo(*row)

    def env_source(self, name: str) -> str:
        """The repository's environment source; auto for a repository not registered here."""
        if not self.path.exists():
            return "auto"
        with self._connect() as con:
            row = con.execute("SELECT env FROM repos WHERE name = ?", (name,)).fetchone()
        return row[0] if row else "auto"

    def set_env(self, name: str, env: str) -> Repo:
        """Change where the repository's environment spec comes from (its next rollouts')."""
        self.get(name)
        with self._connect() as con:
            con.execute("UPDATE repos SET env = ? WHERE name = ?", (env, name))
        return self.get(name)

    def mark_emitted(self, name: str, sha: str) -> None:
        """Remember `sha` as the newest commit of `name` that reached the bus."""
        with self._connect() as con:
            con.execute("UPDATE repos SET last_emitted = ? WHERE name = ?", (sha, name))

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(self.path, timeout=30)) as con, con:
            con.execute(_SCHEMA)
            columns = {row[1] for row in con.execute("PRAGMA table_info(repos)")}
            if "env" not in columns:  # a registry from before environments: all auto
                con.execute("ALTER TABLE repos ADD COLUMN env TEXT NOT NULL DEFAULT 'auto'")
            yield con


def local_git_dir(repo_url: str, mirrors_dir: str | Path, commit: str | None = None) -> Path:
    """Where to run read-only git commands for a repository.

    A local path is returned as is. A URL is read from its mirror under `mirrors_dir`, cloned
    on first use and fetched when `commit` is given but not there yet.
    """
    if not is_url(repo_url):
        return Path(repo_url)
    mirror = _mirror_path(repo_url, mirrors_dir)
    if not mirror.exists() or (commit and not has_commit(mirror, commit)):
        refresh(repo_url, mirrors_dir)
    if commit and not has_commit(mirror, commit):
        raise RepoError(
            f"commit {commit} is not in {repo_url} (fetched just now): was it rebased "
            "away? Its events cannot be processed"
        )
    return mirror


def refresh(repo_url: str, mirrors_dir: str | Path) -> Path:
    """Clone the mirror of a URL, or fetch it when it exists; returns the mirror's path."""
    mirror = _mirror_path(repo_url, mirrors_dir)
    with _locked(mirror):
        try:
            if mirror.exists():
                git(mirror, "fetch", "--prune", "--quiet")
            else:
                _clone_mirror(repo_url, mirror)
        except GitError as e:
            raise RepoError(f"cannot mirror {repo_url}: {e}; check the URL and access") from None
    return mirror


def _mirror_path(repo_url: str, mirrors_dir: str | Path) -> Path:
    return Path(mirrors_dir).absolute() / f"{repo_slug(repo_url)}.git"


def _clone_mirror(repo_url: str, mirror: Path) -> None:
    """Clone into a temporary directory, then rename: a half-done clone is never used."""
    tmp = Path(tempfile.mkdtemp(prefix=".clone-", dir=mirror.parent))
    try:
        git(mirror.parent, "clone", "--mirror", "--quiet", repo_url, str(tmp / "m.git"))
        (tmp / "m.git").rename(mirror)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def _locked(mirror: Path) -> Iterator[None]:
    """One clone or fetch per mirror at a time, across processes."""
    mirror.parent.mkdir(parents=True, exist_ok=True)
    with open(mirror.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _repo_root(path: str) -> Path:
    """The absolute root of the repository at `path` (a work tree's top or a bare repository)."""
    where = Path(path).expanduser().resolve()
    if not where.is_dir():
        raise RepoError(f"{where} is not a directory: pass the root of a clone, or a URL")
    try:
        git_dir = Path(git(where, "rev-parse", "--absolute-git-dir").decode().strip())
        bare = git(where, "rev-parse", "--is-bare-repository").decode().strip() == "true"
        top = git_dir if bare else Path(git(where, "rev-parse", "--show-toplevel").decode().strip())
    except GitError:
        raise RepoError(f"{where} is not a git repository: pass the root of a clone") from None
    if top.resolve() != where:
        raise RepoError(f"{where} is inside the git repository {top}: register {top} instead")
    return where


def _check_branch(git_dir: Path, url: str, branch: str) -> None:
    try:
        git(git_dir, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}")
    except GitError:
        out = git(git_dir, "for-each-ref", "--format=%(refname:short)", "refs/heads")
        known = ", ".join(out.decode().split()) or "none (no commits yet?)"
        raise RepoError(
            f"branch {branch!r} does not exist in {url}; its branches: {known} (use --branch)"
        ) from None


def _default_name(url: str) -> str:
    last = re.split(r"[/:\\]", url.rstrip("/\\"))[-1].removesuffix(".git")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", last).strip("._-")[:80] or "repo"


def _free_name(con: sqlite3.Connection, base: str) -> str:
    taken = {row[0] for row in con.execute("SELECT name FROM repos")}
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name
