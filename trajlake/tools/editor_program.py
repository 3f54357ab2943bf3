"""The file editor's sandbox side, part 2: the commands. One call per process.

The host (trajlake/tools/editor.py) never imports this module: it sends its text, and that of
editor_files.py, into the sandbox, where it runs as `__main__` with the repository root as the
working directory and reads one JSON object, the tool call's arguments, from stdin. It prints the
observation and exits 0, or exits 3 when the call is refused (the message says why and what to
do). Standard library only, Python 3.8 or newer.

Behaviour and messages follow SWE-agent 1.1.0's `str_replace_editor` (see trajlake/tools/editor.py
for the commit and for where trajlake differs on purpose).
"""

from __future__ import annotations

import json
import os
import sys

from editor_files import (
    MAX_RESPONSE_CHARS,
    TRUNCATED_NOTE,
    Refused,
    Target,
    cat_n,
    load_history,
    read_file,
    remember,
    save_history,
    split_lines,
    write_file,
)

COMMANDS = ("view", "create", "str_replace", "insert", "undo_edit")
ARGUMENTS = ("command", "path", "file_text", "old_str", "new_str", "insert_line", "view_range")
SNIPPET_LINES = 4
REFUSED = 3


def main() -> int:
    try:
        output = run(os.path.realpath(os.getcwd()), json.loads(sys.stdin.read()))
        code = 0
    except Refused as refused:
        output, code = str(refused), REFUSED
    sys.stdout.buffer.write(output.encode("utf-8", errors="surrogateescape"))
    return code


def run(root: str, arguments: dict) -> str:
    unexpected = sorted(set(arguments) - set(ARGUMENTS))
    if unexpected:
        raise Refused(
            f"Unexpected argument(s): {', '.join(unexpected)}. "
            f"str_replace_editor takes: {', '.join(ARGUMENTS)}."
        )
    command = arguments.get("command")
    if command not in COMMANDS:
        allowed = ", ".join(f'"{name}"' for name in COMMANDS)
        raise Refused(
            f"Unrecognized command {command}. The allowed commands for the "
            f"str_replace_editor tool are: {allowed}"
        )
    path = text_argument(arguments, "path")
    if not path:
        raise Refused(f"Parameter `path` is required for command: {command}")
    target = Target(root, path)
    check_exists(command, target)
    if command == "view":
        return view(target, arguments.get("view_range"))
    target.check_writable()
    if command == "create":
        return create(target, required(arguments, "file_text", command))
    if command == "str_replace":
        old = required(arguments, "old_str", command)
        return str_replace(target, old, text_argument(arguments, "new_str") or "")
    if command == "insert":
        line = line_number(arguments.get("insert_line"), command)
        return insert(target, line, required(arguments, "new_str", command))
    return undo_edit(target)


def text_argument(arguments: dict, name: str) -> str | None:
    value = arguments.get(name)
    if value is not None and not isinstance(value, str):
        raise Refused(f"Parameter `{name}` must be a string, not {json.dumps(value)}.")
    return value


def required(arguments: dict, name: str, command: str) -> str:
    value = text_argument(arguments, name)
    if value is None:
        raise Refused(f"Parameter `{name}` is required for command: {command}")
    return value


def line_number(value: object, command: str) -> int:
    if value is None:
        raise Refused(f"Parameter `insert_line` is required for command: {command}")
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise Refused(f"Parameter `insert_line` must be an integer, not {json.dumps(value)}.")
    return value


def check_exists(command: str, target: Target) -> None:
    exists = os.path.lexists(target.real)
    if not exists and command != "create":
        raise Refused(f"The path {target.shown} does not exist. Please provide a valid path.")
    if exists and command == "create":
        raise Refused(
            f"File already exists at: {target.shown}. Cannot overwrite files using command "
            "`create`."
        )
    if os.path.isdir(target.real) and command != "view":
        raise Refused(
            f"The path {target.shown} is a directory and only the `view` command can be used "
            "on directories"
        )


def view(target: Target, view_range: object) -> str:
    if os.path.isdir(target.real):
        if view_range:
            raise Refused(
                "The `view_range` parameter is not allowed when `path` points to a directory."
            )
        return view_directory(target)
    text, _ = read_file(target)
    if not view_range:
        return cat_n(text, target.shown)
    lines = split_lines(text)
    first, last = check_view_range(view_range, len(lines))
    return cat_n("".join(lines[first - 1 : last]), target.shown, first)


def check_view_range(view_range: object, n_lines: int) -> tuple[int, int]:
    """(first, last) line, 1-based and inclusive; `[first, -1]` reaches the end."""
    if (
        not isinstance(view_range, list)
        or len(view_range) != 2
        or any(isinstance(i, bool) or not isinstance(i, int) for i in view_range)
    ):
        raise Refused("Invalid `view_range`. It should be a list of two integers.")
    first, last = view_range
    if not 1 <= first <= n_lines:
        raise Refused(
            f"Invalid `view_range`: {view_range}. Its first element `{first}` should be within "
            f"the range of lines of the file: {[1, n_lines]}"
        )
    if last > n_lines:
        raise Refused(
            f"Invalid `view_range`: {view_range}. Its second element `{last}` should be smaller "
            f"than the number of lines in the file: `{n_lines}`"
        )
    if last != -1 and last < first:
        raise Refused(
            f"Invalid `view_range`: {view_range}. Its second element `{last}` should be larger "
            f"or equal than its first `{first}`"
        )
    return first, n_lines if last == -1 else last


def view_directory(target: Target) -> str:
    """Non-hidden entries up to two levels deep, in `find`'s order (sorted by name)."""
    base = target.shown.rstrip("/") or "/"
    found = [base]
    for name in sorted(os.listdir(target.real)):
        if name.startswith("."):
            continue
        found.append(os.path.join(base, name))
        inner = os.path.join(target.real, name)
        if os.path.isdir(inner) and not os.path.islink(inner):
            children = sorted(c for c in os.listdir(inner) if not c.startswith("."))
            found += [os.path.join(base, name, child) for child in children]
    listing = "\n".join(found)
    if len(listing) > MAX_RESPONSE_CHARS:
        listing = listing[:MAX_RESPONSE_CHARS] + "\n" + TRUNCATED_NOTE
    return (
        f"Here's the files and directories up to 2 levels deep in {target.shown}, excluding "
        f"hidden items:\n{listing}\n"
    )


def create(target: Target, file_text: str) -> str:
    parent = os.path.dirname(target.real)
    if not os.path.isdir(parent):
        raise Refused(
            f"The parent directory {os.path.dirname(target.shown) or parent} does not exist. "
            "Please create it first."
        )
    write_file(target, file_text, "utf-8")
    remember(target, None, "utf-8")
    return f"File created successfully at: {target.shown}"


def occurrence_lines(text: str, old: str) -> list[int]:
    """The line each occurrence of `old` starts on (1-based)."""
    lines, start = [], text.find(old)
    while start != -1:
        lines.append(text.count("\n", 0, start) + 1)
        start = text.find(old, start + 1)
    return lines


def str_replace(target: Target, old: str, new: str) -> str:
    text, encoding = read_file(target)
    if not old:
        raise Refused(
            "No replacement was performed: `old_str` is empty; quote the text to replace."
        )
    where = occurrence_lines(text, old)
    if not where:
        raise Refused(
            f"No replacement was performed, old_str `{old}` did not appear verbatim in "
            f"{target.shown}."
        )
    if len(where) > 1:
        raise Refused(
            f"No replacement was performed. Multiple occurrences of old_str `{old}` in lines "
            f"{where}. Please ensure it is unique"
        )
    if new == old:
        raise Refused(
            f"No replacement was performed, old_str `{old}` is the same as new_str `{new}`."
        )
    updated = text.replace(old, new, 1)
    write_file(target, updated, encoding)
    remember(target, text, encoding)
    last = where[0] + new.count("\n")
    return edited(target, updated, (where[0], last), f"a snippet of {target.shown}")


def insert(target: Target, insert_line: int, new_str: str) -> str:
    text, encoding = read_file(target)
    lines = split_lines(text)
    if not 0 <= insert_line <= len(lines):
        raise Refused(
            f"Invalid `insert_line` parameter: {insert_line}. It should be within the range of "
            f"lines of the file: {[0, len(lines)]}"
        )
    before, after = lines[:insert_line], lines[insert_line:]
    if before and not before[-1].endswith("\n"):
        before[-1] += "\n"
    block = new_str
    if not block.endswith("\n") and (after or text.endswith("\n")):
        block += "\n"
    updated = "".join(before + [block] + after)
    write_file(target, updated, encoding)
    remember(target, text, encoding)
    last = insert_line + max(1, len(split_lines(block)))
    return edited(target, updated, (insert_line + 1, last), "a snippet of the edited file")


def edited(target: Target, text: str, span: tuple[int, int], described: str) -> str:
    """The confirmation after an edit: the edited lines `span` with SNIPPET_LINES around them."""
    lines = split_lines(text)
    start = max(1, span[0] - SNIPPET_LINES)
    end = min(len(lines), span[1] + SNIPPET_LINES)
    snippet = "".join(lines[start - 1 : end])
    return (
        f"The file {target.shown} has been edited. {cat_n(snippet, described, start)}"
        "Check that this is the change you meant (indentation, no duplicated lines) and edit "
        "the file again if it is not."
    )


def undo_edit(target: Target) -> str:
    versions = load_history(target)
    if not versions:
        raise Refused(f"No edit history found for {target.shown}.")
    last = versions.pop()
    if last["text"] is None:
        os.remove(target.real)
        shown = f"{target.shown} did not exist before it was created, and is removed again."
    else:
        write_file(target, last["text"], last["encoding"])
        shown = cat_n(last["text"], target.shown)
    save_history(target, versions)
    return f"Last edit to {target.shown} undone successfully. {shown}"


if __name__ == "__main__":
    sys.exit(main())
