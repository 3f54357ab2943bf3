"""Turn an OpenAI-compatible chat completion (a JSON dict) into a trajlake assistant message.

Reasoning arrives in one of three ways, and all are kept: a `reasoning_content` field (vLLM and
SGLang reasoning parsers, DeepSeek), a `reasoning` field (newer vLLM), or inline in the content as
`<think>…</think>` (a server without a reasoning parser; the opening tag may be missing when the
chat template already opened it). Malformed tool calls never raise: they are kept as sent and
described in `TeacherReply.format_error`, so the agent can tell the model what went wrong.

Tool calls come from the `tool_calls` field and, as `teacher.tool_call_parse` says, from what is
left of the content once reasoning is split off (trajlake.teacher.content_calls). A reply with
calls says where they came from in the message's `tool_call_source`: `native` (the field),
`hermes`, `fenced` or `bare` (the content), or `native+<form>` when both gave calls. The key is
trajlake's, not OpenAI's: the agent keeps it in the rollout's messages and leaves it out of
what it sends back; mixture exports read only the OpenAI fields.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

from trajlake.teacher.content_calls import parse_content_calls

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
_THINK_BLOCK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
NATIVE = "native"
SOURCE_KEY = "tool_call_source"  # the message key saying where its calls were read

ToolCallParse = Literal["auto", "native", "content"]


@dataclass(frozen=True)
class TeacherReply:
    """One answer of the teacher.

    `message` is the assistant turn in trajlake's format: role, content (without inline
    reasoning), reasoning_content ('' if none), tool_calls ([] if none) and, when the reply
    made calls, tool_call_source (see the module docstring). `format_error` is '' unless a tool
    call could not be understood. `latency_s` is the whole call, retries included.
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

    @property
    def tool_call_source(self) -> str:
        return self.message.get(SOURCE_KEY, "")


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


def parse_message(
    raw: dict[str, Any],
    parse: ToolCallParse = NATIVE,
    tool_names: Collection[str] = (),
    id_seed: str = "",
) -> tuple[dict[str, Any], str]:
    """The trajlake assistant message for a completion's `message`, and a format error or ''.

    `parse` and the offered `tool_names` say whether the content is read for calls too (never
    when no tools were offered); `id_seed` makes those calls' ids (content_calls).
    """
    content = raw.get("content")
    content = content if isinstance(content, str) else ""
    inline, content = split_think(content)  # reasoning first, then calls from what remains
    field = raw.get("reasoning_content") or raw.get("reasoning") or ""
    reasoning = "\n\n".join(p for p in (str(field).strip(), inline) if p)
    tool_calls, errors = parse_tool_calls(raw.get("tool_calls"))
    sources = [NATIVE] if tool_calls else []
    native_sent = bool(tool_calls or errors)
    if tool_names and (parse == "content" or (parse == "auto" and not native_sent)):
        found = parse_content_calls(content, tool_names, id_seed)
        content, tool_calls = found.content, tool_calls + found.calls
        sources += [found.source] if found.source else []
        errors += [found.error] if found.error else []
    message = {
        "role": "assistant",
        "content": content,
        "reasoning_content": reasoning,
        "tool_calls": tool_calls,
    }
    if sources:
        message[SOURCE_KEY] = "+".join(sources)
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


def parse_completion(
    data: Any,
    parse: ToolCallParse = NATIVE,
    tool_names: Collection[str] = (),
    id_seed: str = "",
) -> tuple[dict[str, Any], str, dict[str, int] | None, str]:
    """(message, finish_reason, usage or None, format error) of a chat.completion dict; the
    other arguments are parse_message's.

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
    message, error = parse_message(raw_message, parse, tool_names, id_seed)
    usage = data.get("usage")
    counts = None
    if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
        counts = {
            "prompt_tokens": usage["prompt_tokens"],
            "completion_tokens": int(usage.get("completion_tokens") or 0),
        }
    return message, str(choice.get("finish_reason") or ""), counts, error
