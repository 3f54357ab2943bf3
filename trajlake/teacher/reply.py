"""Turn an OpenAI-compatible chat completion (a JSON dict) into a trajlake assistant message.

Reasoning arrives in one of three ways, and all are kept: a `reasoning_content` field (vLLM and
SGLang reasoning parsers, DeepSeek), a `reasoning` field (newer vLLM), or inline in the content as
`<think>…</think>` (a server without a reasoning parser; the opening tag may be missing when the
chat template already opened it). Malformed tool calls never raise: they are kept as sent and
described in `TeacherReply.format_error`, so the agent can tell the model what went wrong.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
_THINK_BLOCK = re.compile(r"<think>(.*?)</think>", re.DOTALL)


@dataclass(frozen=True)
class TeacherReply:
    """One answer of the teacher.

    `message` is the assistant turn in trajlake's format: role, content (without inline
    reasoning), reasoning_content ('' if none) and tool_calls ([] if none). `format_error` is ''
    unless a tool call could not be understood. `latency_s` is the whole call, retries included.
    """

    message: dict[str, Any]
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_s: float
    format_error: str = ""
    usage_estimated: bool = False

    @property
    def content(self) -> str:
        return self.message["content"]

    @property
    def reasoning(self) -> str:
        return self.message["reasoning_content"]

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        return self.message["tool_calls"]


def split_think(content: str) -> tuple[str, str]:
    """Split inline reasoning off `content`; returns (reasoning, content without it)."""
    parts = [m.strip() for m in _THINK_BLOCK.findall(content)]
    rest = _THINK_BLOCK.sub("", content)
    if THINK_CLOSE in rest:  # the template opened <think> in the prompt: only the close is here
        head, _, rest = rest.partition(THINK_CLOSE)
        parts.insert(0, head.strip())
    if THINK_OPEN in rest:  # cut off by max_tokens before the block closed
        rest, _, tail = rest.partition(THINK_OPEN)
        parts.append(tail.strip())
    return "\n\n".join(p for p in parts if p), rest.strip()


def parse_message(raw: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The trajlake assistant message for a completion's `message`, and a format error or ''."""
    content = raw.get("content")
    content = content if isinstance(content, str) else ""
    inline, content = split_think(content)
    field = raw.get("reasoning_content") or raw.get("reasoning") or ""
    reasoning = "\n\n".join(p for p in (str(field).strip(), inline) if p)
    tool_calls, errors = parse_tool_calls(raw.get("tool_calls"))
    message = {
        "role": "assistant",
        "content": content,
        "reasoning_content": reasoning,
        "tool_calls": tool_calls,
    }
    return message, "; ".join(errors)


def parse_tool_calls(raw: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """Normalize tool calls to [{id, type, function: {name, arguments}}], collecting errors."""
    if raw is None:
        return [], []
    if not isinstance(raw, list):
        return [], [f"tool_calls must be a list, got {type(raw).__name__}: {str(raw)[:200]}"]
    calls: list[dict[str, Any]] = []
    errors: list[str] = []
    for index, item in enumerate(raw):
        call, error = _parse_tool_call(index, item)
        calls.append(call)
        if error:
            errors.append(error)
    return calls, errors


def _parse_tool_call(index: int, item: Any) -> tuple[dict[str, Any], str]:
    item = item if isinstance(item, dict) else {"raw": item}
    function = item.get("function") if isinstance(item.get("function"), dict) else {}
    call_id = str(item.get("id") or f"call_{index}")
    name = function.get("name")
    arguments = function.get("arguments", "")
    if isinstance(arguments, dict):  # a few servers send the object itself
        arguments = json.dumps(arguments)
    elif not isinstance(arguments, str):
        arguments = json.dumps(arguments) if arguments is not None else ""
    call = {
        "id": call_id,
        "type": "function",
        "function": {"name": name or "", "arguments": arguments},
    }
    if not name:
        return call, f"tool call {index} has no function name: {json.dumps(item)[:200]}"
    where = f"tool call {index} ({name})"
    try:
        parsed = json.loads(arguments)
    except json.JSONDecodeError as e:
        return call, f"{where}: arguments are not valid JSON ({e}): {arguments[:200]}"
    if not isinstance(parsed, dict):
        return call, f"{where}: arguments must be a JSON object: {arguments[:200]}"
    return call, ""


def parse_completion(data: Any) -> tuple[dict[str, Any], str, dict[str, int] | None, str]:
    """(message, finish_reason, usage or None, format error) of a chat.completion dict.

    Raises ValueError when `data` is not a chat completion at all.
    """
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        raise ValueError(f"not a chat completion: {str(data)[:300]}")
    if not data["choices"] or not isinstance(data["choices"][0], dict):
        raise ValueError(f"the completion has no choices: {str(data)[:300]}")
    choice = data["choices"][0]
    raw_message = choice.get("message")
    if not isinstance(raw_message, dict):
        raise ValueError(f"the first choice has no message: {str(choice)[:300]}")
    message, error = parse_message(raw_message)
    usage = data.get("usage")
    counts = None
    if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
        counts = {
            "prompt_tokens": usage["prompt_tokens"],
            "completion_tokens": int(usage.get("completion_tokens") or 0),
        }
    return message, str(choice.get("finish_reason") or ""), counts, error
