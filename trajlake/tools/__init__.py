"""Built-in agent tools: each runs one tool call in the rollout's sandbox, never on the host.

result = run_tool("str_replace_editor", box, {"command": "view", "path": "src/app.py"})
result.output, result.error, result.submitted

`TOOLS` maps an implementation name to its function; a scaffold names, for each tool it shows the
model, which of these runs it. Every function takes the sandbox and the call's decoded arguments
and returns a `ToolResult`: a bad call (missing file, non-unique `old_str`, ...) is a result with
`error=True` whose output tells the model what to fix; only a tool that cannot run at all raises
`ToolError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trajlake.sandbox import Sandbox
from trajlake.tools.base import Tool, ToolError, ToolResult
from trajlake.tools.builtin import bash, submit, think
from trajlake.tools.editor import str_replace_editor

TOOLS: dict[str, Tool] = {
    "bash": bash,
    "str_replace_editor": str_replace_editor,
    "submit": submit,
    "think": think,
}


def get_tool(name: str) -> Tool:
    """The built-in tool `name`; ToolError naming the built-in ones otherwise."""
    try:
        return TOOLS[name]
    except KeyError:
        raise ToolError(
            f"no built-in tool {name!r}: the built-in tools are {', '.join(sorted(TOOLS))}"
        ) from None


def run_tool(name: str, sandbox: Sandbox, arguments: Mapping[str, Any]) -> ToolResult:
    """Run one call of the built-in tool `name` in `sandbox`."""
    return get_tool(name)(sandbox, arguments)


__all__ = ["TOOLS", "Tool", "ToolError", "ToolResult", "get_tool", "run_tool"]
