"""Which of a repository's tests a patch could break: the test files that name what it changed.

The rule (`RULE`), for a patch at a commit:

1. the changed files are the patch's files that are not tests (the spec's `test_files`);
2. their *names* are each changed file's module (its file name without the extension, or its
   folder's for `__init__.py`, `index.js`, `mod.rs`, …) and the functions whose lines the patch
   changes (their last name part: `invoke` for `Context.invoke`), found with the same parsers
   that sample functions, on the file at the commit;
3. a test file is selected when it names one of them as a whole word (one `git grep -w` over
   the test files at the commit): an import of the module, a call of the function;
4. files naming the most of them come first, at most `max_files` of them.

What it misses: a test that reaches the change through another name (a caller, a re-export
under another name, a fixture, a test generated at run time); a test file that is not matched
by `test_files`. What it over-selects: every test file that uses a common name (`run`, `get`).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import PurePosixPath

from trajlake.consumers import languages as langs
from trajlake.consumers.functions import enumerate_functions
from trajlake.errors import TrajlakeError
from trajlake.patches import changed_places
from trajlake.producers.git import GitError, git

RULE = "names-v1"
#: File names that stand for their folder: the module is the folder's name.
PACKAGE_FILES = {"__init__", "index", "mod", "lib", "main", "__main__"}


@dataclass(frozen=True)
class Selection:
    """The test files to run for one patch, most relevant first, and how they were found."""

    files: list[str]
    touched_tests: list[str]  # test files the patch edits (their edits are not run)
    names: list[str]  # the names searched for
    rule: str

    def describe(self) -> str:
        return f"{self.rule}: test files naming {', '.join(self.names) or 'nothing'}"


def is_test_file(path: str, patterns: list[str]) -> bool:
    return bool(patterns) and langs.matches(path, patterns)


def select_tests(
    git_dir: str, commit: str, patch: str, patterns: list[str], max_files: int
) -> Selection:
    """The test files (globs `patterns`) at `commit` that name what `patch` changes."""
    places = changed_places(patch)
    touched = sorted(p for p in places if is_test_file(p, patterns))
    names: list[str] = []
    for path, lines in places.items():
        if path in touched:
            continue
        for name in [module_name(path), *changed_functions(git_dir, commit, path, lines)]:
            if name and name not in names:
                names.append(name)
    rule = f"{RULE} (max {max_files} files)"
    if not names:
        return Selection([], touched, [], rule)
    hits = naming_files(git_dir, commit, names, patterns)
    ranked = sorted(hits, key=lambda f: (-hits[f], f))
    return Selection(ranked[:max_files], touched, names, rule)


def module_name(path: str) -> str:
    """The name code imports a file by: its stem, or its folder's for a package file."""
    p = PurePosixPath(path)
    if p.stem in PACKAGE_FILES and p.parent.name:
        return p.parent.name
    return p.stem if re.fullmatch(r"\w+", p.stem) else ""


def changed_functions(git_dir: str, commit: str, path: str, lines: set[int]) -> list[str]:
    """The last name part of every function of `path` at `commit` that holds one of `lines`."""
    if not lines or path not in langs.detect([path]):
        return []
    try:
        source = git(git_dir, "show", f"{commit}:{path}")
        functions = enumerate_functions(source, path, skip_trivial=False)
    except (GitError, SyntaxError, TrajlakeError):
        return []  # a new file, or one that does not parse: its module name still selects
    names = []
    for f in functions:
        if any(f.line_start <= line <= f.line_end for line in lines):
            *outer, name = [p.strip("()*") for p in re.split(r"[.#:]|::", f.qualname) if p]
            if name.startswith("__") and outer:  # Box.__init__: tests name `Box`, not it
                name = outer[-1]
            if re.fullmatch(r"\w+", name) and name not in names:
                names.append(name)
    return names


def naming_files(git_dir: str, commit: str, names: list[str], patterns: list[str]) -> Counter:
    """Test files at `commit` -> how many of `names` each names as a whole word: one `git grep`
    over the test files only (pathspecs from the globs), every match printed (`-o`)."""
    pathspecs = [f":(glob){p}" if "/" in p else f":(glob)**/{p}" for p in patterns]
    words = [arg for name in names for arg in ("-e", name)]
    try:
        out = git(git_dir, "grep", "-o", "-w", "-F", *words, commit, "--", *pathspecs)
    except GitError:
        return Counter()  # git grep exits 1 when nothing matches
    found = set()
    for line in out.decode(errors="replace").splitlines():
        path, _, name = line.removeprefix(f"{commit}:").rpartition(":")
        found.add((path, name))
    return Counter(path for path, _ in found if is_test_file(path, patterns))
