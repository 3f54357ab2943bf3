"""`str_replace_editor`: view, create and edit files in the rollout's sandbox, never on the host.

The interface is SWE-agent's function-calling file editor (tool bundle `tools/edit_anthropic`,
itself after Anthropic's text editor tool) as of SWE-agent 1.1.0: repository SWE-agent/SWE-agent,
main at commit 3ea751c087f32b16e039a2233dd6eefecef325d5 (v1.1.0 + 177 commits; the bundle last
changed in df63c382ab8615f1363f739ab2801918d8d3b02a), config.yaml and bin/str_replace_editor:
`command` is one of view, create, str_replace, insert, undo_edit; the arguments are path,
file_text, old_str, new_str, insert_line and view_range; files are shown numbered as by `cat -n`
(6-wide number, tab), content past 16,000 characters clipped with a `<response clipped><NOTE>`
note; str_replace needs exactly one occurrence of old_str; str_replace and insert answer with the
edited lines and 4 lines around them; directories list non-hidden entries two levels deep; the
error messages have SWE-agent's shapes. The code and the wording of notes are trajlake's own.

Where trajlake differs on purpose (each keeps patches small and the sandbox closed):

- paths may also be relative to the repository root (SWE-agent wants absolute ones); anything
  resolving outside it (`..`, symlinks, absolute paths elsewhere) is refused, and so are writes
  inside `.git`;
- binary files (a NUL byte in the first 8 KiB) and files over 10 MiB are refused with a hint to
  use bash, where SWE-agent would show them decoded as latin-1;
- a file is written back byte for byte apart from the edit: no tab expansion of the whole file
  and no CRLF conversion (SWE-agent rewrites both); tabs are expanded only in what is shown;
- undo_edit works (SWE-agent 1.1.0's history never reaches its state file, so it always answers
  "No edit history found"); undoing a create removes the file;
- a directory listing is sorted, so that rollouts are reproducible;
- the clipping note follows the numbered lines on a line of its own (SWE-agent glues it to the
  last line shown); arguments over 100,000 bytes of JSON are refused (one argv string).

How a call runs: one sandbox command, `python3 -I -S -c BOOTSTRAP` with the arguments as one line
of ASCII JSON on stdin through a heredoc with a random delimiter (JSON escapes every newline, so
the delimiter line cannot occur in it). The bootstrap holds the text of editor_files.py and
editor_program.py; `-I` keeps the checkout's own modules out of `sys.path`. Undo history lives in
the checkout's `.git/trajlake-editor/` (see editor_files.py).
"""

from __future__ import annotations

import functools
import json
import secrets
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trajlake.sandbox import Sandbox
from trajlake.tools.base import ToolError, ToolResult

NAME = "str_replace_editor"
#: A sandbox command is one argv string (Linux: at most 128 KiB); the program takes ~17 KiB.
MAX_ARGUMENT_BYTES = 100_000
REFUSED_EXIT = 3
COMMAND_NOT_FOUND_EXIT = 127


def str_replace_editor(
    sandbox: Sandbox, arguments: Mapping[str, Any], timeout_s: float | None = None
) -> ToolResult:
    """Run one editor call in `sandbox`; `timeout_s` defaults to the sandbox's command limit."""
    payload = json.dumps(dict(arguments), ensure_ascii=True)
    if len(payload) > MAX_ARGUMENT_BYTES:
        return ToolResult(
            f"The arguments of this {NAME} call are {len(payload)} bytes as JSON, more than "
            f"{MAX_ARGUMENT_BYTES}: write a large file in parts (`create` with the first part, "
            "then `insert` the rest at the end).",
            error=True,
        )
    result = sandbox.run(editor_command(payload), timeout_s=timeout_s)
    if result.timed_out:
        message = f"{NAME} was killed after {result.duration_s:.0f} seconds."
        return ToolResult(message, error=True, timed_out=True)
    if result.returncode == 0:
        return ToolResult(result.output)
    if result.returncode == REFUSED_EXIT:
        return ToolResult(result.output, error=True)
    if result.returncode == COMMAND_NOT_FOUND_EXIT:
        raise ToolError(
            f"the {sandbox.kind} sandbox has no python3 ({result.output.strip()}): {NAME} runs "
            "Python 3.8+ inside the sandbox; for docker, set sandbox.image to an image with it"
        )
    return ToolResult(
        f"{NAME} failed inside the sandbox (exit status {result.returncode}):\n{result.output}",
        error=True,
    )


def editor_command(payload: str) -> str:
    """The bash command line that runs the editor on `payload` (one line of ASCII JSON)."""
    if "\n" in payload or not payload.isascii():
        raise ValueError("the payload must be one line of ASCII JSON")
    delimiter = f"TRAJLAKE_EDITOR_{secrets.token_hex(8)}"
    return f"python3 -I -S -c {shlex.quote(bootstrap())} <<'{delimiter}'\n{payload}\n{delimiter}\n"


@functools.cache
def bootstrap() -> str:
    """Python source that loads editor_files as a module, then runs editor_program as __main__."""
    here = Path(__file__).parent
    files = (here / "editor_files.py").read_text()
    program = (here / "editor_program.py").read_text()
    return "\n".join(
        [
            "import sys, types",
            "files = types.ModuleType('editor_files')",
            f"exec(compile({files!r}, 'editor_files.py', 'exec'), files.__dict__)",
            "sys.modules['editor_files'] = files",
            f"exec(compile({program!r}, 'editor_program.py', 'exec'), {{'__name__': '__main__'}})",
        ]
    )
