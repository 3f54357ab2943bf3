"""The changed lines of a unified diff, as `git diff --binary` prints it, read with unidiff.

A patch's changed lines are its added and removed lines with their sign ('+foo', '-bar'):
no diff headers, no context, no line whose content is whitespace only, trailing whitespace cut.
They are what soft verification matches (SVG step 5) and what the filter counts as patch size.

unidiff reads each hunk for as many lines as its header (`@@ -a,b +c,d @@`) says, as `git apply`
does, so a removed line `-- comment` (printed `--- comment`) or an added `++i;` (printed
`+++i;`) is a change, not a file header, and lines after a hunk's counted lines are outside it.
File headers, extended headers (mode, rename, index), binary sections (`GIT binary patch`,
`Binary files … differ`) and other text (a mail preamble or signature) contribute nothing.
What unidiff cannot place is an error: a hunk with no file header before it, a `new file mode`
or no-newline line outside a file section, a `+++` header that names another file.
"""

from __future__ import annotations

from unidiff import PatchSet, UnidiffParseError
from unidiff.constants import RE_HUNK_HEADER

from trajlake.errors import TrajlakeError

#: unidiff's messages about hunks, in the words of this module's users
_UNIDIFF_ERRORS = {
    "Hunk is shorter than expected": "a hunk is truncated (fewer lines than its @@ header counts)",
    "Hunk is longer than expected": "a hunk has more lines than its @@ header says",
    "Unexpected hunk found": "a hunk without a `diff --git` or ---/+++ file header before it",
}


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
    files = _read(patch)
    return [
        line.line_type + value
        for file in files
        for hunk in file
        for line in hunk
        if (line.is_added or line.is_removed) and (value := line.value.rstrip())
    ]


def changed_places(patch: str) -> dict[str, set[int]]:
    """Per file the patch touches (its old path; a new file's own), the old file's lines that
    were changed or that an addition follows: where the change is, at the commit.

    Raises PatchParseError as `changed_lines` does.
    """
    if not patch or patch.isspace():
        return {}
    places: dict[str, set[int]] = {}
    for file in _read(patch):
        path = file.source_file if file.source_file != "/dev/null" else file.target_file
        lines = places.setdefault(path.removeprefix("a/").removeprefix("b/"), set())
        for hunk in file:
            last = hunk.source_start  # an addition sits after the last old line seen
            for line in hunk:
                if line.source_line_no is not None:
                    last = line.source_line_no
                if line.is_removed or line.is_added:
                    lines.add(max(last, 1))
    return places


def patch_size(patch: str) -> int:
    """The number of changed lines of `patch` (see `changed_lines`)."""
    return len(changed_lines(patch))


def _read(patch: str) -> PatchSet:
    """unidiff's reading of `patch`, which must hold a file (or binary) section and no bad hunk.

    unidiff takes a line starting "@@" that is not a hunk header for extended-header text;
    here it is an error, so that a hand-written hunk with a typo is not read as no change.
    """
    try:
        files = _patch_set(patch)
    except UnidiffParseError as error:
        _reject_malformed_header(patch)  # the likelier cause, and the clearer message
        message = str(error).strip()
        what = _UNIDIFF_ERRORS.get(message.split(":")[0], message)
        raise PatchParseError(
            f"not a valid unified diff ({what}): regenerate it with `git diff`"
        ) from None
    if ("\n" + patch).count("\n@@") != sum(map(len, files)):
        _reject_malformed_header(patch)
    if not files:
        raise PatchParseError(
            "not a unified diff (no `diff --git` line, no ---/+++ file header): "
            f"{_excerpt(patch)!r}"
        )
    return files


def _patch_set(patch: str) -> PatchSet:
    try:
        return PatchSet(patch)
    except UnidiffParseError as error:
        if not str(error).startswith("Target without source"):
            raise
    return PatchSet(_neutral_names(patch))  # raises again if the names truly differ


#: git's extended header lines, between `diff --git` and `---`
_EXTENDED = (
    "old mode ", "new mode ", "deleted file mode ", "new file mode ", "copy from ", "copy to ",
    "rename from ", "rename to ", "similarity index ", "dissimilarity index ", "index ",
)  # fmt: skip
_TO_NULL = "+++ /dev/null"  # a deleted file's header, which unidiff checks against its mode


def _neutral_names(patch: str) -> str:
    """`patch` with the file named `_` in each `diff --git` line and the `+++` line after it.

    unidiff splits `diff --git a/P b/P` at the last " b/", wrong for a path with " b/" in it
    (a directory "x b"); it then takes the `+++` line for another file's and stops. Names do
    not change the changed lines. Only a file header is renamed: the `---`/`+++` pair right
    after a `diff --git` line and its extended header, before any hunk.
    """
    lines = patch.split("\n")
    for i, line in enumerate(lines):
        if not line.startswith("diff --git "):
            continue
        end = i + 1
        while end < len(lines) and lines[end].startswith(_EXTENDED):
            end += 1
        if end + 1 < len(lines) and lines[end].startswith("--- "):
            lines[i] = "diff --git a/_ b/_"
            if lines[end + 1].startswith("+++ ") and lines[end + 1].split("\t")[0] != _TO_NULL:
                lines[end + 1] = "+++ b/_"
    return "\n".join(lines)


def _reject_malformed_header(patch: str) -> None:
    for line in patch.split("\n"):
        if line.startswith("@@") and not RE_HUNK_HEADER.match(line):
            raise PatchParseError(f"malformed hunk header: {line!r}")


def _excerpt(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
