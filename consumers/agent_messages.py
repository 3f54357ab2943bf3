"""The agent's messages between mini-swe-agent, the teacher and the lake: what is kept of a
trajectory, what is sent back to the teacher, and how a malformed reply is kept."""

from __future__ import annotations

from typing import Any

from trajlake.teacher.reply import SOURCE_KEY


def clean_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The trajectory in plain OpenAI format: no mini-swe-agent bookkeeping, no exit marker.

    Assistant turns keep `tool_call_source` (where their calls were read: native, hermes, …),
    which mixture exports leave out with every other non-OpenAI key.
    """
    keep = ("role", "content", "reasoning_content", "tool_calls", "tool_call_id", SOURCE_KEY)
    return [
        {k: m[k] for k in keep if m.get(k) not in (None, "", [])}
        | {"content": m.get("content") or ""}
        for m in messages
        if m.get("role") != "exit"
    ]


def for_api(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What is sent back to the teacher: earlier reasoning stays out, as chat templates do, and
    so does trajlake's own bookkeeping (a strict server rejects keys it does not know)."""
    drop = ("extra", "reasoning_content", SOURCE_KEY)
    return [{k: v for k, v in m.items() if k not in drop} for m in messages]


def without_calls(message: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """A malformed reply kept in the trajectory as text (its calls cannot be answered)."""
    return {k: v for k, v in message.items() if k != "tool_calls"} | {"extra": extra}
