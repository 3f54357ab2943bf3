"""The built-in tools besides the file editor: `bash`, `submit` and `think`.

`bash` runs in the rollout's sandbox like every agent command (a fresh `bash -c` in the repository
root: directory changes and variables do not carry over to the next call). `submit` takes the
sandbox's patch, the same one a rollout records, and ends the episode. `think` does nothing: the
thought stays in the trajectory as the call's argument.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trajlake.sandbox import Sandbox
from trajlake.tools.base import ToolResult, unexpected_arguments

THOUGHT_LOGGED = "Your thought has been logged."


def bash(sandbox: Sandbox, arguments: Mapping[str, Any]) -> ToolResult:
    """Run `arguments["command"]`; error when it exits non-zero or is killed at the time limit."""
    problem = unexpected_arguments("bash", arguments, {"command"})
    command = arguments.get("command")
    if not problem and (not isinstance(command, str) or not command.strip()):
        problem = "Parameter `command` is required for bash: the command line to run, a string."
    if problem:
        return ToolResult(problem, error=True)
    result = sandbox.run(command)
    return ToolResult(
        result.output,
        error=result.returncode != 0 or result.timed_out,
        returncode=result.returncode,
        timed_out=result.timed_out,
        duration_s=result.duration_s,
    )


def submit(sandbox: Sandbox, arguments: Mapping[str, Any]) -> ToolResult:
    """End the episode with the patch of everything changed in the checkout (`Sandbox.diff`,
    taken against trajlake's private index: the agent's `.git` cannot alter it)."""
    problem = unexpected_arguments("submit", arguments, set())
    if problem:
        return ToolResult(problem, error=True)
    return ToolResult(sandbox.diff(), submitted=True)


def think(sandbox: Sandbox, arguments: Mapping[str, Any]) -> ToolResult:
    """No effect on the sandbox; the thought is recorded where the call is."""
    problem = unexpected_arguments("think", arguments, {"thought"})
    if not problem and not isinstance(arguments.get("thought"), str):
        problem = "Parameter `thought` is required for think: your thought, a string."
    if problem:
        return ToolResult(problem, error=True)
    return ToolResult(THOUGHT_LOGGED)
