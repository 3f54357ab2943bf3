"""Does a training sample show the model exactly what the rollout scaffold shows it?

A student is served with the scaffold's prompts and tool schemas; if its training data used
other words, other schemas or another observation format, it learns a format it will never see.
`check_sample` compares one sample, field by field, with what `scaffold` produces, and returns
the first difference (field, line number, expected and actual line), or None.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from itertools import zip_longest
from typing import Any

from trajlake.consumers import scaffold


def _template_pattern(template: str, fields: dict[str, str]) -> re.Pattern[str]:
    """A regex matching `template` with each {field} replaced by the given sub-pattern."""
    parts = re.split(r"\{(\w+)(?::[^}]*)?\}", template)
    pattern = "".join(
        re.escape(part) if i % 2 == 0 else f"(?:{fields[part]})" for i, part in enumerate(parts)
    )
    return re.compile(pattern, re.DOTALL)


OBSERVATION = _template_pattern(
    scaffold.OBSERVATION_TEMPLATE, {"returncode": r"-?\d+", "output": r".*"}
)
FORMAT_ERROR = _template_pattern(scaffold.FORMAT_ERROR_TEMPLATE, {"error": r".*"})


def first_difference(field: str, expected: str, actual: str) -> str | None:
    """`field: line N: expected …, got …` for the first line that differs, else None."""
    pairs = zip_longest(expected.splitlines(), actual.splitlines())
    for number, (want, got) in enumerate(pairs, start=1):
        if want != got:
            return f"{field}: line {number}: expected {want!r}, got {got!r}"
    return None


def check_sample(messages: Sequence[dict[str, Any]], tools: str, request: str) -> str | None:
    """The first way the sample differs from what the scaffold sends at inference, or None."""
    expected_tools = json.dumps(scaffold.TOOLS, indent=2, sort_keys=True)
    try:
        actual_tools = json.dumps(json.loads(tools), indent=2, sort_keys=True)
    except json.JSONDecodeError as e:
        return f"tools: not JSON ({e})"
    problem = first_difference("tools", expected_tools, actual_tools)
    if problem:
        return problem
    if len(messages) < 2 or [m["role"] for m in messages[:2]] != ["system", "user"]:
        return "messages: must start with a system and a user message"
    problem = first_difference(
        "system prompt", scaffold.system_prompt(), messages[0]["content"] or ""
    ) or first_difference(
        "task prompt", scaffold.task_prompt(request), messages[1]["content"] or ""
    )
    if problem:
        return problem
    return _check_turns(messages[2:])


def _check_turns(messages: Sequence[dict[str, Any]]) -> str | None:
    tool_names = {tool["function"]["name"] for tool in scaffold.TOOLS}
    open_calls: set[str] = set()
    for number, message in enumerate(messages, start=3):
        role, content = message["role"], message.get("content") or ""
        where = f"message {number} ({role})"
        if role == "assistant":
            for call in message.get("tool_calls") or []:
                problem = _check_call(call, tool_names)
                if problem:
                    return f"{where}: {problem}"
                open_calls.add(call["id"])
        elif role == "tool":
            if message.get("tool_call_id") not in open_calls:
                return f"{where}: answers no earlier tool call ({message.get('tool_call_id')!r})"
            if not OBSERVATION.fullmatch(content):
                return f"{where}: not in the observation format: {content.splitlines()[:1]!r}"
        elif role == "user":
            if not FORMAT_ERROR.fullmatch(content):
                return f"{where}: a user turn the scaffold never sends: {content[:80]!r}"
        else:
            return f"{where}: unknown role"
    return None


def _check_call(call: dict[str, Any], tool_names: set[str]) -> str | None:
    function = call.get("function") or {}
    if function.get("name") not in tool_names:
        return f"calls {function.get('name')!r}, not one of the tools {sorted(tool_names)}"
    try:
        arguments = json.loads(function.get("arguments") or "")
    except json.JSONDecodeError:
        return f"arguments are not JSON: {function.get('arguments')!r}"
    if not isinstance(arguments, dict):
        return f"arguments are not a JSON object: {function.get('arguments')!r}"
    schema = next(t for t in scaffold.TOOLS if t["function"]["name"] == function["name"])
    missing = set(schema["function"]["parameters"].get("required", [])) - set(arguments)
    if missing:
        return f"arguments {function.get('arguments')!r} lack {sorted(missing)}"
    return None
