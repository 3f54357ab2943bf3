"""`trajlake mixture check` holds each sample to the scaffold its scaffold_id names.

Samples are written from the scaffold's data file by plain text replacement, not with the
functions the agent and the checker render with (so a bug in those fails these tests), into a
real data.parquet read by the real `trajlake mixture check`; the user scaffold is a file, a
modified copy of the built-in mini-bash.yaml.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from helpers import write_config

from trajlake.cli import main
from trajlake.consumers.scaffold_check import check_sample
from trajlake.consumers.scaffold_spec import SCAFFOLD_DIR, Scaffold, load_scaffold
from trajlake.demo import demo_config

pytestmark = [pytest.mark.scaffold, pytest.mark.unit]

REQUEST = "Rename `total` to `order_total` in shop/orders.py."
MARKER = "COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"  # mini-bash.yaml's episode_end.marker


@pytest.fixture
def user_scaffold(tmp_path: Path) -> Path:
    """mini-bash.yaml with other prompts, an observation template with literal braces, an
    empty-output message and one tool call per turn."""
    data = yaml.safe_load((SCAFFOLD_DIR / "mini-bash.yaml").read_text())
    data["name"] = "my-bash"
    data["system_prompt"] = "You fix code with bash. Print {marker} when done."
    data["observation"]["template"] = "[exit {returncode}] {{stdout}}\n{output}"
    data["observation"]["empty_output"] = "(no output)"
    data["format_error"] = "Bad tool call: {error}"
    data["tool_calls_per_turn"] = 1
    path = tmp_path / "my-bash.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def data_of(scaffold: str | Path) -> dict:
    """A scaffold's file as YAML data: a built-in one by name, or a file."""
    path = SCAFFOLD_DIR / f"{scaffold}.yaml" if isinstance(scaffold, str) else scaffold
    return yaml.safe_load(path.read_text())


def fill(template: str, **values: str) -> str:
    """`template` with each {name} replaced by its value and {{ }} made single braces."""
    for name, value in values.items():
        template = template.replace("{" + name + "}", value)
    return template.replace("{{", "{").replace("}}", "}")


def observation(data: dict, output: str) -> str:
    """A tool message of exit status 0, as the data file describes it."""
    spec = data["observation"]
    if not output and spec["empty_output"]:
        return spec["empty_output"]
    return fill(spec["template"], returncode="0", output=output)


def tools_of(data: dict) -> str:
    """The tools as an OpenAI-compatible endpoint takes them, from the data file."""
    return json.dumps(
        [{"type": "function", "function": tool["function"]} for tool in data["tools"]]
    )


def call(number: int, command: str) -> dict:
    function = {"name": "bash", "arguments": json.dumps({"command": command})}
    return {"id": f"c{number}", "type": "function", "function": function}


def sample(data: dict, calls_in_one_turn: int = 1) -> list[dict]:
    """A trajectory as the agent writes it in the scaffold of file `data`: commands with and
    without output, a format error, and `calls_in_one_turn` calls in the first turn."""
    marker = data["episode_end"]["marker"]
    first = [call(i, f"grep -n total shop/orders.py # {i}") for i in range(calls_in_one_turn)]
    results = [
        {"role": "tool", "tool_call_id": c["id"], "content": observation(data, "3:x")}
        for c in first
    ]
    return [
        {"role": "system", "content": fill(data["system_prompt"], marker=marker)},
        {"role": "user", "content": fill(data["task_template"], request=REQUEST, marker=marker)},
        {"role": "assistant", "content": "Find it.", "tool_calls": first},
        *results,
        {"role": "assistant", "content": "Rename it.", "tool_calls": [call(9, "sed -i s/a/b/ f")]},
        {"role": "tool", "tool_call_id": "c9", "content": observation(data, "")},
        {"role": "assistant", "content": "Done?", "tool_calls": None},
        {"role": "user", "content": fill(data["format_error"], error="no tool call")},
        {"role": "assistant", "content": "Done.", "tool_calls": [call(10, "echo FINISHED")]},
    ]


def write_mixture(directory: Path, samples: list[tuple[Scaffold, dict, list[dict]]]) -> Path:
    """A mixture directory `mixture check` reads: data.parquet (and a manifest); each sample
    with its scaffold's id and its file's `data`."""
    directory.mkdir()
    rows = [
        {"sample_id": f"s{i}", "messages": messages, "request": REQUEST,
         "tools": tools_of(data), "scaffold_id": scaffold.id()}
        for i, (scaffold, data, messages) in enumerate(samples)
    ]  # fmt: skip
    pq.write_table(pa.Table.from_pylist(rows), directory / "data.parquet")
    (directory / "manifest.json").write_text(json.dumps({"name": directory.name}))
    return directory


def check(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    config_file = tmp_path / "trajlake.yaml"
    if not config_file.exists():
        write_config(config_file, demo_config(tmp_path, "http://127.0.0.1:1/v1", []))
    rc = main(["--config", str(config_file), "mixture", "check", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_a_user_scaffolds_samples_pass_with_its_file(tmp_path, capsys, user_scaffold):
    mine, mini_bash = load_scaffold(user_scaffold), load_scaffold("mini-bash")
    mine_data, mini_bash_data = data_of(user_scaffold), data_of("mini-bash")
    mine_sample = sample(mine_data)
    assert mine_sample[0]["content"] == f"You fix code with bash. Print {MARKER} when done."
    assert mine_sample[5]["content"] == "(no output)"  # the whole tool message
    assert mine_sample[3]["content"] == "[exit 0] {stdout}\n3:x"  # {{ }}: literal braces
    assert mine_sample[7]["content"] == "Bad tool call: no tool call"
    mini_bash_sample = sample(mini_bash_data)
    assert mini_bash_sample[1]["content"].startswith(f"{REQUEST}\n\nWork in the repository")
    assert mini_bash_sample[1]["content"].endswith(f"`echo {MARKER}` as a command on its own.")
    assert mini_bash_sample[5]["content"] == "<returncode>0</returncode>\n<output>\n</output>"
    mixture = write_mixture(
        tmp_path / "mix",
        [
            (mine, mine_data, mine_sample),
            (mine, mine_data, sample(mine_data)),
            (mini_bash, mini_bash_data, mini_bash_sample),
        ],
    )
    rc, out, err = check(tmp_path, capsys, str(mixture), "--scaffold", str(user_scaffold))
    assert rc == 0, out + err
    assert "3 samples match their scaffold" in out
    assert f"2  {mine.id()}  (--scaffold {user_scaffold})" in out
    assert f"1  {mini_bash.id()}  (built-in mini-bash)" in out

    rc, out, err = check(tmp_path, capsys, str(mixture))  # without the file: unknown id
    assert rc == 1
    assert f"2 samples were generated with scaffold {mine.id()!r}" in err
    assert "--scaffold FILE" in err and "2 of 3 samples differ" in err


def test_one_changed_character_is_another_scaffold(tmp_path, capsys, user_scaffold):
    old, old_data = load_scaffold(user_scaffold), data_of(user_scaffold)
    mixture = write_mixture(tmp_path / "mix", [(old, old_data, sample(old_data))])
    assert check(tmp_path, capsys, str(mixture), "--scaffold", str(user_scaffold))[0] == 0

    text = user_scaffold.read_text()
    user_scaffold.write_text(text.replace("You fix code", "You fix Code", 1))
    new = load_scaffold(user_scaffold)
    assert new.id() != old.id()
    rc, _, err = check(tmp_path, capsys, str(mixture), "--scaffold", str(user_scaffold))
    assert rc == 1
    assert f"scaffold {old.id()!r}, which is none of the scaffolds known here" in err
    assert f"--scaffold {user_scaffold} ({new.id()})" in err

    new_data = data_of(user_scaffold)
    resampled = write_mixture(tmp_path / "new", [(new, new_data, sample(new_data))])  # new ones
    assert check(tmp_path, capsys, str(resampled), "--scaffold", str(user_scaffold))[0] == 0


def test_more_tool_calls_in_a_turn_than_the_scaffold_allows(tmp_path, capsys, user_scaffold):
    mine, data = load_scaffold(user_scaffold), data_of(user_scaffold)
    mixture = write_mixture(tmp_path / "mix", [(mine, data, sample(data, calls_in_one_turn=2))])
    rc, out, _ = check(tmp_path, capsys, str(mixture), "--scaffold", str(user_scaffold))
    assert rc == 1
    assert (
        "sample s0: message 3 (assistant): 2 tool calls in one turn; the scaffold allows 1" in out
    )
    mini_bash = load_scaffold("mini-bash")  # tool_calls_per_turn 0: any number
    data = data_of("mini-bash")
    two = sample(data, calls_in_one_turn=2)
    assert check_sample(two, tools_of(data), REQUEST, mini_bash) is None


def swe_agent_sample(review_as: str) -> tuple[Scaffold, list[dict]]:
    swe = load_scaffold("swe-agent")
    data = data_of("swe-agent")
    arguments = json.dumps({"command": "view", "path": "shop/orders.py"})
    function = {"name": "str_replace_editor", "arguments": arguments}
    view = {"id": "v1", "type": "function", "function": function}
    review = fill(data["episode_end"]["review_on_submit"], diff="--- a/f\n+++ b/f")
    submit = {"id": "s1", "type": "function", "function": {"name": "submit", "arguments": "{}"}}
    reviewed = (
        {"role": "tool", "tool_call_id": "s1", "content": observation(data, review)}
        if review_as == "tool"
        else {"role": "user", "content": review}
    )
    task = fill(data["task_template"], request=REQUEST)
    assert f"<pr_description>\n{REQUEST}\n</pr_description>" in task
    return swe, [
        {"role": "system", "content": fill(data["system_prompt"])},
        {"role": "user", "content": task},
        {"role": "assistant", "content": "", "tool_calls": [view]},
        {"role": "tool", "tool_call_id": "v1", "content": observation(data, "1 x")},
        {"role": "assistant", "content": "", "tool_calls": [call(2, "true")]},
        {"role": "tool", "tool_call_id": "c2", "content": observation(data, "")},
        {"role": "assistant", "content": "Submit.", "tool_calls": [submit]},
        reviewed,
        {"role": "assistant", "content": "Confirm.", "tool_calls": [{**submit, "id": "s2"}]},
    ]


def test_swe_agent_review_comes_back_as_the_submit_calls_result():
    swe, messages = swe_agent_sample(review_as="tool")
    tools = tools_of(data_of("swe-agent"))
    assert check_sample(messages, tools, REQUEST, swe) is None
    _, as_user = swe_agent_sample(review_as="user")
    assert "the review step as a user turn" in check_sample(as_user, tools, REQUEST, swe)


@pytest.mark.parametrize(
    ("index", "change", "problem"),
    [
        (5, {"content": "OBSERVATION:\n"}, "not in the observation format"),  # empty_output it is
        (3, {"content": "1 x"}, "not in the observation format"),
        (4, {"tool_calls": [{**call(2, "x"), "function": {"name": "shell", "arguments": "{}"}}]},
         "calls 'shell', not one of the tools"),
        (2, {"tool_calls": [{"id": "v1", "type": "function", "function": {
            "name": "str_replace_editor", "arguments": '{"command": "view"}'}}]}, "lack ['path']"),
        (0, {"content": "You are a helpful assistant."}, "system prompt: line 1"),
    ],
)  # fmt: skip
def test_swe_agent_differences_are_named(index, change, problem):
    swe, messages = swe_agent_sample(review_as="tool")
    messages[index] = {**messages[index], **change}
    assert problem in check_sample(messages, tools_of(data_of("swe-agent")), REQUEST, swe)
