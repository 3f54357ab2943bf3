"""Text-action scaffolds: actions as fenced blocks in the reply, not tool calls.

mini-swe-agent 2.4.6's text configurations (built-ins mini-textbased and swebench-backticks)
through the whole demo pipeline with the scripted double, the wording of their format errors,
and what changing one character of such a scaffold does to `mixture check`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from minisweagent.exceptions import FormatError
from test_scaffold_pipeline import cli, load_root, run_demo

from trajlake.consumers.agent_actions import parse_text_actions
from trajlake.consumers.dagger_policy import agreement
from trajlake.consumers.scaffold import render_observation, render_task
from trajlake.consumers.scaffold_check import check_sample
from trajlake.consumers.scaffold_spec import SCAFFOLD_DIR, load_scaffold
from trajlake.lake import Lake
from trajlake.teacher.reply import TeacherReply

pytestmark = [pytest.mark.scaffold]

TEXT_SCAFFOLDS = ["mini-textbased", "swebench-backticks"]
BLOCK = "THOUGHT: look first.\n\n```mswea_bash_command\nls -la\n```"


@pytest.mark.parametrize("name", TEXT_SCAFFOLDS)
def test_a_reply_with_one_block_is_one_bash_action(name: str) -> None:
    [action] = parse_text_actions(load_scaffold(name), BLOCK)
    assert action == {
        "tool": "bash", "runs_with": "bash", "arguments": {"command": "ls -la"}, "tool_call_id": ""
    }  # fmt: skip


@pytest.mark.parametrize("name", TEXT_SCAFFOLDS)
@pytest.mark.parametrize(
    ("reply", "found"),
    [
        (BLOCK + "\n\nThen:\n\n```mswea_bash_command\ncat a.py\n```", 2),
        ("I will run ls.\n\n```bash\nls -la\n```", 0),  # another tag is no action
        ("Just thinking.", 0),
    ],
)
def test_two_blocks_or_none_are_format_errors_worded_as_the_scaffold_says(
    name: str, reply: str, found: int
) -> None:
    scaffold = load_scaffold(name)
    with pytest.raises(FormatError) as raised:
        parse_text_actions(scaffold, reply)
    [message] = raised.value.messages
    error = f"Expected exactly 1 action, found {found}."  # mini-swe-agent 2.4.6's words
    assert message["role"] == "user"
    assert message["content"] == scaffold.format_error.format(error=error, found=found)
    assert f"<error>\n{error}\n</error>" in message["content"]
    assert f"EXACTLY ONE action in triple backticks, found {found} actions." in message["content"]


def test_the_built_ins_render_mini_swe_agent_s_own_templates() -> None:
    """The prompts are mini-swe-agent 2.4.6's Jinja templates rendered (checked against the
    installed package where it is 2.4.6): the task, the machine line, the observation."""
    jinja2 = pytest.importorskip("jinja2")
    import minisweagent
    import yaml

    if minisweagent.__version__ != "2.4.6":
        pytest.skip(f"the built-ins are rendered from 2.4.6, not {minisweagent.__version__}")
    config = Path(minisweagent.__file__).parent / "config"
    for name, source in [
        ("mini-textbased", config / "mini_textbased.yaml"),
        ("swebench-backticks", config / "benchmarks" / "swebench_backticks.yaml"),
    ]:
        theirs = yaml.safe_load(source.read_text())
        scaffold = load_scaffold(name)
        machine = {"system": "Linux", "release": "6.1", "version": "#1 SMP", "machine": "x86_64"}
        env = jinja2.Environment(undefined=jinja2.StrictUndefined)
        want = env.from_string(theirs["agent"]["instance_template"]).render(
            task="Fix it.", **machine
        )
        assert render_task(scaffold, "Fix it.", machine) == want
        want = env.from_string(theirs["agent"]["system_template"]).render()
        assert scaffold.system_prompt == want
        observation = env.from_string(theirs["model"]["observation_template"])
        for output in ("hi\n", "x" * 9999, "y" * 10000, "z" * 12345):
            want = observation.render(
                output={"output": output, "returncode": 3, "exception_info": ""}
            )
            assert render_observation(scaffold, output, 3) == want, len(output)


def test_dagger_agreement_compares_the_commands_of_text_actions() -> None:
    def reply(text: str) -> TeacherReply:
        message = {"role": "assistant", "content": text, "tool_calls": []}
        return TeacherReply(message, "stop", 1, 1, 0.0, 0.0)

    same = reply("THOUGHT: other words.\n\n```mswea_bash_command\nls -la\n```")
    other = reply("THOUGHT: look.\n\n```mswea_bash_command\ncat a.py\n```")
    assert agreement(same, reply(BLOCK)) == (True, True)
    assert agreement(other, reply(BLOCK)) == (True, False)


@pytest.mark.e2e
@pytest.mark.parametrize("name", TEXT_SCAFFOLDS)
def test_the_demo_in_a_text_scaffold_passes_mixture_check(tmp_path: Path, name: str) -> None:
    out, config = run_demo(tmp_path / "demo", name)
    scaffold = load_scaffold(name)
    con = Lake(load_root(config)).connect()
    rows = con.execute(
        "SELECT scaffold_id, tools_json, messages_json, exit_status FROM rollouts_t1"
    )
    rows = rows.fetchall()
    assert rows and {r[0] for r in rows} == {scaffold.id()}
    for _, tools, messages, status in rows:
        messages = json.loads(messages)
        assert status == "Submitted" and tools == "[]"  # no tools offered: the text is the action
        assert not any(m.get("tool_calls") for m in messages)
        assert all(m["role"] in ("system", "user", "assistant") for m in messages)
        replies = [m["content"] for m in messages if m["role"] == "assistant"]
        assert all(len(re.findall("```mswea_bash_command\n", r)) == 1 for r in replies)
        assert messages[3]["content"].startswith("<returncode>0</returncode>")  # it ran
    assert (
        cli("--config", str(config), "mixture", "build", str(config.parent / "mixture.yaml"))[0]
        == 0
    )
    rc, out = cli("--config", str(config), "mixture", "check", "demo")
    assert rc == 0 and re.search(rf"\b12\s+{re.escape(scaffold.id())}", out), out


def test_one_character_changed_in_a_text_scaffold_changes_its_id_and_fails_the_check(
    tmp_path: Path,
) -> None:
    mine = tmp_path / "mine.yaml"
    text = (SCAFFOLD_DIR / "mini-textbased.yaml").read_text()
    mine.write_text(text.replace("name: mini-textbased", "name: mine"))
    first_id = load_scaffold(mine).id()
    _, config = run_demo(tmp_path / "demo", str(mine))
    assert (
        cli("--config", str(config), "mixture", "build", str(config.parent / "mixture.yaml"))[0]
        == 0
    )
    assert cli("--config", str(config), "mixture", "check", "demo", "--scaffold", str(mine))[0] == 0

    mine.write_text(
        mine.read_text().replace("exactly ONE bash code block", "exactly ONE bash code block!", 1)
    )
    assert load_scaffold(mine).id() != first_id
    rc, out = cli("--config", str(config), "mixture", "check", "demo", "--scaffold", str(mine))
    assert rc != 0 and first_id in out, out


def build_mixture(config: Path) -> int:
    return cli("--config", str(config), "mixture", "build", str(config.parent / "mixture.yaml"))[0]


def test_check_sample_names_a_tool_call_in_a_text_scaffold_sample() -> None:
    scaffold = load_scaffold("mini-textbased")
    messages = [
        {"role": "system", "content": scaffold.system_prompt},
        {"role": "user", "content": render_task(scaffold, "Fix it.")},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "type": "function",
         "function": {"name": "bash", "arguments": "{\"command\": \"ls\"}"}}]},
    ]  # fmt: skip
    problem = check_sample(messages, "[]", "Fix it.", scaffold)
    assert problem and "```mswea_bash_command blocks" in problem
