"""What every built-in tool returns, and the error for a tool that cannot run at all."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from trajlake.errors import TrajlakeError
from trajlake.sandbox import Sandbox


class ToolError(TrajlakeError):
    """A tool cannot run at all (unknown name, a sandbox without python3): a setup problem, not
    a bad call. A bad call is a `ToolResult` with `error=True` that the model gets to read."""


@dataclass(frozen=True)
class ToolResult:
    """What one tool call did, before any scaffold renders it for the model.

    Attributes:
        output: the text the tool produced (for an error: the message saying what was wrong).
        error: the call failed or was refused (a command's non-zero exit, a bad argument).
        submitted: the call ends the episode (`submit`); `output` is then the patch.
        returncode: the exit status of a shell command (`bash`); None for the other tools.
        timed_out: the command was killed at the sandbox's time limit.
        duration_s: how long a shell command ran (0 for the other tools).
    """

    output: str
    error: bool = False
    submitted: bool = False
    returncode: int | None = None
    timed_out: bool = False
    duration_s: float = 0.0


#: A built-in tool: runs one call's (already JSON-decoded) arguments in the rollout's sandbox.
Tool = Callable[[Sandbox, Mapping[str, Any]], ToolResult]


def unexpected_arguments(tool: str, arguments: Mapping[str, Any], allowed: set[str]) -> str:
    """The error message for arguments `tool` does not take; "" when there are none."""
    extra = sorted(set(arguments) - allowed)
    if not extra:
        return ""
    takes = ", ".join(sorted(allowed)) or "no arguments"
    return f"Unexpected argument(s) for {tool}: {', '.join(extra)}. It takes: {takes}."
