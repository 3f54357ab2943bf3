"""The changed lines of a unified diff, as `git diff --binary` prints it.

A patch's changed lines are its added and removed lines with their sign ('+foo', '-bar'):
no diff headers, no context, no line whose content is whitespace only, trailing whitespace cut.
They are what soft verification matches (SVG step 5) and what the filter counts as patch size.

Hunks are read by their header counts (`@@ -a,b +c,d @@`), as `git apply` reads them, so a
removed line `-- comment` (printed `--- comment`) or an added `++i;` (printed `+++i;`) is a
change, not a file header. Outside hunks, file headers, extended headers (mode, rename, copy,
index), binary sections (`GIT binary patch`, `Binary files … differ`) and any other text (a
mail preamble or signature) contribute nothing. Like `git apply`, lines after a hunk's counted
lines are outside it; a hunk cut short, or one with more old or new lines than its header
says, is an error.
"""

from __future__ import annotations

import re
from itertools import repeat
from operator import sub

from trajlake.errors import TrajlakeError

#: a line starting "@@" and the ' ', '+', '-' lines after it. Groups: " " when it is a valid
#: hunk header ("" when not), old count, new count (absent means 1), the lines.
_HUNK = re.compile(r"\n@@(?:( )-\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@)?[^\n]*+((?:\n[ +\-][^\n]*+)*+)")
#: a changed line (after its "\n"): the sign and content up to its last non-space character;
#: the trailing whitespace is left for the next search to skip (no tail group: measured faster)
_CHANGED = re.compile(r"\n([+-][^\n]*\S)")
#: a valid hunk header line, for the general path
_HEADER = re.compile(r"@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")
#: what makes a patch without hunks (binary, mode or rename only, empty new file) a diff
_HEADER_ONLY = re.compile(r"^(?:diff --git |Binary files .* differ$)", re.MULTILINE)


class PatchParseError(TrajlakeError):
    """The text is not a unified diff, or one of its hunks does not match its header counts."""


def changed_lines(patch: str) -> list[str]:
    """Every added and removed line of `patch`, with its sign, in patch order.

    Raises:
        PatchParseError: `patch` is not empty and not a diff, or a hunk is truncated, has
            more lines than its header says, or its header is malformed.
    """
    if not patch or patch.isspace():
        return []
    hunks = _HUNK.findall("\n" + patch)  # every line, the first included, follows a "\n"
    if not hunks:
        if _HEADER_ONLY.search(patch):
            return []  # a diff without hunks: binary files, mode changes, pure renames
        raise PatchParseError(
            f"not a unified diff (no `diff --git` line, no @@ hunk): {_excerpt(patch)!r}"
        )
    valid, olds, news, regions = zip(*hunks, strict=True)
    if "" not in valid and _regions_are_hunks(olds, news, regions):
        return _CHANGED.findall("".join(regions))
    return _read_hunks(patch.removesuffix("\n").split("\n"))


def patch_size(patch: str) -> int:
    """The number of changed lines of `patch` (see `changed_lines`)."""
    return len(changed_lines(patch))


def _regions_are_hunks(
    olds: tuple[str, ...], news: tuple[str, ...], regions: tuple[str, ...]
) -> bool:
    """True when each run of ' ', '+', '-' lines after a header holds exactly its counts.

    The common case, checked without a loop over lines: then every hunk ends where the next
    other line starts, and `_read_hunks` would read the same lines. Anything else goes to
    `_read_hunks`, which reads or rejects it: a hunk followed by more such lines (plain
    `diff -u` outputs back to back, a mail signature), an empty context line, a "\\ No newline
    at end of file" inside a hunk (one after it, the usual place, is outside the run), a
    wrong count.
    """
    lines = list(map(str.count, regions, repeat("\n")))
    old_lines = list(map(sub, lines, map(str.count, regions, repeat("\n+"))))
    new_lines = list(map(sub, lines, map(str.count, regions, repeat("\n-"))))
    return old_lines == [int(n or 1) for n in olds] and new_lines == [int(n or 1) for n in news]


def _read_hunks(lines: list[str]) -> list[str]:
    """The general path: walk the lines, reading each hunk for as many lines as its header says.

    Lines are counted as `git apply` counts them: ' ' (or an empty line) is context on both
    sides, '-' old only, '+' new only, '\\' (no newline at end of file) on neither.
    """
    changed: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.startswith("@@"):
            continue  # outside hunks: headers, binary sections, other text
        header = _HEADER.match(line)
        if header is None:
            raise PatchParseError(f"malformed hunk header: {line!r}")
        old, new = (int(n) if n else 1 for n in header.groups())
        start = i
        while old > 0 or new > 0:
            sign = lines[i][:1] if i < len(lines) else "@"
            if sign == " " or not sign:
                old, new = old - 1, new - 1
            elif sign == "-":
                old -= 1
            elif sign == "+":
                new -= 1
            elif sign != "\\":
                raise PatchParseError(
                    f"hunk {line!r} is truncated: {old} old and {new} new lines missing "
                    "(its header's counts do not match its lines)"
                )
            if old < 0 or new < 0:
                raise PatchParseError(f"hunk {line!r} has more lines than its header says")
            i += 1
        changed += _CHANGED.findall("\n" + "\n".join(lines[start:i]))
    return changed


def _excerpt(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
