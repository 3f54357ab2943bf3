"""Mixtures exported in chat styles: tool calls written into the text, for axolotl/LLaMA-Factory.

The end-to-end test builds the demo mixture from the session's `trajlake demo` lake (read only:
the mixtures go to a temporary directory) with the real `trajlake mixture build`, loads the
hermes file with Hugging Face `datasets`, and compares every call with the rollout the lake
recorded; the unit tests pin each style's text and its round trip on hand-made conversations.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil

import datasets
import pytest
import yaml

from trajlake.cli import main
from trajlake.config import load_config
from trajlake.consumers.scaffold_spec import load_scaffold
from trajlake.demo import DEMO_MIXTURE
from trajlake.lake import connect
from trajlake.lake.chat_parse import difference, parse
from trajlake.lake.chat_styles import STYLES, StyleError, render

pytestmark = pytest.mark.mixture

SWE_TOOLS = load_scaffold("swe-agent").tool_schemas()


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(args))
    return rc, out.getvalue(), err.getvalue()


def hermes_call(call: dict) -> str:
    """A recorded call as the Qwen/Hermes templates write it."""
    function = call["function"]
    body = {"name": function["name"], "arguments": json.loads(function["arguments"])}
    return f"<tool_call>\n{json.dumps(body, ensure_ascii=False)}\n</tool_call>"


def test_demo_mixture_in_hermes_loads_with_datasets_and_gives_back_every_call(demo_once, tmp_path):
    spec = yaml.safe_load(DEMO_MIXTURE) | {"export": {"styles": list(STYLES)}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    base = ["--config", str(demo_once.config_file), "--set", f"lake.mixtures={tmp_path / 'm'}"]
    rc, out, err = cli(*base, "mixture", "build", str(tmp_path / "spec.yaml"))
    assert rc == 0, err
    directory = tmp_path / "m" / "demo"
    assert "data.hermes.jsonl, data.xml.jsonl, data.raw.jsonl" in out
    manifest = json.loads((directory / "manifest.json").read_text())
    for style in STYLES:
        data = (directory / f"data.{style}.jsonl").read_bytes()
        assert manifest["data_sha256"][f"data.{style}.jsonl"] == hashlib.sha256(data).hexdigest()

    hermes = str(directory / "data.hermes.jsonl")
    dataset = datasets.load_dataset("json", data_files=hermes, split="train")
    assert dataset.num_rows == manifest["samples"] == 12
    con = connect(load_config(demo_once.config_file).lake.root)
    calls = 0
    for row in dataset:
        (recorded,) = con.execute(
            "SELECT messages_json FROM trajectories WHERE rollout_id = ?", [row["sample_id"]]
        ).fetchone()
        recorded = [m for m in json.loads(recorded) if m["role"] == "assistant"]
        turns = row["messages"]
        assert {t["role"] for t in turns} == {"system", "user", "assistant"}
        assert [t["train"] for t in turns] == [t["role"] == "assistant" for t in turns]
        assert "<tools>\n" in turns[0]["content"]
        styled = [t["content"] for t in turns if t["role"] == "assistant"]
        parsed = [m for m in parse(turns, "hermes") if m["role"] == "assistant"]
        for text, back, original in zip(styled, parsed, recorded, strict=False):
            reasoning = original.get("reasoning_content")
            assert text.startswith(f"<think>\n{reasoning}\n</think>\n\n" if reasoning else "")
            assert back["reasoning_content"] == (reasoning or None)
            for call in original.get("tool_calls") or []:
                assert hermes_call(call) in text
                calls += 1
            assert [
                (c["function"]["name"], json.loads(c["function"]["arguments"]))
                for c in back["tool_calls"] or []
            ] == [
                (c["function"]["name"], json.loads(c["function"]["arguments"]))
                for c in original.get("tool_calls") or []
            ]
    assert calls >= 12

    styles = [flag for style in STYLES for flag in ("--style", style)]
    rc, out, err = cli(*base, "mixture", "check", "demo", *styles)
    assert rc == 0, out + err
    assert "12 rows of data.hermes.jsonl parse back" in out

    rc, _, err = cli(*base, "mixture", "build", str(tmp_path / "spec.yaml"), "--force")
    again = json.loads((directory / "manifest.json").read_text())
    assert rc == 0 and again["data_sha256"] == manifest["data_sha256"]  # same rows, same bytes

    edited = tmp_path / "edited"
    shutil.copytree(directory, edited)
    lines = (edited / "data.hermes.jsonl").read_text().splitlines()
    command = '\\"arguments\\": {\\"command\\": \\"'  # inside the JSON string: escaped
    assert command in lines[4]
    lines[4] = lines[4].replace(command, command + "x", 1)
    (edited / "data.hermes.jsonl").write_text("\n".join(lines) + "\n")
    rc, out, err = cli(*base, "mixture", "check", str(edited), "--style", "hermes")
    assert rc == 1
    assert "data.hermes.jsonl line 5: sample " in out and "message 3: expected" in out
    assert "1 of 12 rows of data.hermes.jsonl do not parse back" in err


def conversation() -> list[dict]:
    """Reasoning, a multi-line string argument, a non-string argument, two calls in a turn
    answered by two results, an empty result, a format error after a turn without calls."""

    def call(i: str, name: str, arguments: dict) -> dict:
        function = {"name": name, "arguments": json.dumps(arguments)}
        return {"id": i, "type": "function", "function": function}

    edit = {"command": "str_replace", "path": "a.py", "old_str": "x = 1\n", "new_str": "x = 2"}
    return [
        {"role": "system", "content": "You edit code."},
        {"role": "user", "content": "Make x 2."},
        {"role": "assistant", "content": "Look first.", "reasoning_content": "Where is x?",
         "tool_calls": [call("a", "bash", {"command": "grep -n x a.py"}),
                        call("b", "str_replace_editor",
                             {"command": "view", "path": "a.py", "view_range": [1, -1]})]},
        {"role": "tool", "tool_call_id": "a", "content": "OBSERVATION:\n1:x = 1"},
        {"role": "tool", "tool_call_id": "b", "content": ""},
        {"role": "assistant", "content": "Done?", "reasoning_content": None, "tool_calls": None},
        {"role": "user", "content": "Reply with exactly one tool call."},
        {"role": "assistant", "content": "", "reasoning_content": "",
         "tool_calls": [call("c", "str_replace_editor", edit)]},
    ]  # fmt: skip


@pytest.mark.unit
@pytest.mark.parametrize("style", STYLES)
def test_every_style_reads_back_to_the_messages(style):
    turns = render(conversation(), SWE_TOOLS, style)
    assert [t["role"] for t in turns][:3] == ["system", "user", "assistant"]
    assert difference(conversation(), SWE_TOOLS, turns, style) is None
    back = parse(turns, style, SWE_TOOLS)
    assert back[2]["tool_calls"][1]["function"]["name"] == "str_replace_editor"
    assert json.loads(back[2]["tool_calls"][1]["function"]["arguments"])["view_range"] == [1, -1]
    assert [m.get("tool_call_id") for m in back[3:5]] == ["call_0", "call_1"]
    assert back[6] == {"role": "user", "content": "Reply with exactly one tool call."}

    changed = conversation()
    changed[7]["tool_calls"][0]["function"]["arguments"] = json.dumps({"command": "view"})
    assert "message 8: expected" in difference(changed, SWE_TOOLS, turns, style)


@pytest.mark.unit
def test_each_style_writes_the_convention_it_names():
    hermes = render(conversation(), SWE_TOOLS, "hermes")
    assert hermes[0]["content"].startswith("You edit code.\n\n# Tools\n\nYou may call one or more")
    assert f"<tools>\n{json.dumps(SWE_TOOLS[0])}\n" in hermes[0]["content"]
    assert hermes[2]["content"] == (
        "<think>\nWhere is x?\n</think>\n\nLook first.\n<tool_call>\n"
        '{"name": "bash", "arguments": {"command": "grep -n x a.py"}}\n</tool_call>\n<tool_call>\n'
        '{"name": "str_replace_editor", "arguments": {"command": "view", "path": "a.py", '
        '"view_range": [1, -1]}}\n</tool_call>'
    )
    assert hermes[3] == {  # both results in one user turn, as Qwen's template writes them
        "role": "user",
        "content": "<tool_response>\nOBSERVATION:\n1:x = 1\n</tool_response>\n"
        "<tool_response>\n\n</tool_response>",
        "train": False,
    }
    xml = render(conversation(), SWE_TOOLS, "xml")
    assert "---- BEGIN FUNCTION #2: str_replace_editor ----" in xml[0]["content"]
    assert xml[-1]["content"] == (
        "<function=str_replace_editor>\n<parameter=command>\nstr_replace\n</parameter>\n"
        "<parameter=path>\na.py\n</parameter>\n<parameter=old_str>\nx = 1\n\n</parameter>\n"
        "<parameter=new_str>\nx = 2\n</parameter>\n</function>"
    )
    assert [t["content"] for t in xml[3:5]] == ["OBSERVATION:\n1:x = 1", ""]  # as they are
    raw = render(conversation(), SWE_TOOLS, "raw")
    assert raw[2]["content"].endswith(
        'Look first.\n\n{"name": "bash", "arguments": {"command": "grep -n x a.py"}}\n{"name": '
        '"str_replace_editor", "arguments": {"command": "view", "path": "a.py", '
        '"view_range": [1, -1]}}'
    )


@pytest.mark.unit
def test_xml_cannot_write_arguments_that_are_not_an_object():
    messages = conversation()
    messages[7]["tool_calls"][0]["function"]["arguments"] = "not json"
    with pytest.raises(StyleError, match="export hermes or raw"):
        render(messages, SWE_TOOLS, "xml")
    turns = render(messages, SWE_TOOLS, "hermes")  # a string in the JSON: read back as it was
    assert difference(messages, SWE_TOOLS, turns, "hermes") is None
