"""`changed_lines` on generated `git diff` output, against lines known from the edit itself.

The expectations come from the edit, not from any diff reader: each case writes random files
to a real git repository, edits them, and takes `git diff --cached` of the edit. Every line
record (content plus its line end; a last line without "\\n" is its own record) is unique in
its file, and an edit keeps the surviving records in order, so the diff is unique: each run
of changed records between two kept ones is printed as its removed lines, then its added
lines. Expected changed lines are those records' contents with sign, trailing whitespace cut,
whitespace-only ones dropped, files in git's path order. The contents are hostile on purpose:
lines that begin with `--`, `++`, `@@`, `diff --git` or `\\`, whitespace-only and
trailing-space lines, CRLF and lone CR, a missing final newline, names with spaces and
non-ASCII; files are added, deleted, renamed unchanged, made executable, or binary.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from trajlake.patches import PatchParseError, changed_lines

pytestmark = pytest.mark.unit

CASES = 60
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
GIT_ENV = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
NAMES = (
    "a.py",
    "pkg/mod.py",
    "pkg/sub/deep.txt",
    "b/in_b.txt",
    "x b/in_x_b.txt",  # " b/" in the path: `diff --git a/x b/in_x_b.txt b/x b/in_x_b.txt`
    "my file.txt",
    "ünïcode.py",
    "-dash.sql",
    "z.c",
)
#: line texts; "{}" gets a unique number so that every record in a file is distinct
TEXTS = (
    "value = load({})",
    "-- comment {}",
    "--- looks like a header {}",
    "++i; /* {} */",
    "+++ b/not_a_header_{}",
    "@@ -1 +1 @@ not a hunk {}",
    "diff --git a/x{} b/x",
    "\\ No newline at end of file {}",
    "trailing space {}   ",
    "tab\tand trailing tab {}\t",
    "lone\rcarriage return {}",
    "ünïcødé {} ✓",
)
Record = tuple[str, str]  # (content, line end): end is "\n", "\r\n" or "" (the last line only)


@dataclass
class Case:
    before: dict[str, list[Record] | bytes] = field(default_factory=dict)
    after: dict[str, list[Record] | bytes] = field(default_factory=dict)
    chmod: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)

    def expected(self) -> list[str]:
        lines: list[str] = []
        renames = "--no-renames" not in self.flags
        for name in sorted(set(self.before) | set(self.after)):
            old, new = self.before.get(name, []), self.after.get(name, [])
            if isinstance(old, bytes) or isinstance(new, bytes):
                continue  # binary: no lines
            if renames and (_renamed_to(self, name) or _renamed_from(self, name)):
                continue  # an unchanged rename: no lines
            lines += _changed(old, new)
        return lines


def _renamed_to(case: Case, name: str) -> bool:
    """`name` was deleted and its exact content reappears under a new name."""
    content = case.before.get(name)
    return name not in case.after and any(
        new not in case.before and body == content for new, body in case.after.items()
    )


def _renamed_from(case: Case, name: str) -> bool:
    content = case.after.get(name)
    return name not in case.before and any(
        old not in case.after and body == content for old, body in case.before.items()
    )


def _changed(old: list[Record], new: list[Record]) -> list[str]:
    """Each run of changed records between kept ones: its removed, then its added lines."""
    kept = set(old) & set(new)
    lines: list[str] = []
    i = j = 0
    while i < len(old) or j < len(new):
        removed = []
        while i < len(old) and old[i] not in kept:
            removed.append(old[i])
            i += 1
        added = []
        while j < len(new) and new[j] not in kept:
            added.append(new[j])
            j += 1
        for sign, run in (("-", removed), ("+", added)):
            lines += [sign + text.rstrip() for text, _ in run if text.strip()]
        i, j = i + 1, j + 1  # past the kept record both sides share
    return lines


def make_case(rng: random.Random) -> Case:
    counter = iter(range(10**6))
    case = Case(flags=[flag for flag in ("--binary", "--no-renames") if rng.random() < 0.5])

    def fresh(end: str) -> Record:
        n = next(counter)
        if rng.random() < 0.1:
            return " " * (n % 5) + "\t" * (n // 5), end  # whitespace only (or empty), unique
        return rng.choice(TEXTS).format(n), end

    names = rng.sample(NAMES, rng.randint(1, 5))
    for name in names:
        kind = rng.random()
        if kind < 0.1:
            case.before[name] = bytes([0, 1, 2, rng.randrange(256)]) * rng.randint(1, 300)
            case.after[name] = bytes([0, rng.randrange(256)]) * rng.randint(1, 300)
            continue
        end = "\r\n" if rng.random() < 0.25 else "\n"
        old = [fresh(end) for _ in range(rng.randint(0, 40))]
        if old and rng.random() < 0.3:
            old[-1] = (old[-1][0], "")  # no newline at end of file
        case.before[name] = old
        if kind < 0.2:
            continue  # deleted, or renamed below
        case.after[name] = edit(rng, old, fresh, end)
    for name in list(case.before):
        if name not in case.after and rng.random() < 0.5 and case.before[name]:
            new_name = "moved/" + name
            if new_name not in case.before:
                case.after[new_name] = case.before[name]  # renamed, unchanged
    if rng.random() < 0.2:
        case.after["new/added.txt"] = [fresh("\n") for _ in range(rng.randint(0, 5))]
    case.chmod = [n for n in case.after if n in case.before and rng.random() < 0.15]
    return case


def edit(rng: random.Random, old: list[Record], fresh, end: str) -> list[Record]:
    """`old` with some records deleted, replaced or inserted; the kept ones stay in order."""
    new: list[Record] = []
    for record in old:
        roll = rng.random()
        if roll < 0.08:
            continue
        if roll < 0.16:
            new += [fresh(end) for _ in range(rng.randint(1, 3))]
            continue
        if roll < 0.22:
            new.append(fresh(end))
        new.append(record)
    if rng.random() < 0.3:
        new += [fresh(end) for _ in range(rng.randint(1, 3))]
    if new and rng.random() < 0.2:
        new[-1] = (new[-1][0], "")  # drop the final newline
    # a kept last line without newline that is no longer last gets one: a changed record
    return [(text, line_end or end) for text, line_end in new[:-1]] + new[-1:]


def git_diff(repo: Path, case: Case) -> str:
    def run(*args: str) -> str:
        done = subprocess.run([*GIT, *args], cwd=repo, env=GIT_ENV, capture_output=True)
        assert done.returncode == 0, done.stderr
        return done.stdout.decode()  # bytes: no newline translation, CR stays

    for path in repo.iterdir():
        if path.name != ".git":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    write(repo, case.before)
    run("add", "-A")
    run("commit", "-qm", "before", "--allow-empty")
    for name in case.before:
        (repo / name).unlink()
    write(repo, case.after)
    for name in case.chmod:
        (repo / name).chmod(0o755)
    run("add", "-A")
    return run("diff", "--cached", *case.flags)


def write(repo: Path, files: dict[str, list[Record] | bytes]) -> None:
    for name, body in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(body, list):
            body = "".join(text + end for text, end in body).encode()
        path.write_bytes(body)


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> list[tuple[Case, str]]:
    """`CASES` seeded cases and their `git diff --cached`, all in one repository."""
    repo = tmp_path_factory.mktemp("patches")
    subprocess.run([*GIT, "init", "-q", str(repo)], env=GIT_ENV, check=True)
    rng = random.Random(17)
    return [(case, git_diff(repo, case)) for case in (make_case(rng) for _ in range(CASES))]


def test_changed_lines_of_generated_git_diffs_match_the_edit(generated):
    for number, (case, patch) in enumerate(generated):
        assert changed_lines(patch) == case.expected(), f"case {number}:\n{patch}"
    seen = {marker for marker in MARKERS for _, patch in generated if marker in patch}
    assert seen == set(MARKERS)  # the generator reached every kind of section


MARKERS = (
    "\n--- comment",  # a removed "-- comment"
    "\n++++ b/not_a_header",  # an added "+++ b/not_a_header"
    "\n\\ No newline at end of file",
    "\r\n",
    "GIT binary patch",
    "Binary files ",
    "\nrename from ",
    "\nnew mode 100755",
    "\ndeleted file mode",
    '"a/\\303\\274n',  # a quoted non-ASCII name
    "my file.txt\t\n",  # git's tab after a name with a space
    "diff --git a/x b/in_x_b.txt b/x b/in_x_b.txt\n",
)
HUNK_HEADER = re.compile(r"^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@.*$", re.MULTILINE)


def test_a_generated_diff_cut_inside_a_hunk_is_rejected(generated):
    rng = random.Random(3)
    cut = 0
    for _, patch in generated:
        headers = list(HUNK_HEADER.finditer(patch))
        if not headers:
            continue
        header = rng.choice(headers)
        counted = max(int(n or 1) for n in header.groups())
        body = patch[header.end() + 1 :].split("\n")[: rng.randrange(counted)]
        truncated = patch[: header.end() + 1] + "".join(line + "\n" for line in body)
        with pytest.raises(PatchParseError, match="truncated"):
            changed_lines(truncated)
        cut += 1
    assert cut > CASES // 2


def test_a_generated_diff_with_a_mistyped_hunk_header_is_rejected(generated):
    broken = 0
    for _, patch in generated:
        header = HUNK_HEADER.search(patch)
        if header:
            typo = patch[: header.start()] + patch[header.start() :].replace(" @@", "@@", 1)
            with pytest.raises(PatchParseError, match="malformed hunk header"):
                changed_lines(typo)
            broken += 1
    assert broken > CASES // 2
