"""Scaffolds as data: mini-bash keeps its id, users write their own, `trajlake scaffold`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from trajlake.cli import main
from trajlake.config import load_config
from trajlake.consumers import scaffold
from trajlake.consumers.rollout import make_rollout1
from trajlake.consumers.scaffold_spec import SCAFFOLD_DIR, Scaffold, load_scaffold
from trajlake.demo import demo_config
from trajlake.errors import ConfigError

pytestmark = [pytest.mark.scaffold, pytest.mark.unit]

#: The id every rollout recorded before scaffolds were data; the demo's mixtures check against it.
MINI_BASH_ID = "mini-swe-agent-bash-dc4f38bfbe"
EXAMPLE = (SCAFFOLD_DIR / "mini-bash.yaml").read_text()


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_mini_bash_keeps_its_historical_id(tmp_path: Path) -> None:
    assert load_scaffold("mini-bash").id() == MINI_BASH_ID
    assert scaffold.scaffold_id() == MINI_BASH_ID
    demo = demo_config(tmp_path, "http://127.0.0.1:1/v1", [])
    assert demo.agent.scaffold == "mini-bash"
    assert load_scaffold(demo.agent.scaffold).id() == MINI_BASH_ID


def test_mini_bash_renders_what_the_agent_always_sent() -> None:
    mini = scaffold.MINI_BASH
    assert scaffold.render_observation(mini, "a" * 30, 1, 10) == (
        "<returncode>1</returncode>\n<output>\naaaaa\n[… 20 characters cut …]\naaaaa</output>"
    )
    empty = scaffold.render_observation(mini, "", 0, 10)
    assert empty == "<returncode>0</returncode>\n<output>\n</output>"
    assert scaffold.render_format_error(mini, "no JSON") == (
        "Your last reply had a malformed tool call (no JSON). Call the bash tool again."
    )
    assert scaffold.render_system(mini).endswith(
        "run `echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT` on its own."
    )
    assert mini.tool_schemas()[0]["function"]["name"] == "bash"


def test_the_other_observation_fields_render() -> None:
    spec = scaffold.MINI_BASH.observation.model_copy(
        update={"empty_output": "(no output)", "error": "ERROR: {output}", "max_chars": 4}
    )
    custom = scaffold.MINI_BASH.model_copy(update={"observation": spec})
    assert scaffold.render_observation(custom, "", 0) == "(no output)"  # the whole message
    cut = scaffold.render_observation(custom, "abcdefgh", error=True)
    assert cut.endswith("<output>\nERROR: ab\n[… 4 characters cut …]\ngh</output>")


def test_example_and_show_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, example, _ = run_cli(["scaffold", "example"], capsys)
    assert rc == 0 and example == EXAMPLE
    (tmp_path / "mine.yaml").write_text(example)
    rc, shown, _ = run_cli(["scaffold", "show", str(tmp_path / "mine.yaml")], capsys)
    assert rc == 0
    printed = re.search(r"^# scaffold id: (\S+)$", shown, re.M)
    assert printed and printed.group(1) == load_scaffold(tmp_path / "mine.yaml").id()
    assert printed.group(1) == MINI_BASH_ID
    (tmp_path / "shown.yaml").write_text(shown)  # what show prints loads back, same id
    assert load_scaffold(tmp_path / "shown.yaml") == load_scaffold("mini-bash")
    rc, default, _ = run_cli(["scaffold", "show"], capsys)  # agent.scaffold's
    assert rc == 0 and default == run_cli(["scaffold", "show", "mini-bash"], capsys)[1]


def test_the_example_documents_every_field() -> None:
    lines = EXAMPLE.splitlines()
    sections = ("", "observation.", "episode_end.")
    fields = [f"{s}{name}" for s, model in zip(sections, _models(), strict=True) for name in model]
    for field in fields:
        key = field.split(".")[-1]
        indent = "  " if "." in field else ""
        at = next(i for i, line in enumerate(lines) if line.startswith(f"{indent}{key}:"))
        assert lines[at - 1].lstrip().startswith("#"), f"{field} has no comment above it"
    assert "implementation:" in EXAMPLE and "# function: the OpenAI function schema" in EXAMPLE


def _models() -> list[list[str]]:
    spec = Scaffold.model_fields
    return [
        list(spec),
        list(spec["observation"].annotation.model_fields),
        list(spec["episode_end"].annotation.model_fields),
    ]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("Think before", "Think beforE"),  # the system prompt
        ("check it, then", "check it; then"),  # the task template
        ("The command to run.", "The command to run!"),  # a tool schema
        ("<output>\n    {output}", "<output>\n    {output} "),  # the observation template
        ("Call the bash tool again.", "Call the bash tool again!"),  # the format-error reply
        ('empty_output: ""', 'empty_output: "-"'),
        ('error: "{output}"', 'error: "!{output}"'),
        ("killed after", "killed afteR"),
        ("max_chars: 10000", "max_chars: 10001"),
        ("characters cut", "characters Cut"),
        ("marker: COMPLETE", "marker: XCOMPLETE"),
        ('review_on_submit: ""', 'review_on_submit: "!"'),
        ("name: mini-swe-agent-bash", "name: mini-swe-agent-basH"),
    ],
)
def test_one_changed_character_changes_the_id(tmp_path: Path, old: str, new: str) -> None:
    assert EXAMPLE.count(old) == 1
    path = tmp_path / "changed.yaml"
    path.write_text(EXAMPLE.replace(old, new))
    assert load_scaffold(path).id() != MINI_BASH_ID


def test_changed_scaffolds_get_distinct_ids(tmp_path: Path) -> None:
    ids = set()
    for i, (old, new) in enumerate([("Think", "think"), ("10000", "9999"), ("seconds.", "s.")]):
        (tmp_path / f"{i}.yaml").write_text(EXAMPLE.replace(old, new))
        ids.add(load_scaffold(tmp_path / f"{i}.yaml").id())
    assert len(ids) == 3 and MINI_BASH_ID not in ids


@pytest.mark.parametrize(
    ("old", "new", "field", "problem"),
    [
        ("<output>\n    {output}", "<output>\n    {stdout}", "observation.template", "stdout"),
        ("implementation: bash", "implementation: vim", "tools.0", "not a built-in tool"),
        ("max_chars: 10000", "max_chars: lots", "observation.max_chars", "integer"),
        ("marker: COMPLETE", "markr: COMPLETE", "episode_end.markr", "Extra inputs"),
        ('submit_tool: ""', "submit_tool: bash", "(top level)", "implementation submit"),
        ("parameters:\n", "params:\n", "tools.0.function", "parameters"),
    ],
)
def test_a_bad_file_names_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, field: str, problem: str
) -> None:
    assert EXAMPLE.count(old) == 1
    path = tmp_path / "bad.yaml"
    path.write_text(EXAMPLE.replace(old, new))
    with pytest.raises(ConfigError) as raised:
        load_scaffold(path)
    line = next(x for x in str(raised.value).splitlines() if x.strip().startswith(f"{field}:"))
    assert problem in line
    rc, _, err = run_cli(["scaffold", "show", str(path)], capsys)
    assert rc == 2 and f"invalid scaffold {path}" in err and field in err


def test_an_unknown_name_says_what_exists(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run_cli(["scaffold", "show", "swe-agnet"], capsys)
    assert rc == 2 and "mini-bash" in err and "trajlake scaffold example" in err


def test_the_rollout_stage_refuses_a_bad_scaffold_file_before_it_runs(tmp_path: Path) -> None:
    assert load_config(None, []).agent.scaffold == "mini-bash"
    path = tmp_path / "mine.yaml"
    path.write_text(EXAMPLE.replace("implementation: bash", "implementation: python"))
    config = load_config(None, [f"agent.scaffold={path}", f"lake.root={tmp_path / 'lake'}"])
    with pytest.raises(ConfigError, match="tools.0: .*implementation 'python' is not a built-in"):
        make_rollout1(config)


def _call(name: str, arguments: str, call_id: str = "c1") -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def test_swe_agent_takes_one_call_per_reply_and_names_what_is_wrong() -> None:
    from minisweagent.exceptions import FormatError

    from trajlake.consumers.agent_actions import parse_actions

    swe = load_scaffold("swe-agent")
    view = _call("str_replace_editor", '{"command": "view", "path": "a.py"}')
    [action] = parse_actions(swe, [view])
    assert action["runs_with"] == "str_replace_editor" and action["arguments"]["path"] == "a.py"
    cases = {
        "2 tool calls": [view, _call("submit", "{}", "c2")],
        "Unknown tool 'python'": [_call("python", "{}")],
        "Missing 'path' argument in str_replace_editor": [
            _call("str_replace_editor", '{"command": "view"}')
        ],
        "Error parsing tool call arguments": [_call("bash", "{not json")],
    }
    for problem, calls in cases.items():
        with pytest.raises(FormatError) as raised:
            parse_actions(swe, calls)
        reply = raised.value.messages[0]["content"]
        assert problem in reply and reply.endswith("exactly one tool call."), reply
    assert len(parse_actions(scaffold.MINI_BASH, [_call("bash", '{"command": "ls"}')] * 2)) == 2
