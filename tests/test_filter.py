"""The filter stage: token counts, truncation ratios and labels, with a tokenizer trained here."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from trajlake.config import Config, FilterConfig
from trajlake.consumers.filter import (
    MalformedTrajectory,
    make_stage,
    measure,
    patch_lines,
    render_message,
    truncation_ratio,
    truncation_ratios,
)
from trajlake.schemas import RolloutEvent, SampleEvent, make_event_id, to_arrow
from trajlake.tokenizer import (
    HFTokenCounter,
    TokenizerError,
    load_tokenizer,
    open_counter,
    tokenizer_id,
    train_tiny_tokenizer,
)

pytestmark = pytest.mark.unit

ROLES = ["system", "user", "assistant", "tool", "assistant", "tool", "assistant"]
COUNTS = [10, 20, 30, 40, 50, 60, 70]
# prefix sums:   10, 30, 60, 100, 150, 210, 280

PATCH = """\
diff --git a/pkg/mod.py b/pkg/mod.py
--- a/pkg/mod.py
+++ b/pkg/mod.py
@@ -1,2 +1,2 @@
 def f(x):
-    return x
+    return x + 1
"""

MESSAGES = [
    {"role": "system", "content": "You are a coding agent. Use the tools."},
    {"role": "user", "content": "The parser may fail on empty input in pkg/mod.py."},
    {
        "role": "assistant",
        "reasoning_content": "I should look at the file first.",
        "content": "Let me read it.",
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "bash", "arguments": '{"command": "cat pkg/mod.py"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "c1", "content": "def f(x):\n    return x\n" * 5},
    {
        "role": "assistant",
        "reasoning_content": "Add one and run the tests.",
        "content": None,
        "tool_calls": [
            {"id": "c2", "type": "function", "function": {"name": "edit", "arguments": "{}"}},
            {"id": "c3", "type": "function", "function": {"name": "bash", "arguments": "{}"}},
        ],
    },
    {"role": "tool", "tool_call_id": "c2", "content": "ok"},
    {"role": "tool", "tool_call_id": "c3", "content": "3 passed in 0.01s"},
    {"role": "assistant", "content": "Done: f now returns x + 1."},
]


def _corpus(lines: int = 400) -> list[str]:
    rng = random.Random(7)
    words = [
        "the",
        "parser",
        "cache",
        "retry",
        "error",
        "value",
        "file",
        "test",
        "return",
        "import",
        "self",
        "fails",
        "input",
    ]
    code = ["def f(x):", "    return x + 1", "import os", "for i in range(10):", "cat pkg/mod.py"]
    return [" ".join(rng.choices(words, k=12)) + "\n" + rng.choice(code) for _ in range(lines)]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_tokenizer(_corpus(), tmp_path_factory.mktemp("tok") / "tiny", vocab_size=512)


def _rollout(messages: list[dict] | str = MESSAGES, patch: str = PATCH) -> RolloutEvent:
    raw = messages if isinstance(messages, str) else json.dumps(messages)
    built = RolloutEvent(
        event_id=make_event_id("task-1", "rollout_t1", "teacher-a", 1),
        parent_ids=["task-1"],
        stage="rollout_t1",
        repo="demo/repo",
        repo_url="/srv/demo",
        commit="a" * 40,
        teacher_id="teacher-a",
        config_hash="cfg123",
        scaffold_id="mini-v1",
        rollout="t1",
        task_id="task-1",
        request="fix the parser",
        messages_json=raw,
        patch=patch,
        exit_status="Submitted",
        steps=3,
    )
    return RolloutEvent.decode(built.encode())  # as the runner hands it over: from bus bytes


def test_truncation_ratio_hand_computed() -> None:
    # budget 100: prefixes 10, 30, 60, 100 fit (4 messages); the last assistant among them is
    # index 2, so messages 0..2 are kept -> 3/7.
    assert truncation_ratio(COUNTS, ROLES, 100) == pytest.approx(3 / 7)
    # budget 155: 150 fits, 210 does not (5 messages); index 4 is an assistant -> 5/7.
    assert truncation_ratio(COUNTS, ROLES, 155) == pytest.approx(5 / 7)
    # budget 209: still 5 messages (210 > 209) -> 5/7; budget 279: 6 fit, index 5 is a tool
    # result, back to the assistant at index 4 -> 5/7.
    assert truncation_ratio(COUNTS, ROLES, 209) == pytest.approx(5 / 7)
    assert truncation_ratio(COUNTS, ROLES, 279) == pytest.approx(5 / 7)
    # budget >= total (280): everything fits -> 1.0.
    assert truncation_ratio(COUNTS, ROLES, 280) == 1.0
    assert truncation_ratio(COUNTS, ROLES, 10_000) == 1.0
    # the first assistant turn ends at 60: budget 60 keeps 3/7, budget 59 keeps nothing.
    assert truncation_ratio(COUNTS, ROLES, 60) == pytest.approx(3 / 7)
    assert truncation_ratio(COUNTS, ROLES, 59) == 0.0
    assert truncation_ratios(COUNTS, ROLES, [59, 100, 155, 280]) == pytest.approx(
        [0.0, 3 / 7, 5 / 7, 1.0]
    )


def test_truncation_ratio_edges() -> None:
    assert truncation_ratio([], [], 100) == 0.0
    with pytest.raises(ValueError):
        truncation_ratio([1, 2], ["user"], 100)


def test_render_keeps_reasoning_content_and_tool_calls() -> None:
    text = render_message(MESSAGES[2])
    assert text == (
        "assistant\nI should look at the file first.\nLet me read it.\n"
        'bash {"command": "cat pkg/mod.py"}'
    )
    parts = {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text"}]}
    assert render_message(parts) == "user\na"
    dict_args = {"role": "assistant", "tool_calls": [{"function": {"name": "e", "arguments": {}}}]}
    assert render_message(dict_args) == "assistant\ne {}"


def test_measure_with_trained_tokenizer(tokenizer_dir: Path) -> None:
    tokenizer = load_tokenizer(tokenizer_dir)
    counter = open_counter(str(tokenizer_dir))
    m = measure(MESSAGES, counter, [10**6, 0])
    expected = [
        len(tokenizer.encode(render_message(msg), add_special_tokens=False).ids) for msg in MESSAGES
    ]
    assert m.message_tokens == expected
    assert m.total_tokens == sum(expected)
    assert m.roles == [msg["role"] for msg in MESSAGES]
    assert m.steps == 3
    tools = [expected[3], expected[5], expected[6]]
    assert m.tool_tokens_max == max(tools)
    assert m.tool_tokens_mean == pytest.approx(sum(tools) / 3)
    assert m.truncation_ratios == [1.0, 0.0]
    # reasoning and tool-call arguments are counted, not only the content
    bare = {"role": "assistant", "content": MESSAGES[2]["content"]}
    assert m.message_tokens[2] > counter.count([render_message(bare)])[0]


def test_batched_counts_equal_per_message_counts(tokenizer_dir: Path) -> None:
    counter = open_counter(str(tokenizer_dir))
    texts = [render_message(m) for m in MESSAGES] + _corpus(50)
    assert counter.count(texts) == [counter.count([t])[0] for t in texts]
    assert all(n > 0 for n in counter.count(texts))


def test_tool_stats_without_tool_messages() -> None:
    m = measure(MESSAGES[:3], open_counter(""))
    assert (m.tool_tokens_mean, m.tool_tokens_max, m.steps) == (0.0, 0, 1)


def test_regex_fallback_counts_words_and_punctuation() -> None:
    counter = open_counter("")
    assert counter.id == "regex-v1"
    assert counter.count(["return x + 1", "", "f(a,b)"]) == [4, 0, 6]


def test_patch_lines() -> None:
    assert patch_lines(PATCH) == 2
    assert patch_lines("") == 0
    assert patch_lines("this is not a diff\n+ but it has a plus line\n") == -1
    truncated = PATCH.replace("@@ -1,2 +1,2 @@", "@@ -1,9 +1,9 @@")
    assert patch_lines(truncated) == -1


def test_stage_on_a_rollout(tokenizer_dir: Path) -> None:
    config = Config(filter=FilterConfig(tokenizer=str(tokenizer_dir), budgets=[40, 10**6]))
    stage = make_stage(config)
    assert (stage.name, stage.inputs, stage.outputs) == (
        "filter",
        ("rollouts.t1", "rollouts.t2"),
        ("samples",),
    )
    rollout = _rollout()
    [out] = stage.process(rollout)
    assert isinstance(out, SampleEvent)
    tid = tokenizer_id(tokenizer_dir)
    assert out.tokenizer == tid and tid.startswith("tiny@")
    assert out.event_id == make_event_id(rollout.event_id, "filter", tid, 40, 10**6)
    assert out.parent_ids == [rollout.event_id] and out.rollout_id == rollout.event_id
    lineage = ("repo", "repo_url", "commit", "teacher_id", "config_hash", "scaffold_id")
    assert {k: getattr(out, k) for k in lineage} == {k: getattr(rollout, k) for k in lineage}
    expected = measure(MESSAGES, HFTokenCounter(load_tokenizer(tokenizer_dir), tid), [40, 10**6])
    assert out.message_tokens == expected.message_tokens
    assert out.total_tokens == expected.total_tokens
    assert out.budgets == [40, 10**6]
    assert out.truncation_ratios == expected.truncation_ratios
    assert out.truncation_ratios[1] == 1.0 and out.truncation_ratios[0] < 1.0
    assert (out.patch_lines, out.steps, out.exit_status) == (2, 3, "Submitted")
    assert out.tool_tokens_max == expected.tool_tokens_max > 0
    assert stage.process(rollout)[0].event_id == out.event_id  # deterministic
    to_arrow([out], SampleEvent.arrow_schema())  # fits its lake table


def test_stage_labels_an_unparseable_patch_and_keeps_the_sample() -> None:
    stage = make_stage(Config())
    [out] = stage.process(_rollout(patch="not a diff\n+x\n"))
    assert out.patch_lines == -1
    assert out.tokenizer == "regex-v1" and out.total_tokens > 0


def test_stage_rejects_malformed_messages() -> None:
    stage = make_stage(Config())
    with pytest.raises(MalformedTrajectory):
        stage.process(_rollout(messages="not json"))
    with pytest.raises(MalformedTrajectory):
        stage.process(_rollout(messages='{"role": "user"}'))


def test_load_tokenizer_errors(tmp_path: Path, tokenizer_dir: Path) -> None:
    with pytest.raises(TokenizerError, match="filter.tokenizer"):
        load_tokenizer(tmp_path / "missing")
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json")
    with pytest.raises(TokenizerError):
        load_tokenizer(bad)
    assert load_tokenizer(tokenizer_dir / "tokenizer.json").get_vocab_size() > 256
    with pytest.raises(TokenizerError):
        make_stage(Config(filter=FilterConfig(tokenizer=str(tmp_path / "missing"))))


def test_auto_tokenizer_loads_the_trained_tokenizer(tokenizer_dir: Path) -> None:
    transformers = pytest.importorskip("transformers")
    auto = transformers.AutoTokenizer.from_pretrained(tokenizer_dir)
    assert auto.is_fast
    assert auto.eos_token == "<|endoftext|>" and auto.pad_token == "<|endoftext|>"
    text = "def f(x):\n    return x + 1"
    ids = auto(text, add_special_tokens=False)["input_ids"]
    assert ids == load_tokenizer(tokenizer_dir).encode(text, add_special_tokens=False).ids
    assert auto.decode(ids) == text
