"""Read-only git plumbing over a repository's objects (never its work tree or index).

Only rev-list, log, ls-tree, cat-file, diff-tree and rev-parse run against a registered
repository; `trajlake.repos` alone clones and fetches, and only into its own mirrors.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from trajlake.errors import TrajlakeError

_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@")
_FIELD_SEP = "\x1f"
_RECORD_SEP = "\x1e"
# Variables that would point git at another repository or let it write.
_GIT_ENV_DROP = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY")


class GitError(TrajlakeError):
    """A git command failed; the message carries the command and git's own words."""


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    parents: list[str]
    author: str
    committed_at: datetime
    message: str


@dataclass(frozen=True)
class Blob:
    path: str
    sha: str


def git(git_dir: str | Path, *args: str, input: bytes | None = None) -> bytes:
    """Run `git -C git_dir ARGS` and return stdout; GitError on a non-zero exit."""
    env = {k: v for k, v in os.environ.items() if k not in _GIT_ENV_DROP}
    env["GIT_OPTIONAL_LOCKS"] = "0"  # never refresh an index, not even opportunistically
    env["GIT_TERMINAL_PROMPT"] = "0"  # a URL that wants a password fails instead of hanging
    cmd = ["git", "-C", str(git_dir), "-c", "core.quotepath=off", *args]
    try:
        done = subprocess.run(cmd, input=input, capture_output=True, env=env, check=False)
    except FileNotFoundError:
        raise GitError("git is not installed: install git and put it on PATH") from None
    if done.returncode != 0:
        stderr = done.stderr.decode(errors="replace").strip()
        raise GitError(f"`git {' '.join(args)}` in {git_dir} failed: {stderr}")
    return done.stdout


def has_commit(git_dir: str | Path, sha: str) -> bool:
    try:
        git(git_dir, "cat-file", "-e", f"{sha}^{{commit}}")
    except GitError:
        return False
    return True


def rev_list(git_dir: str | Path, rev_range: str, limit: int | None = None) -> list[str]:
    """Commits in `rev_range`, oldest first (parents before children)."""
    args = ["rev-list", "--topo-order", "--reverse"]
    args += [f"--max-count={limit}"] if limit is not None else []
    return git(git_dir, *args, rev_range, "--").decode().split()


def commit_infos(git_dir: str | Path, shas: list[str]) -> list[CommitInfo]:
    """Parents, author, commit time and message of each commit, in the order given."""
    if not shas:
        return []
    fmt = _FIELD_SEP.join(["%H", "%P", "%an <%ae>", "%cI", "%B"]) + _RECORD_SEP
    out = git(
        git_dir,
        "log",
        "--no-walk=unsorted",
        f"--format={fmt}",
        "--stdin",
        input="\n".join(shas).encode(),
    )
    infos: dict[str, CommitInfo] = {}
    for record in out.decode(errors="replace").split(_RECORD_SEP):
        if not record.strip():
            continue
        sha, parents, author, when, message = record.lstrip("\n").split(_FIELD_SEP, 4)
        infos[sha] = CommitInfo(
            sha, parents.split(), author, datetime.fromisoformat(when), message.strip()
        )
    return [infos[sha] for sha in shas]


def changed_files(git_dir: str | Path, sha: str, parent: str | None) -> list[str]:
    """Paths the commit touched, against its first parent (everything for a root commit)."""
    base = [parent, sha] if parent else ["--root", sha]
    out = git(git_dir, "diff-tree", "-r", "--no-commit-id", "--name-only", "-z", *base)
    return [p for p in out.decode(errors="surrogateescape").split("\0") if p]


def python_blobs(git_dir: str | Path, sha: str) -> list[Blob]:
    """Every `.py` file in the commit's tree (no symlinks, no submodules), sorted by path."""
    return [b for b in tree_blobs(git_dir, sha) if b.path.endswith(".py")]


def tree_blobs(git_dir: str | Path, sha: str) -> list[Blob]:
    """Every file in the commit's tree (no symlinks, no submodules), sorted by path."""
    out = git(git_dir, "ls-tree", "-r", "-z", "--full-tree", sha)
    blobs = []
    for entry in out.decode(errors="surrogateescape").split("\0"):
        if not entry:
            continue
        meta, path = entry.split("\t", 1)
        mode, kind, blob_sha = meta.split()
        if kind == "blob" and mode in ("100644", "100755"):
            blobs.append(Blob(path, blob_sha))
    return sorted(blobs, key=lambda b: b.path)


def read_blobs(git_dir: str | Path, shas: list[str]) -> dict[str, bytes]:
    """Contents of blobs by sha, read in one `git cat-file --batch`."""
    if not shas:
        return {}
    out = git(git_dir, "cat-file", "--batch", input="\n".join(shas).encode() + b"\n")
    contents: dict[str, bytes] = {}
    pos = 0
    while pos < len(out):
        header_end = out.index(b"\n", pos)
        header = out[pos:header_end].decode(errors="replace").split()
        if len(header) != 3:
            raise GitError(f"git cat-file in {git_dir}: object {header[0]} is missing")
        sha, _, size = header
        start = header_end + 1
        contents[sha] = out[start : start + int(size)]
        pos = start + int(size) + 1  # the content is followed by a newline
    return contents


def changed_lines(
    git_dir: str | Path, sha: str, parent: str | None, pathspecs: tuple[str, ...] = ("*.py",)
) -> dict[str, set[int]]:
    """Per path matching `pathspecs`, the new-side line numbers the commit added or changed.

    A pure deletion marks the lines on both sides of the gap, so a function that only lost
    lines still counts as changed. Renames are detected (-M), so a moved file is not all new.
    """
    base = [parent, sha] if parent else ["--root", sha]
    out = git(
        git_dir,
        "diff-tree",
        "-p",
        "-U0",
        "-M",
        "--no-color",
        "--no-ext-diff",
        *base,
        "--",
        *pathspecs,
    )
    lines: dict[str, set[int]] = {}
    current: set[int] | None = None
    for raw in out.decode(errors="surrogateescape").splitlines():
        if raw.startswith("+++ "):
            path = _diff_path(raw[4:])
            current = lines.setdefault(path, set()) if path is not None else None
        elif current is not None and (hunk := _HUNK.match(raw)):
            start, count = int(hunk.group(1)), int(hunk.group(2) or "1")
            span = range(start, start + count) if count else range(max(start, 1), start + 2)
            current.update(span)
    return lines


def _diff_path(text: str) -> str | None:
    """`b/path` (or a C-quoted `"b/pa\\tth"`) → `path`; `/dev/null` → None."""
    text = text.rstrip("\t")
    if text == "/dev/null":
        return None
    if text.startswith('"'):
        text = ast.literal_eval(text)
    return text.removeprefix("b/")
