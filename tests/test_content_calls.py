"""Tool calls written in the content (hermes tags, fenced or bare JSON): the pure parser, the
`teacher.tool_call_parse` modes, the teacher id, and the real client over HTTP."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from trajlake.config import TeacherConfig
from trajlake.teacher import Teacher, teacher_id
from trajlake.teacher.content_calls import parse_content_calls
from trajlake.teacher.double import serve
from trajlake.teacher.reply import parse_message

TOOLS = {"bash", "submit"}
LS = {"name": "bash", "arguments": {"command": "ls"}}
CAT = {"name": "bash", "arguments": {"command": "cat a.py"}}


def tag(call: dict[str, Any]) -> str:
    return f"<tool_call>\n{json.dumps(call)}\n</tool_call>"


def called(calls: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(name, arguments) of OpenAI-style calls, checking their shape on the way."""
    for call in calls:
        assert set(call) == {"id", "type", "function"} and call["type"] == "function"
        assert call["id"].startswith("call_") and set(call["function"]) == {"name", "arguments"}
    return [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls]


@pytest.mark.unit
def test_one_hermes_tag_is_a_call_and_the_text_around_it_stays() -> None:
    found = parse_content_calls(f"I will look first.\n{tag(LS)}", TOOLS, "seed")
    assert called(found.calls) == [("bash", {"command": "ls"})]
    assert (found.content, found.source, found.error) == ("I will look first.", "hermes", "")
    again = parse_content_calls(f"I will look first.\n{tag(LS)}", TOOLS, "seed")
    other = parse_content_calls(f"I will look first.\n{tag(LS)}", TOOLS, "another turn")
    assert again.calls == found.calls and other.calls[0]["id"] != found.calls[0]["id"]


@pytest.mark.unit
def test_several_hermes_tags_are_several_calls_in_order() -> None:
    text = f"{tag(LS)}\n{tag(CAT)}\n<tool_call>\n" + '{"name": "submit"}'  # cut off: no close
    found = parse_content_calls(text, TOOLS, "seed")
    assert called(found.calls) == [
        ("bash", {"command": "ls"}),
        ("bash", {"command": "cat a.py"}),
        ("submit", {}),
    ]
    assert found.content == "" and found.source == "hermes" and not found.error
    assert len({c["id"] for c in found.calls}) == 3


@pytest.mark.unit
@pytest.mark.parametrize("language", ["json", "", "JSON"])
def test_fenced_json_is_a_call_with_arguments_as_an_object_or_a_string(language: str) -> None:
    as_string = {"name": "bash", "arguments": json.dumps({"command": "cat a.py"})}
    text = f"Listing.\n```{language}\n{json.dumps(LS)}\n```\nThen:\n```{language}\n"
    text += f"{json.dumps(as_string)}\n```\n"
    found = parse_content_calls(text, TOOLS)
    assert called(found.calls) == [("bash", {"command": "ls"}), ("bash", {"command": "cat a.py"})]
    assert (found.content, found.source, found.error) == ("Listing.\n\nThen:", "fenced", "")


@pytest.mark.unit
def test_bare_json_objects_and_lists_are_calls() -> None:
    found = parse_content_calls(json.dumps(LS), TOOLS)
    assert called(found.calls) == [("bash", {"command": "ls"})]
    assert (found.content, found.source) == ("", "bare")
    found = parse_content_calls(f"Both: {json.dumps([LS, CAT])}", TOOLS)
    assert [a["command"] for _, a in called(found.calls)] == ["ls", "cat a.py"]
    assert found.content == "Both:"
    parameters = {"name": "bash", "parameters": {"command": "pwd"}}  # llama's key
    assert called(parse_content_calls(json.dumps(parameters), TOOLS).calls) == [
        ("bash", {"command": "pwd"})
    ]


@pytest.mark.unit
def test_json_with_trailing_text_leaves_the_text() -> None:
    text = f'Run it: {json.dumps(LS)} and then I read {{"path": "a.py"}} to check.'
    found = parse_content_calls(text, TOOLS)
    assert called(found.calls) == [("bash", {"command": "ls"})]
    assert found.content == 'Run it:  and then I read {"path": "a.py"} to check.'


@pytest.mark.unit
def test_json_that_is_not_a_call_stays_text() -> None:
    for text in (
        'The package: {"name": "trajlake", "version": "1.0"}',
        '```json\n{"name": "trajlake", "dependencies": []}\n```',
        "```python\nprint({'name': 1})\n```",
        "set {x} and [1, 2",
    ):
        found = parse_content_calls(text, TOOLS)
        assert (found.content, found.calls, found.source, found.error) == (text, [], "", "")


@pytest.mark.unit
def test_an_unknown_tool_is_a_format_error_and_the_text_is_kept() -> None:
    text = f"Try: {tag({'name': 'python', 'arguments': {'code': '1'}})}"
    found = parse_content_calls(text, TOOLS)
    assert (found.content, found.calls, found.source) == (text, [], "hermes")
    assert found.error == "Unknown tool 'python' (the tools are: bash, submit)"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "source", "error"),
    [
        (
            '<tool_call>{"name": "bash", "arguments": {"command": "ls"}</tool_call>',
            "hermes",
            "the <tool_call> tag does not hold valid JSON",
        ),
        (
            '```json\n{"name": "bash", "arguments": {"command": "ls"\n```',
            "fenced",
            "the fenced tool call is not valid JSON",
        ),
        (
            'Now {"name": "bash", "arguments": {"command": "ls"} ok',
            "bare",
            "the tool call is not valid JSON",
        ),
        (
            '{"name": "bash", "arguments": "{\\"command\\": "}',
            "bare",
            "tool call 0 (bash): arguments are not valid JSON",
        ),
        (
            '{"name": "bash", "arguments": ["ls"]}',
            "bare",
            "tool call 0 (bash): arguments must be a JSON object",
        ),
        ("<tool_call>[1]</tool_call>", "hermes", "tool call 0 has no function name"),
    ],
)
def test_invalid_json_is_a_format_error_that_says_how_to_write_a_call(
    text: str, source: str, error: str
) -> None:
    found = parse_content_calls(text, TOOLS)
    assert (found.content, found.calls, found.source) == (text, [], source)
    assert found.error.startswith(error)
    assert found.error.endswith('one JSON object {"name": "<tool>", "arguments": {…}}')


def raw(content: str, tool_calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    return message


NATIVE_CALL = {"id": "n1", "type": "function", "function": {"name": "bash", "arguments": "{}"}}


@pytest.mark.unit
def test_native_mode_is_unchanged_content_stays_text() -> None:
    text = f"Look.\n{tag(LS)}"
    assert (
        parse_message(raw(text), "native", TOOLS)
        == parse_message(raw(text))
        == (
            {"role": "assistant", "content": text, "reasoning_content": "", "tool_calls": []},
            "",
        )
    )
    message, error = parse_message(raw("", [NATIVE_CALL]), "native", TOOLS)
    assert message["tool_calls"] == [NATIVE_CALL] and message["tool_call_source"] == "native"
    assert not error


@pytest.mark.unit
def test_auto_reads_the_content_only_without_native_calls_and_with_tools() -> None:
    text = f"Look.\n{tag(LS)}"
    message, error = parse_message(raw(text), "auto", TOOLS, "seed")
    assert (message["content"], message["tool_call_source"], error) == ("Look.", "hermes", "")
    assert called(message["tool_calls"]) == [("bash", {"command": "ls"})]
    message, _ = parse_message(raw(text, [NATIVE_CALL]), "auto", TOOLS)
    assert (message["content"], message["tool_calls"]) == (text, [NATIVE_CALL])
    assert message["tool_call_source"] == "native"
    for mode in ("auto", "content"):  # no tools offered: nothing can be called
        message, error = parse_message(raw(text), mode, ())
        assert (message["content"], message["tool_calls"], error) == (text, [], "")
        assert "tool_call_source" not in message


@pytest.mark.unit
def test_content_mode_adds_the_contents_calls_after_the_native_ones() -> None:
    message, error = parse_message(raw(f"And: {tag(LS)}", [NATIVE_CALL]), "content", TOOLS)
    assert message["tool_calls"][0] == NATIVE_CALL and not error
    assert called(message["tool_calls"][1:]) == [("bash", {"command": "ls"})]
    assert (message["content"], message["tool_call_source"]) == ("And:", "native+hermes")


@pytest.mark.unit
def test_reasoning_is_split_off_first_and_calls_read_from_what_remains() -> None:
    thought = f"maybe {tag(CAT)}"
    message, error = parse_message(raw(f"<think>{thought}</think>\nGo.\n{tag(LS)}"), "auto", TOOLS)
    assert message["reasoning_content"] == thought and message["content"] == "Go."
    assert called(message["tool_calls"]) == [("bash", {"command": "ls"})] and not error


@pytest.mark.unit
def test_a_bad_content_call_is_a_format_error_in_the_reply() -> None:
    text = tag({"name": "python", "arguments": {}})
    message, error = parse_message(raw(text), "auto", TOOLS)
    assert (message["content"], message["tool_calls"], message["tool_call_source"]) == (
        text,
        [],
        "hermes",
    )
    assert error.startswith("Unknown tool 'python'")


@pytest.mark.unit
def test_the_setting_is_in_the_teacher_id_except_at_the_default() -> None:
    base = TeacherConfig(model="Qwen/Qwen2.5-Coder-1.5B-Instruct")
    before = {  # the identity as it was before the setting existed
        "model": base.model,
        "endpoint_kind": base.endpoint_kind,
        "temperature": base.temperature,
        "top_p": base.top_p,
        "max_tokens": base.max_tokens,
        "prompt_version": base.prompt_version,
        "scaffold": "bash-v1",
    }
    digest = hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:12]
    assert base.tool_call_parse == "auto"
    assert teacher_id(base, "bash-v1") == f"qwen2-5-coder-1-5b-instruct-{digest}"
    ids = {
        teacher_id(base.model_copy(update={"tool_call_parse": mode}), "bash-v1")
        for mode in ("auto", "native", "content")
    }
    assert len(ids) == 3


CONTENT_SCRIPT = {
    "sessions": [
        {
            "name": "hermes",
            "match": "^list",
            "turns": [{"reasoning": "Look first.", "content": f"Listing.\n{tag(LS)}"}],
        },
        {
            "name": "fenced",
            "match": "^fenced",
            "turns": [{"content": f"```json\n{json.dumps(CAT)}\n```"}],
        },
        {
            "name": "unknown",
            "match": "^unknown",
            "turns": [{"content": json.dumps({"name": "rm", "arguments": {}})}],
        },
    ]
}
BASH_TOOL = [{"type": "function", "function": {"name": "bash", "parameters": {"type": "object"}}}]


@pytest.mark.teacher
def test_the_client_reads_calls_from_the_content_over_http(tmp_path: Path) -> None:
    script = tmp_path / "script.yaml"
    script.write_text(yaml.safe_dump(CONTENT_SCRIPT))
    with serve(script) as double:
        configs = {
            mode: TeacherConfig(base_url=double.url, timeout_s=5, tool_call_parse=mode)
            for mode in ("auto", "native")
        }
        with Teacher(configs["auto"]) as auto, Teacher(configs["native"]) as native:
            ask = [{"role": "user", "content": "list the files"}]
            reply = auto.chat(ask, tools=BASH_TOOL)
            assert called(reply.tool_calls) == [("bash", {"command": "ls"})]
            assert (reply.content, reply.reasoning, reply.tool_call_source) == (
                "Listing.",
                "Look first.",
                "hermes",
            )
            assert not reply.format_error and reply.finish_reason == "stop"
            assert auto.chat(ask, tools=BASH_TOOL).tool_calls == reply.tool_calls  # same ids
            fenced = auto.chat([{"role": "user", "content": "fenced"}], tools=BASH_TOOL)
            assert called(fenced.tool_calls) == [("bash", {"command": "cat a.py"})]
            assert fenced.tool_call_source == "fenced" and fenced.content == ""
            unknown = auto.chat([{"role": "user", "content": "unknown"}], tools=BASH_TOOL)
            assert unknown.format_error == "Unknown tool 'rm' (the tools are: bash)"
            assert unknown.tool_calls == [] and unknown.tool_call_source == "bare"
            as_text = native.chat(ask, tools=BASH_TOOL)
            assert (as_text.content, as_text.tool_calls, as_text.tool_call_source) == (
                f"Listing.\n{tag(LS)}",
                [],
                "",
            )
            no_tools = auto.chat(ask)  # the PR writer and self-evaluation offer none
            assert no_tools.content == f"Listing.\n{tag(LS)}" and not no_tools.tool_calls
    assert not double.errors
