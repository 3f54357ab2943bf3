"""A scaffold's tool calls: parsed from the teacher's reply, run in the sandbox, written back.

`parse_actions` turns a reply's tool calls into actions, or raises mini-swe-agent's
`FormatError` with the scaffold's format-error reply; `Actions.execute` runs one action with
the built-in tool the scaffold names (trajlake.tools), ends the episode on a submit or the
marker, and returns the output the model reads after `render_observation`.

For the bash-only mini-bash scaffold the error wording is mini-swe-agent's, so its rollouts read
exactly as they did when mini-swe-agent parsed them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from minisweagent.exceptions import FormatError, Submitted  # agent.py says how to install it

from trajlake.consumers.scaffold import render_format_error, render_observation
from trajlake.consumers.scaffold_spec import Scaffold
from trajlake.sandbox import Sandbox
from trajlake.teacher.reply import TeacherReply
from trajlake.tools import run_tool

NO_CALLS = (  # mini-swe-agent's words
    "No tool calls found in the response. Every response MUST include at least one tool call."
)


def parse_actions(scaffold: Scaffold, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One action per tool call: {tool, runs_with, arguments, tool_call_id}; FormatError (with
    the scaffold's reply) for no call, too many calls, unknown tools or bad arguments."""
    if not calls:
        raise malformed(scaffold, NO_CALLS)
    limit = scaffold.tool_calls_per_turn
    if limit and len(calls) > limit:
        raise malformed(
            scaffold,
            f"Your reply made {len(calls)} tool calls; make exactly {limit} per reply.",
        )
    tools = {tool.name: tool for tool in scaffold.tools}
    actions = []
    for call in calls:
        function = call.get("function") or {}
        name = function.get("name", "")
        problem, arguments = "", {}
        try:
            arguments = json.loads(function.get("arguments") or "{}")
        except ValueError as e:
            problem = f"Error parsing tool call arguments: {e}."
        if name not in tools:
            problem += f"Unknown tool '{name}'."
        elif not isinstance(arguments, dict):
            problem += f"The arguments of {name} must be a JSON object."
        else:
            required = tools[name].function["parameters"].get("required", [])
            for key in [k for k in required if k not in arguments][:1]:
                problem += f"Missing '{key}' argument in {name} tool call."
        if problem:
            raise malformed(scaffold, problem.strip())
        actions.append(
            {
                "tool": name,
                "runs_with": tools[name].runs_with(),
                "arguments": arguments,
                "tool_call_id": call.get("id", ""),
            }
        )
    return actions


def actions_of(scaffold: Scaffold, reply: TeacherReply) -> list[dict[str, Any]]:
    """The actions of a reply as the scaffold reads them; FormatError (its message the
    scaffold's answer) for a reply it rejects: no call, too many, an unknown tool, a missing
    argument, calls the client could not read, or a text reply without exactly its blocks."""
    message = reply.message
    if scaffold.text_actions:  # no tools were offered: the text holds the action
        return parse_text_actions(scaffold, message.get("content") or "")
    if reply.format_error:  # the client could not read the reply's calls
        raise malformed(scaffold, reply.format_error)
    return parse_actions(scaffold, message.get("tool_calls") or [])


def parse_text_actions(scaffold: Scaffold, content: str) -> list[dict[str, Any]]:
    """The commands of a text scaffold's fenced blocks (```TAG, newline, command, newline,
    ```: mini-swe-agent's action_regex), one action each; FormatError (with the scaffold's
    reply) unless the reply holds exactly `blocks_per_reply` of them."""
    text = scaffold.text_actions
    assert text is not None, "a tool-calling scaffold's actions are its tool calls"
    blocks = [b.strip() for b in re.findall(fence_pattern(text.language), content, re.DOTALL)]
    if len(blocks) != text.blocks_per_reply:
        error = text.wrong_count.format(expected=text.blocks_per_reply, found=len(blocks))
        raise malformed(scaffold, error, found=len(blocks))
    runs = {tool.name: tool.runs_with() for tool in scaffold.tools}[text.tool]
    return [
        {"tool": text.tool, "runs_with": runs, "arguments": {"command": b}, "tool_call_id": ""}
        for b in blocks
    ]


def fence_pattern(language: str) -> str:
    """The regex of one fenced block of `language` (its command is group 1)."""
    return rf"```{re.escape(language)}\s*\n(.*?)\n```"


def malformed(scaffold: Scaffold, error: str, found: int = 0) -> Exception:
    """The FormatError whose message is the scaffold's reply to a malformed action (and, in its
    `extra`, the problem in a line)."""
    message = {
        "role": "user",
        "content": render_format_error(scaffold, error, found),
        "extra": {"interrupt_type": "FormatError", "problem": error},
    }
    return FormatError(message)


@dataclass
class Actions:
    """Runs one episode's actions in its sandbox; remembers whether the review was shown."""

    scaffold: Scaffold
    sandbox: Sandbox
    reviewed: bool = False

    def execute(self, action: dict[str, Any]) -> dict[str, Any]:
        """Run `action`: {output, returncode, error}; raises Submitted when the episode ends."""
        result = run_tool(action["runs_with"], self.sandbox, action["arguments"])
        end = self.scaffold.episode_end
        if result.submitted:
            if end.review_on_submit and not self.reviewed:
                self.reviewed = True  # shown once; the next submit ends the episode
                review = end.review_on_submit.format(diff=result.output)
                return {"output": review, "returncode": 0, "error": False}
            raise Submitted(_exit("Submitted"))
        output = result.output
        if result.timed_out:
            output += "\n" + self.scaffold.observation.timeout.format(timeout=result.duration_s)
        first = output.lstrip().splitlines()[:1]
        if end.marker and first == [end.marker] and result.returncode == 0:
            raise Submitted(_exit("Submitted"))
        return {"output": output, "returncode": result.returncode, "error": result.error}

    def observe(self, output: dict[str, Any], limit_chars: int | None) -> str:
        """The tool message the model reads for one action's output."""
        return render_observation(
            self.scaffold,
            output["output"],
            output["returncode"],
            limit_chars,
            error=output["error"] and output["returncode"] is None,
        )


def _exit(status: str) -> dict[str, Any]:
    return {"role": "exit", "content": "", "extra": {"exit_status": status, "submission": ""}}
