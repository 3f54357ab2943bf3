"""Stage `filter` (SVG step 6): measure every trajectory and label it; never drop one.

One `SampleEvent` per rollout: tokens per message with the student tokenizer, truncation ratios
at the configured context budgets, patch size, tool-output lengths, steps and exit status.
Selection happens later, in SQL, so a new threshold never needs a new rollout.

Rendering. A message is counted as the text the student is trained on, built deterministically
from its parts, each on its own line and empty parts left out:

    role
    reasoning_content
    content                      (a list of content parts: their texts, joined by newlines)
    name arguments               (one line per tool call; non-string arguments as sorted JSON)

Chat-template markers and special tokens are not counted: they depend on the template, add a
few tokens per message, and are the same for every trajectory of a given length.

Counting. All messages of a trajectory are tokenized in one batched call; the per-message counts
and their prefix sums answer every budget, so no prefix is ever tokenized again. The tokenizer is
opened once per stage; an empty `filter.tokenizer` uses the regex fallback (`regex-v1`, see
`trajlake.tokenizer.RegexTokenCounter`).
"""

from __future__ import annotations

import json
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from trajlake.config import Config
from trajlake.errors import TrajlakeError
from trajlake.patches import PatchParseError, patch_size
from trajlake.schemas import Event, RolloutEvent, SampleEvent, make_event_id
from trajlake.stage import Stage
from trajlake.tokenizer import TokenCounter, open_counter

NAME = "filter"
INPUTS = ("rollouts.t1", "rollouts.t2")
OUTPUTS = ("samples",)


class MalformedTrajectory(TrajlakeError):
    """A rollout whose messages_json is not a list of chat messages."""


@dataclass(frozen=True)
class Measurement:
    """What the filter measures on one conversation."""

    message_tokens: list[int]
    roles: list[str]
    truncation_ratios: list[float]
    tool_tokens_mean: float
    tool_tokens_max: int
    steps: int

    @property
    def total_tokens(self) -> int:
        return sum(self.message_tokens)


def render_message(message: dict[str, Any]) -> str:
    """The text of one message as counted (see the module docstring)."""
    parts = [str(message.get("role") or ""), str(message.get("reasoning_content") or "")]
    parts.append(_content_text(message.get("content")))
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        name, arguments = function.get("name") or "", _arguments_text(function.get("arguments"))
        parts.append(" ".join(p for p in (str(name), arguments) if p))
    return "\n".join(p for p in parts if p)


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, list):  # OpenAI content parts: [{"type": "text", "text": ...}, ...]
        texts = (str(p.get("text") or "") for p in content if isinstance(p, dict))
        return "\n".join(t for t in texts if t)
    return str(content)


def _arguments_text(arguments: Any) -> str:
    if arguments is None:
        return ""
    if isinstance(arguments, str):
        return arguments
    return json.dumps(arguments, sort_keys=True, ensure_ascii=False)


def truncation_ratios(
    message_tokens: Sequence[int], roles: Sequence[str], budgets: Sequence[int]
) -> list[float]:
    """`truncation_ratio` for each budget, from one pass of prefix sums."""
    if len(message_tokens) != len(roles):
        raise ValueError(f"{len(message_tokens)} token counts for {len(roles)} messages")
    prefix = list(accumulate(message_tokens))
    assistants = [i for i, role in enumerate(roles) if role == "assistant"]
    return [_ratio(prefix, assistants, budget) for budget in budgets]


def truncation_ratio(message_tokens: Sequence[int], roles: Sequence[str], budget: int) -> float:
    """Share of messages kept when the conversation is cut at `budget` tokens.

    The cut keeps the longest prefix whose tokens fit in the budget, then goes back to its last
    assistant turn: ratio = messages kept / messages. 1.0 when everything fits; 0.0 when not even
    the first assistant turn fits (and for an empty conversation, which has nothing to keep).
    """
    return truncation_ratios(message_tokens, roles, [budget])[0]


def _ratio(prefix: list[int], assistants: list[int], budget: int) -> float:
    n = len(prefix)
    fitting = bisect_right(prefix, budget)  # counts are >= 0, so prefix sums are sorted
    if n and fitting == n:
        return 1.0
    last = bisect_left(assistants, fitting) - 1  # the last assistant turn among those that fit
    return 0.0 if last < 0 else (assistants[last] + 1) / n


def measure(
    messages: Sequence[dict[str, Any]], counter: TokenCounter, budgets: Sequence[int] = ()
) -> Measurement:
    """Token counts (one batched call), truncation ratios, tool-output stats and steps."""
    roles = [str(m.get("role") or "") for m in messages]
    counts = counter.count([render_message(m) for m in messages]) if messages else []
    tool = [  # a text scaffold's results are the user messages after the task
        count
        for i, (count, role) in enumerate(zip(counts, roles, strict=True))
        if role == "tool" or (role == "user" and i >= 2 and "tool" not in roles)
    ]
    return Measurement(
        message_tokens=counts,
        roles=roles,
        truncation_ratios=truncation_ratios(counts, roles, budgets),
        tool_tokens_mean=sum(tool) / len(tool) if tool else 0.0,
        tool_tokens_max=max(tool, default=0),
        steps=roles.count("assistant"),
    )


def patch_lines(patch: str) -> int:
    """Changed lines of a patch; -1 when it cannot be parsed (a label, not a failure)."""
    try:
        return patch_size(patch)
    except PatchParseError:
        return -1


def parse_messages(rollout: RolloutEvent) -> list[dict[str, Any]]:
    """The rollout's chat messages; MalformedTrajectory when they are not a list of objects."""
    try:
        messages = json.loads(rollout.messages_json)
    except json.JSONDecodeError as e:
        raise MalformedTrajectory(
            f"rollout {rollout.event_id}: messages_json is not JSON: {e}"
        ) from None
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise MalformedTrajectory(
            f"rollout {rollout.event_id}: messages_json must be a JSON list of message objects"
        )
    return messages


def sample(rollout: RolloutEvent, counter: TokenCounter, budgets: Sequence[int]) -> SampleEvent:
    """The SampleEvent of one rollout; lineage is copied from it."""
    m = measure(parse_messages(rollout), counter, budgets)
    return SampleEvent(
        event_id=make_event_id(rollout.event_id, NAME, counter.id, *budgets),
        parent_ids=[rollout.event_id],
        stage=NAME,
        **rollout.lineage(),
        rollout_id=rollout.event_id,
        rollout=rollout.rollout,
        task_id=rollout.task_id,
        tokenizer=counter.id,
        message_tokens=m.message_tokens,
        total_tokens=m.total_tokens,
        budgets=list(budgets),
        truncation_ratios=m.truncation_ratios,
        patch_lines=patch_lines(rollout.patch),
        tool_tokens_mean=m.tool_tokens_mean,
        tool_tokens_max=m.tool_tokens_max,
        steps=m.steps,
        exit_status=rollout.exit_status,
    )


def make_stage(config: Config) -> Stage:
    """The filter stage; its tokenizer is opened here, once, not per record."""
    counter = open_counter(config.filter.tokenizer)
    budgets = list(config.filter.budgets)

    def process(event: Event) -> list[Event]:
        if not isinstance(event, RolloutEvent):
            raise MalformedTrajectory(f"filter takes rollouts, got a {type(event).__name__}")
        return [sample(event, counter, budgets)]

    return Stage(name=NAME, inputs=INPUTS, outputs=OUTPUTS, process=process)
