"""The script a teacher double plays (format: see `trajlake.teacher.double`).

Everything here is a pure function of the script and the request's messages: which session
answers, which of its turns is due, and the assistant message that turn renders to.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from trajlake.errors import TeacherError
from trajlake.yamlfile import describe, read_mapping

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


class ScriptError(TeacherError):
    """A teacher double script cannot be read or does not follow the format."""


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FailSpec(_Strict):
    status: int = Field(500, ge=400, le=599, description="HTTP status of the injected failure")
    times: int = Field(1, ge=1, description="fail this many requests per conversation, then answer")
    hang_s: float = Field(0.0, ge=0, description="wait this long before failing")


class ToolCallSpec(_Strict):
    name: str
    arguments: dict[str, Any] | str = Field(
        default_factory=dict, description="an object (sent as JSON) or a raw, maybe invalid, string"
    )


class TurnSpec(_Strict):
    reasoning: str = ""
    content: str = ""
    tool_calls: list[ToolCallSpec] = Field(default_factory=list)
    reasoning_inline: bool | None = Field(None, description="None: as the session says")
    finish_reason: str | None = Field(None, description="None: tool_calls or stop")
    fail: FailSpec | None = None
    hang_s: float | None = Field(None, ge=0, description="None: as the session says")


class SessionSpec(_Strict):
    name: str
    match: str = Field(description="regex searched in the text chosen by match_on (DOTALL)")
    match_on: Literal["first_user", "last_user", "system", "all"] = "first_user"
    reasoning_inline: bool = False
    fail: FailSpec | None = None
    hang_s: float = Field(0.0, ge=0)
    turns: list[TurnSpec] = Field(min_length=1)

    @field_validator("match")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as e:
            raise ValueError(f"not a valid regular expression: {e}") from None
        return value


class Script(_Strict):
    model: str = Field("teacher", description="the model name GET /v1/models reports")
    sessions: list[SessionSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> Script:
        names = [s.name for s in self.sessions]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"session names must be unique; repeated: {', '.join(duplicates)}")
        return self


def load_script(path: str | Path) -> Script:
    """Read and validate a YAML (or JSON) script."""
    data = read_mapping(path, "teacher double script", ScriptError)
    try:
        return Script.model_validate(data)
    except ValidationError as e:
        header = (
            f"teacher double script {path} is invalid (the format is described in the "
            "docstring of trajlake.teacher.double)"
        )
        raise ScriptError(describe(e, header)) from None


@dataclass(frozen=True)
class Match:
    """The session that answers a request, the index of the turn due, and the regex groups."""

    session: SessionSpec
    turn: int
    groups: dict[str, str]


def message_text(message: dict[str, Any]) -> str:
    """The text of a message whose content is a string or a list of parts."""
    content = message.get("content")
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def find_session(script: Script, messages: list[dict[str, Any]]) -> Match | None:
    """The first session whose regex matches; its due turn is the number of assistant
    messages after the matched message (all of them for match_on=all)."""
    for session in script.sessions:
        index, text = _target(session.match_on, messages)
        if index is None:
            continue
        found = re.search(session.match, text, re.DOTALL)
        if found:
            turn = sum(1 for m in messages[index + 1 :] if m.get("role") == "assistant")
            groups = {k: v for k, v in found.groupdict().items() if v is not None}
            return Match(session, turn, groups)
    return None


def _target(match_on: str, messages: list[dict[str, Any]]) -> tuple[int | None, str]:
    if match_on == "all":
        return -1, "\n".join(f"{m.get('role')}: {message_text(m)}" for m in messages)
    role = "system" if match_on == "system" else "user"
    indices = [i for i, m in enumerate(messages) if m.get("role") == role]
    if not indices:
        return None, ""
    index = indices[-1] if match_on == "last_user" else indices[0]
    return index, message_text(messages[index])


def fill(value: Any, groups: dict[str, str]) -> Any:
    """Replace `{{name}}` with the named regex group, in strings nested anywhere in `value`."""
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda m: groups.get(m.group(1), m.group(0)), value)
    if isinstance(value, dict):
        return {k: fill(v, groups) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, groups) for v in value]
    return value


def render(match: Match, seed: str) -> tuple[dict[str, Any], str]:
    """The assistant message and finish reason of the due turn; `seed` makes tool-call ids."""
    session, turn = match.session, match.session.turns[match.turn]
    reasoning, content = fill(turn.reasoning, match.groups), fill(turn.content, match.groups)
    inline = session.reasoning_inline if turn.reasoning_inline is None else turn.reasoning_inline
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if reasoning and inline:
        message["content"] = f"<think>\n{reasoning}\n</think>\n\n{content}"
    elif reasoning:
        message["reasoning_content"] = reasoning
    calls = []
    for i, spec in enumerate(turn.tool_calls):
        arguments = fill(spec.arguments, match.groups)
        digest = hashlib.sha256(f"{seed}:{match.turn}:{i}".encode()).hexdigest()[:16]
        calls.append(
            {
                "id": f"call_{digest}",
                "type": "function",
                "function": {
                    "name": spec.name,
                    "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
                },
            }
        )
    if calls:
        message["tool_calls"] = calls
        message["content"] = message["content"] or None
    return message, turn.finish_reason or ("tool_calls" if calls else "stop")


def as_text_actions(script: Script, language: str) -> Script:
    """The same script for a scaffold whose actions are fenced blocks (text_actions): each
    turn's bash calls become ```LANGUAGE blocks in its content, after its reasoning as a
    THOUGHT paragraph (as text-only models write it); a call whose arguments are a raw string
    (a malformed call) becomes text with no block, a format error there too."""
    sessions = []
    for session in script.sessions:
        turns = []
        for turn in session.turns:
            if not turn.tool_calls:
                turns.append(turn)
                continue
            parts = [f"THOUGHT: {turn.reasoning}".strip()] if turn.reasoning else []
            for call in turn.tool_calls:
                if isinstance(call.arguments, str):
                    parts.append(call.arguments)
                else:
                    parts.append(f"```{language}\n{call.arguments.get('command', '')}\n```")
            text = "\n\n".join([turn.content, *parts] if turn.content else parts)
            update = {"reasoning": "", "content": text, "tool_calls": []}
            turns.append(turn.model_copy(update=update))
        sessions.append(session.model_copy(update={"turns": turns}))
    return script.model_copy(update={"sessions": sessions})
