"""Mixture samples to token ids and labels: the chat template, the assistant mask, truncation.

`template_inputs` turns a mixture row's messages and tools into what Hugging Face chat templates
take (the conversion vLLM applies to OpenAI requests). `tokenize_chat` renders them and marks
every token the assistant wrote, reasoning and tool calls included; every other label is -100.
`truncate` keeps the longest prefix that ends on a complete assistant turn.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from trajlake.training.errors import ChatTemplateError

IGNORE_INDEX = -100
_GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")
_DROPPED_FIELDS = ("train",)


@dataclass(frozen=True)
class TokenizedChat:
    """One conversation as tokens. `turn_ends[k]` is the index just past assistant turn k."""

    input_ids: list[int]
    labels: list[int]
    turn_ends: list[int]


def template_inputs(
    messages: Sequence[dict[str, Any]], tools: str | Sequence[dict[str, Any]] | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Messages and tools in the shape chat templates take.

    Null fields and `train` are dropped, each tool call's `arguments` JSON text becomes a dict,
    and `tools` (JSON text of an OpenAI tool list, or the list itself) becomes a list.
    """
    converted = [_template_message(message) for message in messages]
    if tools is None or tools == "":
        return converted, []
    parsed = json.loads(tools) if isinstance(tools, str) else list(tools)
    if not isinstance(parsed, list):
        raise ChatTemplateError(f"tools must be a JSON array of tool schemas, got {tools!r:.80}")
    return converted, parsed


def _template_message(message: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in message.items() if v is not None and k not in _DROPPED_FIELDS}
    if out.get("tool_calls"):
        out["tool_calls"] = [_template_call(call) for call in out["tool_calls"]]
    return out


def _template_call(call: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in call.items() if v is not None}
    function = dict(out.get("function") or {})
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        # Arguments that are not JSON (a teacher's slip) stay text: templates render them as is.
        with contextlib.suppress(json.JSONDecodeError):
            function["arguments"] = json.loads(arguments) if arguments.strip() else {}
    out["function"] = function
    return out


def tokenize_chat(
    tokenizer: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]]
) -> TokenizedChat:
    """Token ids of the rendered conversation, labels equal to the ids on the assistant's tokens
    and -100 elsewhere. Assistant messages with `train: false` stay untrained.

    Templates with `{% generation %}` markers are asked for the assistant mask directly; others
    (most released templates) are rendered once per assistant turn to find where it starts and
    ends, which needs a template that renders a conversation's prefixes as prefixes.
    """
    trained = [m.get("train", True) is not False for m in messages if m["role"] == "assistant"]
    inputs, tool_list = template_inputs(messages, tools)
    if _GENERATION_TAG.search(tokenizer.chat_template or ""):
        out = tokenizer.apply_chat_template(
            inputs, tools=tool_list or None, return_dict=True, return_assistant_tokens_mask=True
        )
        ids, mask = list(out["input_ids"]), list(out["assistant_masks"])
    else:
        ids, mask = _mask_by_prefixes(tokenizer, inputs, tool_list or None)
    turns = _runs(mask)
    if len(turns) != len(trained):
        raise ChatTemplateError(
            f"the chat template marks {len(turns)} assistant spans in a conversation with "
            f"{len(trained)} assistant turns: check its {{% generation %}} markers"
        )
    labels = [IGNORE_INDEX] * len(ids)
    for (start, end), train in zip(turns, trained, strict=True):
        if train:
            labels[start:end] = ids[start:end]
    return TokenizedChat(ids, labels, [end for _, end in turns])


def _mask_by_prefixes(
    tokenizer: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
) -> tuple[list[int], list[int]]:
    def render(part: list[dict[str, Any]], prompt: bool = False) -> str:
        return tokenizer.apply_chat_template(
            part, tools=tools, tokenize=False, add_generation_prompt=prompt
        )

    text = render(messages)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before, through = render(messages[:i], prompt=True), render(messages[: i + 1]).rstrip()
        if not (text.startswith(before) and text.startswith(through)):
            raise ChatTemplateError(
                "the chat template renders earlier turns differently once later ones follow, so "
                "the assistant's tokens cannot be found: set chat_template to a template with "
                "{% generation %}...{% endgeneration %} around what the assistant writes"
            )
        spans.append((len(before), len(through)))
    encoding = tokenizer(text, add_special_tokens=False)
    mask = [0] * len(encoding["input_ids"])
    for start, end in spans:
        first, last = encoding.char_to_token(start), encoding.char_to_token(end - 1)
        mask[first : last + 1] = [1] * (last + 1 - first)
    return list(encoding["input_ids"]), mask


def _runs(mask: list[int]) -> list[tuple[int, int]]:
    """(start, end) of each run of ones."""
    runs, start = [], None
    for i, bit in enumerate([*mask, 0]):
        if bit and start is None:
            start = i
        elif not bit and start is not None:
            runs.append((start, i))
            start = None
    return runs


def truncate(chat: TokenizedChat, max_len: int) -> TokenizedChat | None:
    """The longest prefix of at most `max_len` tokens that ends on a complete *trained*
    assistant turn; None when no trained turn ends within `max_len` (a prefix of untrained
    turns only, such as a DAgger label sample's history, would train nothing)."""
    starts = [0, *chat.turn_ends[:-1]]
    trained = [
        end
        for start, end in zip(starts, chat.turn_ends, strict=True)
        if end <= max_len and any(label != IGNORE_INDEX for label in chat.labels[start:end])
    ]
    if not trained:
        return None
    cut = trained[-1]
    return TokenizedChat(
        chat.input_ids[:cut], chat.labels[:cut], [e for e in chat.turn_ends if e <= cut]
    )
