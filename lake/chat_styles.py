"""A conversation with tool calls written into its text, the shape axolotl and LLaMA-Factory read.

`render` turns OpenAI-style messages (tool_calls, tool results, reasoning_content) into turns
{role, content, train}: system, user and assistant only, `train` true for assistant turns (but
those whose message says `train: false`, as DAgger's student turns do). The
tool schemas go into the system turn, calls into the assistant text, results into user turns;
`<think>\\n{reasoning_content}\\n</think>\\n\\n` comes first in an assistant turn that has
reasoning. chat_parse reads such turns back.

Styles:

- hermes (the Qwen2.5/Qwen3 and Hermes chat templates): the system turn ends with their
  "# Tools" block, one JSON schema per line inside `<tools>`; each call is
  `<tool_call>\\n{"name": …, "arguments": {…}}\\n</tool_call>` on lines of its own after the
  content; results come back as `<tool_response>\\n…\\n</tool_response>`, consecutive results
  in one user turn (as those templates write them).
- xml (SWE-agent's xml_function_calling, as SERA shipped its xml data): the system turn ends
  with the functions described one by one; each call is `<function=NAME>` with one
  `<parameter=KEY>\\nVALUE\\n</parameter>` per argument (strings as they are, other values as
  JSON), after a blank line; each result is a user turn of its own, as it is (the scaffold's
  observation format already frames it).
- raw: each call is one line of plain JSON, {"name": …, "arguments": {…}}, after a blank line;
  the system turn ends with a "# Tools" block of JSON schemas; results as in xml.

In xml and raw a result is told from other user turns by position: the user turns right after
an assistant turn with calls answer them in order (the rollout agent sends a format error only
after a turn whose calls it dropped). Arguments that are not a JSON object are written as a
string in hermes and raw; xml cannot write them (StyleError).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from trajlake.errors import TrajlakeError

Style = Literal["hermes", "xml", "raw"]
STYLES: tuple[str, ...] = ("hermes", "xml", "raw")

#: What starts the tools block of the system turn, and the whole block ({tools}: the tools).
TOOLS_HEADER = {
    "hermes": "\n\n# Tools\n\n",
    "xml": "\n\nYou have access to the following functions:\n\n",
    "raw": "\n\n# Tools\n\n",
}
TOOLS_BLOCK = {
    "hermes": TOOLS_HEADER["hermes"]
    + "You may call one or more functions to assist with the user query.\n\nYou are provided "
    "with function signatures within <tools></tools> XML tags:\n<tools>{tools}\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments within "
    '<tool_call></tool_call> XML tags:\n<tool_call>\n{{"name": <function-name>, "arguments": '
    "<args-json-object>}}\n</tool_call>",
    "xml": TOOLS_HEADER["xml"]
    + "{tools}\n\nTo call a function, end your reply with:\n<function=FUNCTION_NAME>\n"
    "<parameter=PARAMETER_NAME>\nVALUE\n</parameter>\n</function>\nwith one parameter block "
    "per argument.",
    "raw": TOOLS_HEADER["raw"]
    + "To call a function, end your reply with a line holding the JSON object "
    '{{"name": <function-name>, "arguments": <args-json-object>}}, one line per call. The '
    "functions, one JSON schema per line:{tools}",
}
#: What separates the content from the calls, and what each call's text starts with.
JOINER = {"hermes": "\n", "xml": "\n\n", "raw": "\n\n"}
OPENER = {"hermes": "<tool_call>\n", "xml": "<function=", "raw": "{"}
THINK_OPEN, THINK_CLOSE = "<think>\n", "\n</think>\n\n"
RESPONSE_OPEN, RESPONSE_CLOSE = "<tool_response>\n", "\n</tool_response>"


class StyleError(TrajlakeError):
    """A conversation cannot be written in, or read from, a style."""


def render(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]], style: str
) -> list[dict[str, Any]]:
    """The conversation as {role, content, train} turns in `style` (see the module docstring)."""
    check_style(style)
    if not messages or messages[0]["role"] != "system":
        raise StyleError("the conversation must start with a system message: the tools go there")
    types = parameter_types(tools)
    turns = [_turn("system", system_text(messages[0].get("content") or "", tools, style))]
    previous = "system"
    for message in messages[1:]:
        role, content = message["role"], message.get("content") or ""
        if role == "assistant":  # trained unless the sample says not (`train: false`)
            turn = _turn(role, _assistant_text(message, style, types))
            turns.append(turn | {"train": message.get("train") is not False})
        elif role == "tool" and style == "hermes":
            wrapped = f"{RESPONSE_OPEN}{content}{RESPONSE_CLOSE}"
            if previous == "tool":
                turns[-1]["content"] += "\n" + wrapped
            else:
                turns.append(_turn("user", wrapped))
        else:
            turns.append(_turn("user" if role == "tool" else role, content))
        previous = role
    return turns


def system_text(system: str, tools: list[dict[str, Any]], style: str) -> str:
    """The system turn: the system prompt, then the tools as `style` describes them."""
    if style == "xml":
        listed = "\n\n".join(_describe(i, tool) for i, tool in enumerate(tools, start=1))
    else:
        listed = "".join("\n" + json.dumps(tool, ensure_ascii=False) for tool in tools)
    return system + TOOLS_BLOCK[style].format(tools=listed)


def check_style(style: str) -> None:
    """StyleError unless `style` is one of STYLES."""
    if style not in STYLES:
        raise StyleError(f"unknown style {style!r}: use one of {', '.join(STYLES)}")


def parameter_types(tools: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """(function, parameter) -> the type its JSON schema gives ("" when none)."""
    return {
        (tool["function"]["name"], name): str(schema.get("type", ""))
        for tool in tools
        for name, schema in tool["function"].get("parameters", {}).get("properties", {}).items()
    }


def arguments_value(text: str) -> Any:
    """A call's arguments as a JSON object, or the text itself when it is not one."""
    value = json.loads(text) if is_json(text) else None
    return value if isinstance(value, dict) else text


def is_json(text: str) -> bool:
    try:
        json.loads(text)
    except (TypeError, ValueError):
        return False
    return True


def xml_value(value: Any, kind: str | None) -> str:
    """A parameter value in the xml style: a string as it is where reading it back gives the
    string (a string parameter, or text that is not JSON), anything else as JSON."""
    if isinstance(value, str) and (kind == "string" or not is_json(value)):
        return value
    return json.dumps(value, ensure_ascii=False)


def _turn(role: str, content: str) -> dict[str, Any]:
    return {"role": role, "content": content, "train": role == "assistant"}


def _assistant_text(message: dict[str, Any], style: str, types: dict) -> str:
    reasoning = message.get("reasoning_content")
    think = f"{THINK_OPEN}{reasoning}{THINK_CLOSE}" if reasoning else ""
    calls = [_call_text(c["function"], style, types) for c in message.get("tool_calls") or []]
    parts = [message.get("content") or "", "\n".join(calls)]
    return think + JOINER[style].join(part for part in parts if part)


def _call_text(function: dict[str, Any], style: str, types: dict) -> str:
    name, arguments = function["name"], arguments_value(function["arguments"])
    if style != "xml":
        call = json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)
        return f"<tool_call>\n{call}\n</tool_call>" if style == "hermes" else call
    if not isinstance(arguments, dict):
        raise StyleError(
            f"{name} arguments are not a JSON object ({arguments!r:.80}): the xml style writes "
            "them one by one; export hermes or raw"
        )
    parameters = "".join(
        f"<parameter={key}>\n{xml_value(value, types.get((name, key)))}\n</parameter>\n"
        for key, value in arguments.items()
    )
    return f"<function={name}>\n{parameters}</function>"


def _describe(number: int, tool: dict[str, Any]) -> str:
    """One function as the xml system turn lists it."""
    function = tool["function"]
    parameters = function.get("parameters", {})
    properties = parameters.get("properties", {})
    required = set(parameters.get("required", []))
    lines = [
        f"---- BEGIN FUNCTION #{number}: {function['name']} ----",
        f"Description: {function.get('description', '')}",
        "",
        "Parameters:" if properties else "No parameters are required for this function.",
    ]
    for i, (name, schema) in enumerate(properties.items(), start=1):
        need = "required" if name in required else "optional"
        kind = schema.get("type", "any")
        lines.append(f"({i}) {name} ({kind}, {need}): {schema.get('description', '')}")
        if "enum" in schema:
            lines.append("Allowed values: [" + ", ".join(f"`{v}`" for v in schema["enum"]) + "]")
    lines.append(f"---- END FUNCTION #{number} ----")
    return "\n".join(lines)
