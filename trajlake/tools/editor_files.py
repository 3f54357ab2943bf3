"""The file editor's sandbox side, part 1: paths, reading and writing files, `cat -n`, history.

Runs inside the sandbox only, loaded as the module `editor_files` by the bootstrap that
trajlake/tools/editor.py sends (editor_program.py, the commands, imports it). Standard library
only, Python 3.8 or newer.

Undo history lives in the checkout's `.git/trajlake-editor/`, one JSON file per edited path: every
command is a new process and /tmp may not outlive it (docker), while `.git` lasts as long as the
checkout and is never part of its diff.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat

MAX_RESPONSE_CHARS = 16_000
MAX_FILE_BYTES = 10 * 1024 * 1024
HISTORY = os.path.join(".git", "trajlake-editor")
TRUNCATED_NOTE = (
    "<response clipped><NOTE>Only part of the output is shown, to save context. Find the line "
    "numbers you need with `grep -n`, then view just those lines with `view_range`.</NOTE>"
)


class Refused(Exception):
    """The call cannot be carried out as asked; the message is the observation."""


class Target:
    """A path as the call gave it (`shown`), where it really is (`real`), and its key in the
    history (`key`, relative to the repository root)."""

    def __init__(self, root: str, given: str):
        joined = given if os.path.isabs(given) else os.path.join(root, given)
        self.shown = given
        self.real = os.path.realpath(joined)
        if self.real != root and not self.real.startswith(root + os.sep):
            raise Refused(
                f"The path {given} is outside the repository {root} (it resolves to "
                f"{self.real}): only files inside the repository can be viewed or edited."
            )
        self.key = os.path.relpath(self.real, root)

    def check_writable(self) -> None:
        if self.key.split(os.sep)[0] == ".git":
            raise Refused(f"The path {self.shown} is inside .git, which the editor does not edit.")


def read_file(target: Target) -> tuple[str, str]:
    """The text of a regular, not too large, non-binary file, and the encoding it was read in."""
    info = os.stat(target.real)
    if not stat.S_ISREG(info.st_mode):
        raise Refused(f"The path {target.shown} is not a regular file: use bash to look at it.")
    if info.st_size > MAX_FILE_BYTES:
        raise Refused(
            f"The file {target.shown} is {info.st_size} bytes, more than the editor handles "
            f"({MAX_FILE_BYTES}): use bash on it instead (`grep -n`, `sed -n '10,20p'`)."
        )
    with open(target.real, "rb") as file:
        data = file.read()
    if b"\0" in data[:8192]:
        raise Refused(
            f"The file {target.shown} is binary, so the editor cannot show or edit it: "
            "use bash to inspect it (e.g. `file`, `xxd | head`)."
        )
    for encoding in ("utf-8", "latin-1"):
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes every byte string")


def write_file(target: Target, text: str, encoding: str) -> None:
    try:
        with open(target.real, "wb") as file:
            file.write(text.encode(encoding, errors="surrogateescape"))
    except (OSError, UnicodeEncodeError) as e:
        raise Refused(f"Ran into {e} while trying to write to {target.shown}") from None


def split_lines(text: str) -> list[str]:
    """Lines as `cat -n` counts them, each with its newline (the last may have none)."""
    parts = text.split("\n")
    return [part + "\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def cat_n(text: str, described: str, first_line: int = 1) -> str:
    """`text` numbered like `cat -n` (from `first_line`), past 16,000 characters clipped."""
    clipped = len(text) > MAX_RESPONSE_CHARS
    lines = split_lines(text[:MAX_RESPONSE_CHARS] if clipped else text)
    numbered = "".join(
        f"{number:6}\t{line.rstrip(chr(10)).expandtabs()}\n"
        for number, line in enumerate(lines, first_line)
    )
    note = TRUNCATED_NOTE + "\n" if clipped else ""
    return f"Here's the result of running `cat -n` on {described}:\n{numbered}{note}"


def history_file(target: Target) -> str:
    digest = hashlib.sha256(target.key.encode("utf-8", errors="surrogateescape")).hexdigest()
    return os.path.join(HISTORY, digest[:32] + ".json")


def load_history(target: Target) -> list:
    try:
        with open(history_file(target), encoding="utf-8") as file:
            return json.load(file)["versions"]
    except FileNotFoundError:
        return []


def save_history(target: Target, versions: list) -> None:
    """Atomically; kept in .git, which survives between commands and is never part of a diff."""
    os.makedirs(HISTORY, exist_ok=True)
    path = history_file(target)
    with open(path + ".tmp", "w", encoding="utf-8") as file:
        json.dump({"path": target.key, "versions": versions}, file)
    os.replace(path + ".tmp", path)


def remember(target: Target, text: str | None, encoding: str) -> None:
    """Record the content before an edit (None: the file did not exist)."""
    save_history(target, load_history(target) + [{"text": text, "encoding": encoding}])
