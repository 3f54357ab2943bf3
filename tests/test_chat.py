"""Labels of the fine-tuning data: trained exactly on what the assistant wrote.

The expected assistant spans are found here independently of the code under test: each
assistant message is rendered by hand (reasoning, content, tool calls, end of turn) and looked
up in the rendered conversation; every token inside those spans must be trained, every other
token must be -100. Both ways of finding the spans (the template's {% generation %} markers,
and rendering prefixes for templates without them) are checked against the same expectation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import transformers

from trajlake.tokenizer import CHAT_TEMPLATE, train_tiny_tokenizer
from trajlake.training.chat import IGNORE_INDEX, template_inputs, tokenize_chat, truncate
from trajlake.training.data import encode_mixture, mixture_texts, read_mixture
from trajlake.training.errors import ChatTemplateError
from trajlake.training.synthetic import TOOLS, make_synthetic_mixture

pytestmark = pytest.mark.unit


def _call(call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    function = {"name": name, "arguments": json.dumps(arguments)}
    return {"id": call_id, "type": "function", "function": function}


def _msg(role: str, content: str, **extra: Any) -> dict[str, Any]:
    """A message as a mixture row holds it: every field present, null when unused."""
    fields = {"reasoning_content": None, "tool_calls": None, "tool_call_id": None}
    return {"role": role, "content": content, **fields, **extra, "train": role == "assistant"}


MESSAGES = [
    _msg("system", "You are a coding agent."),
    _msg("user", "parse_items in pkg/parse.py fails on empty input."),
    _msg(
        "assistant",
        "Let me look.",
        reasoning_content="Read the file first.",
        tool_calls=[_call("c1", "bash", {"command": "cat pkg/parse.py"})],
    ),
    _msg("tool", "def parse_items(items):\n    return items[0]", tool_call_id="c1"),
    _msg(
        "assistant",
        "",
        reasoning_content="Guard the empty case, then run the tests.",
        tool_calls=[
            _call("c2", "str_replace", {"path": "pkg/parse.py", "old": "[0]", "new": "[:1]"}),
            _call("c3", "bash", {"command": "pytest -q"}),
        ],
    ),
    _msg("tool", "ok", tool_call_id="c2"),
    _msg("tool", "3 passed", tool_call_id="c3"),
    _msg("assistant", "Done: parse_items returns [] on empty input."),
]


def _expected_assistant_text(message: dict[str, Any]) -> str:
    """What the template must render for an assistant message, written out by hand."""
    text = ""
    if message["reasoning_content"]:
        text += f"<think>\n{message['reasoning_content']}\n</think>\n\n"
    text += message["content"]
    for k, call in enumerate(message["tool_calls"] or []):
        args = json.dumps(json.loads(call["function"]["arguments"]))
        text += "\n" if message["content"] or k else ""
        text += f'<tool_call>\n{{"name": "{call["function"]["name"]}", "arguments": {args}}}'
        text += "\n</tool_call>"
    return text + "<|im_end|>"


def _expected_labels(tokenizer: Any, messages: list[dict[str, Any]]) -> list[int]:
    inputs, tools = template_inputs(messages, json.dumps(TOOLS))
    text = tokenizer.apply_chat_template(inputs, tools=tools, tokenize=False)
    spans, cursor = [], 0
    for message in messages:
        if message["role"] == "assistant":
            start = text.index(_expected_assistant_text(message), cursor)
            cursor = start + len(_expected_assistant_text(message))
            if message["train"]:
                spans.append((start, cursor))
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    pairs = zip(encoding["input_ids"], encoding["offset_mapping"], strict=True)
    return [t if any(s <= begin < e for s, e in spans) else IGNORE_INDEX for t, (begin, _) in pairs]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    mixture = make_synthetic_mixture(tmp_path_factory.mktemp("mix") / "m", 16, seed=1)
    rows, _ = read_mixture(mixture)
    texts = mixture_texts(rows) + [json.dumps(MESSAGES)]
    path = train_tiny_tokenizer(texts, tmp_path_factory.mktemp("tok") / "t", vocab_size=600)
    return transformers.AutoTokenizer.from_pretrained(path)


@pytest.fixture
def plain_template_tokenizer(tokenizer: Any) -> Any:
    """The same tokenizer with the {% generation %} markers taken out of its template."""
    copy = transformers.AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    copy.chat_template = CHAT_TEMPLATE.replace("{%- generation %}", "").replace(
        "{%- endgeneration %}", ""
    )
    return copy


def test_template_inputs_is_what_chat_templates_take() -> None:
    messages, tools = template_inputs(MESSAGES[:4], json.dumps(TOOLS))
    assert tools == TOOLS
    assert messages[0] == {"role": "system", "content": "You are a coding agent."}
    call = messages[2]["tool_calls"][0]
    assert call == {
        "id": "c1",
        "type": "function",
        "function": {"name": "bash", "arguments": {"command": "cat pkg/parse.py"}},
    }
    assert messages[3] == {
        "role": "tool",
        "content": MESSAGES[3]["content"],
        "tool_call_id": "c1",
    }
    assert all("train" not in m for m in messages)
    assert template_inputs(MESSAGES[:2], None)[1] == []


@pytest.mark.parametrize("which", ["generation markers", "rendered prefixes"])
def test_only_assistant_tokens_are_trained(
    which: str, tokenizer: Any, plain_template_tokenizer: Any
) -> None:
    tok = tokenizer if which == "generation markers" else plain_template_tokenizer
    chat = tokenize_chat(tok, MESSAGES, json.dumps(TOOLS))
    expected = _expected_labels(tokenizer, MESSAGES)
    assert (
        chat.input_ids
        == tokenizer(
            tokenizer.apply_chat_template(*template_inputs(MESSAGES, TOOLS), tokenize=False),
            add_special_tokens=False,
        )["input_ids"]
    )
    assert chat.labels == expected
    trained = tokenizer.decode([t for t in chat.labels if t != IGNORE_INDEX])
    assert "Read the file first." in trained and '"command": "pytest -q"' in trained
    assert "You are a coding agent." not in trained and "3 passed" not in trained
    assert len(chat.turn_ends) == 3 and chat.turn_ends[-1] == max(
        i + 1 for i, t in enumerate(chat.labels) if t != IGNORE_INDEX
    )


def test_an_assistant_message_marked_untrained_keeps_minus_100(tokenizer: Any) -> None:
    messages = [dict(m) for m in MESSAGES]
    messages[2]["train"] = False
    chat = tokenize_chat(tokenizer, messages, json.dumps(TOOLS))
    assert chat.labels == _expected_labels(tokenizer, messages)
    assert "Read the file first." not in tokenizer.decode(
        [t for t in chat.labels if t != IGNORE_INDEX]
    )


def test_truncation_cuts_back_to_the_last_complete_assistant_turn(tokenizer: Any) -> None:
    chat = tokenize_chat(tokenizer, MESSAGES, json.dumps(TOOLS))
    first, second, last = chat.turn_ends
    for budget, cut in [(second, second), (second + 1, second), (last - 1, second), (10**6, last)]:
        kept = truncate(chat, budget)
        assert kept is not None and len(kept.input_ids) == cut
        assert kept.input_ids == chat.input_ids[:cut] and kept.labels == chat.labels[:cut]
        assert kept.labels[-1] != IGNORE_INDEX  # ends on the assistant's end of turn
    assert truncate(chat, first - 1) is None


def test_a_cut_that_would_keep_only_untrained_turns_drops_the_sample(tokenizer: Any) -> None:
    """A DAgger label sample: the history's assistant turns untrained, the label last. Cut
    before the label, it would train nothing: it is dropped, not kept as "truncated"."""
    messages = [m | {"train": False} if m["role"] == "assistant" else m for m in MESSAGES]
    messages[-1] = messages[-1] | {"train": True}
    chat = tokenize_chat(tokenizer, messages, json.dumps(TOOLS))
    first, second, last = chat.turn_ends
    assert truncate(chat, last - 1) is None and truncate(chat, second) is None
    kept = truncate(chat, last)
    assert kept is not None and kept.labels == chat.labels[:last]


def test_encode_mixture_counts_truncated_and_dropped(tokenizer: Any) -> None:
    row = {"sample_id": "s", "messages": MESSAGES, "tools": json.dumps(TOOLS)}
    chat = tokenize_chat(tokenizer, MESSAGES, json.dumps(TOOLS))
    first, second, _ = chat.turn_ends
    encoded = encode_mixture([row, row], tokenizer, second + 5)
    assert (len(encoded.examples), encoded.truncated, encoded.dropped) == (2, 2, 0)
    assert len(encoded.examples[0]) == second
    encoded = encode_mixture([row], tokenizer, first - 1)
    assert (len(encoded.examples), encoded.dropped) == (0, 1)


def test_a_template_that_rewrites_history_is_refused(tmp_path: Path, tokenizer: Any) -> None:
    copy = transformers.AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    # drops the reasoning of every assistant turn but the last, like some released templates
    copy.chat_template = (
        "{%- for m in messages %}{{ m.role }}: {% if m.role == 'assistant' and not loop.last %}"
        "{{ m.content }}{% else %}{{ m.reasoning_content or '' }}{{ m.content }}{% endif %}\n"
        "{%- endfor %}{% if add_generation_prompt %}assistant: {% endif %}"
    )
    with pytest.raises(ChatTemplateError, match="generation"):
        tokenize_chat(copy, MESSAGES, json.dumps(TOOLS))
