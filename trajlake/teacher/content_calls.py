"""Tool calls written in a reply's content, for servers that do not parse them into `tool_calls`.

A server without a tool-call parser for its model (llama.cpp with a generic template, vLLM
without `--tool-call-parser`) returns the calls as text. Three forms are read, the first one
present in the text wins (a model writes one form per reply):

- `hermes`: `<tool_call>{"name": …, "arguments": …}</tool_call>`, one tag per call, as the
  hermes and Qwen chat templates print them (a last tag cut off by max_tokens may stay open);
- `fenced`: a Markdown code block tagged `json` (or `tool_call`, or untagged) holding a call
  object or a list of them;
- `bare`: call objects (or lists of them) anywhere in the text.

A call object has a `name` and its `arguments` (`parameters` is accepted too), an object or a
JSON string holding one; inside `<tool_call>` tags the arguments may be left out. In fenced and
bare text an object is a call only when it has both keys, so JSON the model merely shows (a
config file, a package.json) stays text; one that starts like a call (`{"name": …`) but is not
valid JSON is a malformed call.

Every call is checked against the offered tools. Any problem leaves the text as it was, with no
calls taken from it, and is described in `ContentCalls.error` (the agent answers it with the
scaffold's format-error reply, and the model sees what it wrote). Everything here is pure.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

HERMES = "hermes"
FENCED = "fenced"
BARE = "bare"

_HERMES_TAG = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.DOTALL)
_FENCE = re.compile(r"```[ \t]*(?:json|tool_call)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
_CALL_START = re.compile(r'[\[{]\s*\{?\s*"name"\s*:')
_HINT = 'write each tool call as one JSON object {"name": "<tool>", "arguments": {…}}'


@dataclass(frozen=True)
class ContentCalls:
    """What the content held: `calls` in OpenAI form, the `content` left once they are taken
    out, the form they came in (`source`: hermes, fenced, bare; '' when none), and `error`."""

    content: str
    calls: list[dict[str, Any]] = field(default_factory=list)
    source: str = ""
    error: str = ""


@dataclass(frozen=True)
class _Found:
    start: int
    end: int
    values: list[Any] | None  # the call objects; None when the JSON is broken
    problem: str = ""


def parse_content_calls(text: str, tool_names: Collection[str], id_seed: str = "") -> ContentCalls:
    """The tool calls written in `text` against the offered `tool_names`.

    Call ids are `call_<16 hex>` of `id_seed` (the client passes a hash of the conversation so
    far), the call's position and the text: the same reply to the same request gets the same ids.
    """
    for source, finder in ((HERMES, _hermes), (FENCED, _fenced), (BARE, _bare)):
        found = finder(text)
        if found:
            return _take(text, source, found, tool_names, id_seed)
    return ContentCalls(content=text)


def _hermes(text: str) -> list[_Found]:
    found = []
    for match in _HERMES_TAG.finditer(text):
        body = match.group(1).strip()
        try:
            value = json.loads(body)
        except json.JSONDecodeError as e:
            problem = f"the <tool_call> tag does not hold valid JSON ({e}): {body[:200]}; {_HINT}"
            found.append(_Found(match.start(), match.end(), None, problem))
            continue
        values = value if isinstance(value, list) else [value]
        found.append(_Found(match.start(), match.end(), values))
    return found


def _fenced(text: str) -> list[_Found]:
    found = []
    for match in _FENCE.finditer(text):
        body = match.group(1).strip()
        if not body.startswith(("{", "[")):
            continue
        try:
            value = json.loads(body)
        except json.JSONDecodeError as e:
            if _CALL_START.match(body):
                problem = f"the fenced tool call is not valid JSON ({e}): {body[:200]}; {_HINT}"
                found.append(_Found(match.start(), match.end(), None, problem))
            continue
        if _is_call_value(value):
            values = value if isinstance(value, list) else [value]
            found.append(_Found(match.start(), match.end(), values))
    return found


def _bare(text: str) -> list[_Found]:
    found = []
    decoder = json.JSONDecoder()
    position = 0
    while (start := _next_bracket(text, position)) >= 0:
        try:
            value, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError as e:
            if _CALL_START.match(text, start):
                snippet = text[start : start + 200]
                problem = f"the tool call is not valid JSON ({e.msg}): {snippet}; {_HINT}"
                return [*found, _Found(start, len(text), None, problem)]
            position = start + 1
            continue
        if _is_call_value(value):
            found.append(_Found(start, end, value if isinstance(value, list) else [value]))
            position = end
        else:  # JSON the model shows: do not look for calls inside it
            position = end
    return found


def _next_bracket(text: str, position: int) -> int:
    starts = [i for i in (text.find("{", position), text.find("[", position)) if i >= 0]
    return min(starts, default=-1)


def _is_call_value(value: Any) -> bool:
    """A call object with both keys, or a non-empty list of them."""
    values = value if isinstance(value, list) else [value]
    return bool(values) and all(
        isinstance(v, dict) and "name" in v and ("arguments" in v or "parameters" in v)
        for v in values
    )


def _take(
    text: str, source: str, found: list[_Found], tool_names: Collection[str], id_seed: str
) -> ContentCalls:
    calls: list[dict[str, Any]] = []
    errors = [f.problem for f in found if f.values is None]
    values = [v for f in found for v in f.values or []]
    for index, value in enumerate(values):
        call, problem = _call(index, value, tool_names, f"{id_seed}\0{text}")
        calls.append(call)
        if problem:
            errors.append(problem)
    if errors:
        return ContentCalls(content=text, source=source, error="; ".join(errors))
    rest, last = [], 0
    for f in found:
        rest.append(text[last : f.start])
        last = f.end
    rest.append(text[last:])
    content = re.sub(r"\n{3,}", "\n\n", "".join(rest)).strip()
    return ContentCalls(content=content, calls=calls, source=source)


def _call(
    index: int, value: Any, tool_names: Collection[str], seed: str
) -> tuple[dict[str, Any], str]:
    """One call in OpenAI form, and what is wrong with it ('' if nothing)."""
    fields = value if isinstance(value, dict) else {}
    name = fields.get("name") if isinstance(fields.get("name"), str) else ""
    arguments = fields.get("arguments", fields.get("parameters"))
    problem = ""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as e:
            problem = f"tool call {index} ({name}): arguments are not valid JSON ({e}); {_HINT}"
    arguments = {} if arguments is None else arguments
    if not name:
        problem = f"tool call {index} has no function name: {json.dumps(value)[:200]}; {_HINT}"
    elif name not in tool_names:
        offered = ", ".join(sorted(tool_names))
        problem = f"Unknown tool '{name}' (the tools are: {offered})"
    elif not problem and not isinstance(arguments, dict):
        problem = f"tool call {index} ({name}): arguments must be a JSON object; {_HINT}"
    digest = hashlib.sha256(f"{seed}\0{index}".encode()).hexdigest()[:16]
    text = json.dumps(arguments) if isinstance(arguments, dict) else str(arguments)
    function = {"name": name, "arguments": text}
    return {"id": f"call_{digest}", "type": "function", "function": function}, problem


def calls_context(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
) -> tuple[list[str], str]:
    """The offered tool names, and a hash of the conversation so far that seeds the ids of the
    calls read from the reply (the same request answered the same way gets the same ids)."""
    names = [str((t.get("function") or {}).get("name") or "") for t in tools or []]
    if not any(names):
        return [], ""
    conversation = json.dumps(messages, sort_keys=True, default=str).encode()
    return [n for n in names if n], hashlib.sha256(conversation).hexdigest()[:16]
