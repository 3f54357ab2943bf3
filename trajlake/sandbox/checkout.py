"""A fresh, private checkout of one commit, and the patch of everything changed in it since.

Layout of one checkout, all under a new temporary directory (`root`):

- `root/checkout/<repo name>`: the work tree. Its own `.git` borrows the source repository's
  objects through `objects/info/alternates`, as `git clone --shared` does, so opening costs what
  writing the work tree costs (0.06 s for a small repository; 0.6-2 s for 1,400 files / 54 MB,
  the same as `git clone --shared` plus checkout on the same disk).
  `git clone --local --no-hardlinks` would copy the whole object store per rollout (0.33 s and
  400 MB more for a 400 MB store); hardlinks would let a sandboxed command write into the source's
  object files. The checkout has no refs but a detached HEAD: `git log --all` shows the commit's
  history and nothing after it.
- `root/git`: a private bare git dir sharing the same objects, with a copy of the fresh index.
  `diff()` runs `git add -A` and `git diff --cached --binary` on the host against this one, never
  against the agent's `.git`: a sandboxed command can rewrite that (`core.fsmonitor`, filters,
  hooks run commands), but not this.
- `root/tmp`: the sandbox's private /tmp and HOME.

Nothing is written to the source repository: it is only read (`rev-parse`, and objects).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trajlake.errors import PatchDoesNotApply, SandboxError

GIT_USER = ("trajlake", "trajlake@localhost")

# Untracked caches and build metadata that are never part of a patch, on top of the repository's
# own .gitignore. A tracked file is always diffed, whatever its name.
BUILD_JUNK = [
    "__pycache__/",
    "*.py[co]",
    ".pytest_cache/",
    ".mypy_cache/",
    ".ruff_cache/",
    "*.egg-info/",
]


@dataclass(frozen=True)
class Checkout:
    """A checkout made by `create_checkout`; `remove()` deletes it all."""

    root: Path
    path: Path
    commit: str
    source: Path
    read_paths: tuple[Path, ...]

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    def diff(self) -> str:
        """Every change in the work tree since `commit`, new files included, as a binary patch."""
        self._git_private("add", "--all")
        return self._git_private(
            "diff", "--cached", "--binary", "--no-renames", "--no-ext-diff", "--no-textconv",
            "--no-color", self.commit,
        )  # fmt: skip

    def apply(self, patch: str, skip: list[str] = ()) -> None:
        """Apply `patch` (as `diff` makes it) to the work tree, leaving out the files `skip`;
        PatchDoesNotApply when it does not apply."""
        excluded = [f"--exclude={path}" for path in skip]
        try:
            self._git_private("apply", "--whitespace=nowarn", *excluded, "-", input=patch.encode())
        except SandboxError as e:
            raise PatchDoesNotApply(str(e)) from None

    def exclude(self, paths: list[str]) -> None:
        """Keep `paths` (mount points of an environment, such as node_modules) out of `git
        status` in the sandbox; the patch never has them (their host side stays empty)."""
        with (self.path / ".git/info/exclude").open("a") as exclude:
            exclude.write("".join(f"/{path}\n" for path in paths))

    def remove(self) -> None:
        shutil.rmtree(self.root, onerror=_make_writable_and_retry)

    def _git_private(self, *args: str, input: bytes | None = None) -> str:
        return _git(
            self.path, "--git-dir", str(self.root / "git"), "--work-tree", str(self.path), *args,
            input=input,
        )  # fmt: skip


def create_checkout(repo: str | Path, commit: str) -> Checkout:
    """Check out `commit` of the git repository `repo` (work tree or bare) in a new temp dir."""
    source = Path(repo).resolve()
    objects = _source_objects(source)
    sha = _resolve(source, commit)
    root = Path(tempfile.mkdtemp(prefix="trajlake-sandbox-"))
    try:
        path = root / "checkout" / (source.name.removesuffix(".git") or "repo")
        _git(root, "-c", "init.defaultBranch=main", "init", "--quiet", str(path))
        (path / ".git/objects/info/alternates").write_text(f"{objects}\n")
        _git(path, "checkout", "--quiet", "--detach", sha)
        with (path / ".git/config").open("a") as config:  # two `git config` runs, saved
            config.write(f"[user]\n\tname = {GIT_USER[0]}\n\temail = {GIT_USER[1]}\n")
        private = root / "git"
        _git(root, "-c", "init.defaultBranch=main", "init", "--quiet", "--bare", str(private))
        (private / "objects/info/alternates").write_text(f"{objects}\n")
        (private / "info/exclude").write_text("\n".join(BUILD_JUNK) + "\n")
        shutil.copy2(path / ".git/index", private / "index")
        (root / "tmp").mkdir()
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return Checkout(root, path, sha, source, (source, objects, *_alternates(objects)))


def _source_objects(source: Path) -> Path:
    if not source.is_dir():
        raise SandboxError(f"repository {source} is not a directory: pass a local git checkout")
    done = _run_git(source, "rev-parse", "--path-format=absolute", "--git-path", "objects")
    if done.returncode != 0:
        raise SandboxError(
            f"{source} is not a git repository ({done.stdout.strip()}): pass a local clone "
            "(work tree or bare), e.g. `git clone --mirror URL` first"
        )
    return Path(done.stdout.strip())


def _resolve(source: Path, commit: str) -> str:
    done = _run_git(
        source, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{commit}^{{commit}}"
    )
    if done.returncode != 0:
        raise SandboxError(
            f"commit {commit!r} is not in {source}: fetch it there first "
            f"(`git -C {source} fetch origin {commit}`), or check the task's commit id"
        )
    return done.stdout.strip()


def _alternates(objects: Path, depth: int = 0) -> list[Path]:
    """Object directories `objects` borrows from, transitively: the sandbox must read them too."""
    listing = objects / "info" / "alternates"
    if depth > 5 or not listing.is_file():
        return []
    found: list[Path] = []
    for line in listing.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            path = (objects / line.strip()).resolve()
            found += [path, *_alternates(path, depth + 1)]
    return found


def _git(cwd: Path, *args: str, input: bytes | None = None) -> str:
    """Run git on a directory trajlake made, ignoring the user's and the system's git config."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
    env |= {"HOME": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, input=input, capture_output=True, check=False
    )
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip()
        raise SandboxError(f"git {' '.join(args)} failed in {cwd}: {message}")
    return done.stdout.decode("utf-8", errors="replace")


def _run_git(source: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Read the source repository with the user's git config (safe.directory and the like).

    The ceiling keeps git from taking a plain directory inside some other repository for a repo.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    env["GIT_CEILING_DIRECTORIES"] = str(source.parent)
    return subprocess.run(
        ["git", "-C", str(source), *args], env=env, capture_output=True, text=True, check=False
    )


def _make_writable_and_retry(function: Callable[[str], object], path: str, _exc: object) -> None:
    """rmtree's error hook: a command may have left read-only directories behind."""
    parent = os.path.dirname(path)
    os.chmod(parent, os.stat(parent).st_mode | stat.S_IWUSR | stat.S_IXUSR)
    function(path)
