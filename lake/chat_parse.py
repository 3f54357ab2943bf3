"""Styled conversations read back into OpenAI-style messages, and the check that they match.

`parse` undoes `chat_styles.render` (whose docstring says what each style writes, and how a
tool result is told from a user turn). No style writes call ids: the calls of a conversation
are numbered `call_0`, `call_1`, … in order, and results answer the open calls in order.
`difference` is the check a styled export is held to: each row parses back to the messages and
tools of its data.parquet row.
"""

from __future__ import annotations

import json
import re
from itertools import zip_longest
from typing import Any

from trajlake.lake.chat_styles import (
    JOINER,
    OPENER,
    RESPONSE_CLOSE,
    RESPONSE_OPEN,
    THINK_CLOSE,
    THINK_OPEN,
    TOOLS_HEADER,
    StyleError,
    arguments_value,
    check_style,
    is_json,
    parameter_types,
    system_text,
)

_XML_CALL = re.compile(
    r"<function=([^>\n]+)>\n((?:<parameter=[^>\n]+>\n.*?\n</parameter>\n)*)</function>", re.DOTALL
)
_XML_PARAMETER = re.compile(r"<parameter=([^>\n]+)>\n(.*?)\n</parameter>\n", re.DOTALL)


def parse(
    turns: list[dict[str, Any]], style: str, tools: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """OpenAI-style messages from styled turns; `tools` (the schemas) types xml parameters."""
    check_style(style)
    if not turns or turns[0]["role"] != "system":
        raise StyleError("a styled conversation starts with the system turn")
    system, found, _ = turns[0]["content"].rpartition(TOOLS_HEADER[style])
    if not found:
        raise StyleError(f"the system turn has no {style} tools block")
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
    types, open_calls, made = parameter_types(tools or []), [], 0
    for turn in turns[1:]:
        role, content = turn["role"], turn["content"]
        if role == "assistant":
            messages.append(_parse_assistant(content, style, types, made))
            open_calls = [call["id"] for call in messages[-1]["tool_calls"] or []]
            made += len(open_calls)
            continue
        results = _tool_results(content, style) if role == "user" and open_calls else None
        if results is None:
            messages.append({"role": role, "content": content})
            open_calls = []
        for result in results or []:
            if not open_calls:
                raise StyleError(f"more tool results than calls: {result[:80]!r}")
            messages.append({"role": "tool", "tool_call_id": open_calls.pop(0), "content": result})
    return messages


def comparable(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a style keeps of each message: role, content (None as ""), reasoning (empty as
    None), calls as (name, arguments as JSON values), and for a result the number of its call."""
    numbers: dict[str, int] = {}
    out = []
    for message in messages:
        calls = []
        for call in message.get("tool_calls") or []:
            numbers.setdefault(call["id"], len(numbers))
            function = call["function"]
            calls.append((function["name"], arguments_value(function["arguments"])))
        answers = message.get("tool_call_id")
        out.append(
            {
                "role": message["role"],
                "content": message.get("content") or "",
                "reasoning_content": message.get("reasoning_content") or None,
                "tool_calls": calls,
                "answers": numbers.get(answers, answers) if message["role"] == "tool" else None,
            }
        )
    return out


def difference(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]], turns: list[dict], style: str
) -> str | None:
    """The first way styled `turns` do not give back `messages` and `tools`, or None."""
    try:
        parsed = parse(turns, style, tools)
    except StyleError as e:
        return f"does not parse as {style}: {e}"
    wrong = [i for i, t in enumerate(turns, 1) if t["role"] != "assistant" and t.get("train")]
    if wrong:
        return f"turn {wrong[0]}: train must be false for turns other than the assistant's"
    trained = [m.get("train") is not False for m in messages if m["role"] == "assistant"]
    flags = [t.get("train") for t in turns if t["role"] == "assistant"]
    if flags != trained:
        return f"assistant turns' train flags are {flags}, the sample's {trained}"
    if turns[0]["content"] != system_text(parsed[0]["content"], tools, style):
        return "turn 1 (system): its tools block does not list the sample's tools"
    pairs = zip_longest(comparable(messages), comparable(parsed))
    for number, (expected, actual) in enumerate(pairs, start=1):
        if expected != actual:
            return f"message {number}: expected {expected!r:.300}, parsed {actual!r:.300}"
    return None


def _parse_assistant(content: str, style: str, types: dict, made: int) -> dict[str, Any]:
    """One assistant message; its calls numbered from `made`, the calls made before it."""
    reasoning = None
    if content.startswith(THINK_OPEN) and THINK_CLOSE in content:
        reasoning, content = content[len(THINK_OPEN) :].split(THINK_CLOSE, 1)
    text, calls = _split_calls(content, style, types)
    tool_calls = [
        {"id": f"call_{made + i}", "type": "function", "function": {"name": n, "arguments": a}}
        for i, (n, a) in enumerate(calls)
    ]
    return {
        "role": "assistant",
        "content": text,
        "reasoning_content": reasoning,
        "tool_calls": tool_calls or None,
    }


def _split_calls(text: str, style: str, types: dict) -> tuple[str, list[tuple[str, str]]]:
    """(content, [(name, arguments JSON)]): the calls are the end of the text, from the first
    place after which all of it reads as calls."""
    joiner, opener = JOINER[style], OPENER[style]
    ahead = re.compile(f"(?={re.escape(joiner + opener)})")
    after = [match.start() + len(joiner) for match in ahead.finditer(text)]
    for start in ([0] if text.startswith(opener) else []) + after:
        calls = _read_calls(text[start:], style, types)
        if calls is not None:
            return (text[: start - len(joiner)] if start else ""), calls
    return text, []


def _read_calls(text: str, style: str, types: dict) -> list[tuple[str, str]] | None:
    """The calls `text` is made of, or None when it is not only calls."""
    if style == "xml":
        return _read_xml_calls(text, types)
    lines = text.split("\n")
    if style == "hermes":
        frames = [(lines[i], lines[i + 2]) for i in range(0, len(lines) - 2, 3)]
        if len(lines) % 3 or any(frame != ("<tool_call>", "</tool_call>") for frame in frames):
            return None
        lines = lines[1::3]
    calls = []
    for line in lines:
        call = json.loads(line) if is_json(line) else None
        if not isinstance(call, dict) or set(call) != {"name", "arguments"}:
            return None
        arguments = call["arguments"]
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments, ensure_ascii=False)
        calls.append((call["name"], arguments))
    return calls


def _read_xml_calls(text: str, types: dict) -> list[tuple[str, str]] | None:
    calls, position = [], 0
    while (match := _XML_CALL.match(text, position)) is not None:
        name = match.group(1)
        values = {
            key: _xml_parse(value, types.get((name, key)))
            for key, value in _XML_PARAMETER.findall(match.group(2))
        }
        calls.append((name, json.dumps(values, ensure_ascii=False)))
        if match.end() == len(text):
            return calls
        if text[match.end()] != "\n":
            return None
        position = match.end() + 1
    return None


def _xml_parse(value: str, kind: str | None) -> Any:
    """A parameter's value: as it is for a string parameter, else JSON where it parses."""
    if kind == "string" or not is_json(value):
        return value
    return json.loads(value)


def _tool_results(content: str, style: str) -> list[str] | None:
    """The results a user turn after calls holds, or None when it is a user turn of its own
    (hermes: one that is not <tool_response> blocks)."""
    if style != "hermes":
        return [content]
    if not (content.startswith(RESPONSE_OPEN) and content.endswith(RESPONSE_CLOSE)):
        return None
    inner = content[len(RESPONSE_OPEN) : -len(RESPONSE_CLOSE)]
    return inner.split(f"{RESPONSE_CLOSE}\n{RESPONSE_OPEN}")
