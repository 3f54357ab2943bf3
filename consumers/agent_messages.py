"""The agent's messages between mini-swe-agent, the teacher and the lake: what is kept of a
trajectory, what is sent back to the teacher, and how a malformed reply is kept."""

from __future__ import annotations

from typing import Any

from trajlake.teacher.reply import SOURCE_KEY

#: The key of an assistant message the scaffold rejected (a format error): why, in a line.
REJECTED_KEY = "rejected"


def clean_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The trajectory in plain OpenAI format: no mini-swe-agent bookkeeping, no exit marker.

    Assistant turns keep `tool_call_source` (where their calls were read: native, hermes, …),
    and a turn the scaffold rejected keeps why (`rejected`): mixtures do not train it, and
    leave both out with every other non-OpenAI key.
    """
    keep = (
        "role", "content", "reasoning_content", "tool_calls", "tool_call_id", SOURCE_KEY,
        REJECTED_KEY,
    )  # fmt: skip
    return [
        {k: m[k] for k in keep if m.get(k) not in (None, "", [])}
        | {"content": m.get("content") or ""}
        for m in messages
        if m.get("role") != "exit"
    ]


def for_api(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What is sent back to the teacher: earlier reasoning stays out, as chat templates do, and
    so does trajlake's own bookkeeping (a strict server rejects keys it does not know)."""
    drop = ("extra", "reasoning_content", SOURCE_KEY, REJECTED_KEY)
    return [{k: v for k, v in m.items() if k not in drop} for m in messages]


def without_calls(message: dict[str, Any], extra: dict[str, Any], problem: str) -> dict[str, Any]:
    """A reply the scaffold rejected, kept in the trajectory as text (its calls cannot be
    answered) with why (`rejected`), so that no training sample trains it."""
    kept = {k: v for k, v in message.items() if k != "tool_calls"}
    return kept | {"extra": extra, REJECTED_KEY: problem or "rejected"}
