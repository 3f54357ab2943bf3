"""A scaffold as data: everything the agent model sees, and how its actions run.

A `Scaffold` is read from a YAML file (the built-in ones live in consumers/scaffolds/, users
bring their own) and validated; `scaffold_id` names it on every rollout.

The id is `NAME-<10 hex>`, a SHA-256 over every field but `name`. To keep the ids existing lakes
hold, the hash takes the five parts the historical id took (system prompt, task template,
tool schemas, observation template, format-error reply, joined by \\x1f) and appends, only when
there are any, the other fields whose values differ from `HISTORICAL` (the values the bash-only
scaffold always had, before they were data). The built-in mini-bash scaffold therefore keeps its
id, `mini-swe-agent-bash-dc4f38bfbe`, and any change to any field of any scaffold changes the
id. `HISTORICAL` is part of the id formula: it never changes.
"""

from __future__ import annotations

import hashlib
import json
import string
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from trajlake.errors import ConfigError
from trajlake.tools import TOOLS as BUILTIN_TOOLS
from trajlake.yamlfile import describe, read_mapping

SCAFFOLD_DIR = Path(__file__).parent / "scaffolds"

#: What the machine is, as mini-swe-agent's text configurations show it (platform.uname()).
MACHINE = {"system", "release", "version", "machine"}
#: The {fields} each template may use.
_PLACEHOLDERS: dict[str, set[str]] = {
    "system_prompt": {"marker"},
    "task_template": {"request", "marker", *MACHINE},
    "format_error": {"error", "found"},
    "template": {"output", "returncode"},
    "long_template": {"head", "tail", "elided", "returncode"},
    "wrong_count": {"expected", "found"},
    "empty_output": set(),
    "error": {"output"},
    "timeout": {"timeout"},
    "truncated": {"cut"},
    "review_on_submit": {"diff"},
}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _check_fields(template: str, allowed: set[str]) -> str:
    """`template` unchanged, or ValueError naming a {field} it may not use."""
    try:
        used = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as e:
        raise ValueError(f"not a valid template ({e}); write {{{{ and }}}} for braces") from None
    if unknown := sorted(used - allowed):
        takes = ", ".join(f"{{{a}}}" for a in sorted(allowed)) or "no {fields}"
        raise ValueError(f"unknown placeholder(s) {unknown}: it takes {takes}")
    return template


class ToolSpec(_Frozen):
    """One tool the model is offered, and the built-in implementation that runs its calls."""

    function: dict[str, Any] = Field(
        description="the OpenAI function schema the model sees: name, description, "
        "parameters (a JSON schema of type object)"
    )
    implementation: str = Field(
        "",
        description="the built-in tool (trajlake.tools.TOOLS: bash, str_replace_editor, submit, "
        "think) that executes a call; empty: the one named like the function",
    )

    @field_validator("function")
    @classmethod
    def _check_function(cls, value: dict[str, Any]) -> dict[str, Any]:
        name = value.get("name")
        if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
            raise ValueError("needs a name of letters, digits, _ and -")
        parameters = value.get("parameters")
        if not isinstance(parameters, dict) or parameters.get("type") != "object":
            raise ValueError("needs parameters: a JSON schema with type: object")
        return value

    @model_validator(mode="after")
    def _check_implementation(self) -> ToolSpec:
        if self.runs_with() not in BUILTIN_TOOLS:
            known = ", ".join(sorted(BUILTIN_TOOLS))
            raise ValueError(
                f"implementation {self.runs_with()!r} is not a built-in tool (one of: {known})"
            )
        return self

    @property
    def name(self) -> str:
        return self.function["name"]

    def runs_with(self) -> str:
        """The name of the built-in tool that executes this tool's calls."""
        return self.implementation or self.name

    def schema_for_model(self) -> dict[str, Any]:
        """The tool as sent to an OpenAI-compatible endpoint (`tools=[...]`)."""
        return {"type": "function", "function": self.function}


class ObservationSpec(_Frozen):
    """How one tool result is written into the tool message the model reads."""

    template: str = Field(
        description="the tool message: {output} (the tool's output, after the notes below) "
        "and {returncode} (a command's exit status; 0 for tools that have none)"
    )
    empty_output: str = Field(
        "",
        description="the whole tool message when a tool printed nothing (SWE-agent's "
        "no-output note); empty: the template with empty output",
    )
    error: str = Field(
        "{output}", description="how a failed call's output is shown ({output}: its message)"
    )
    timeout: str = Field(
        "The command was killed after {timeout:g} seconds.",
        description="added on its own line after the output of a command killed at the "
        "sandbox's time limit ({timeout}: seconds it ran)",
    )
    max_chars: int = Field(
        10_000,
        ge=2,
        description="longer output keeps its first and last max_chars/2 characters, with the "
        "truncated note between them on a line of its own",
    )
    truncated: str = Field(
        "[… {cut} characters cut …]",
        description="the note put where long output was cut ({cut}: characters left out)",
    )
    long_template: str = Field(
        "",
        description="the whole tool message when the output has max_chars or more characters, "
        "instead of cutting it into the template (mini-swe-agent's text configurations): "
        "{head} and {tail} (the first and last max_chars/2 characters), {elided} (characters "
        "left out: the length less max_chars), {returncode}. Empty: cut with `truncated`",
    )

    @field_validator("template", "empty_output", "error", "timeout", "truncated", "long_template")
    @classmethod
    def _placeholders(cls, value: str, info: ValidationInfo) -> str:
        return _check_fields(value, _PLACEHOLDERS[info.field_name])


class EpisodeEnd(_Frozen):
    """What ends an episode: a call of a submit tool, or a marker a bash command prints."""

    submit_tool: str = Field(
        "", description="the tool (implementation submit) whose call ends the episode"
    )
    marker: str = Field(
        "",
        description="a command whose output starts with this line, exit status 0, ends the "
        "episode (e.g. `echo MARKER`); the prompts name it as {marker}",
    )
    review_on_submit: str = Field(
        "",
        description="shown once, in place of ending, at the first submit (a review step such "
        "as SWE-agent's review_on_submit; {diff}: the patch so far); the next submit ends the "
        "episode. Empty: none",
    )

    @field_validator("review_on_submit")
    @classmethod
    def _placeholders(cls, value: str, info: ValidationInfo) -> str:
        return _check_fields(value, _PLACEHOLDERS[info.field_name])


class TextActions(_Frozen):
    """Actions written as fenced code blocks in the reply's text instead of tool calls (for
    models served without a tool-call parser, as mini-swe-agent's text-based configurations)."""

    language: str = Field(
        description="the block's language tag: a block is ```TAG, a newline, the command, a "
        "newline and ``` (mini-swe-agent's action_regex)",
        pattern=r"^[A-Za-z0-9_.+-]+$",
    )
    blocks_per_reply: int = Field(1, ge=1, description="how many blocks every reply must hold")
    tool: str = Field(
        "bash", description="the tool (of `tools`, implementation bash) that runs each block"
    )
    wrong_count: str = Field(
        "Expected exactly {expected} action, found {found}.",
        description="the {error} of format_error for a reply with another number of blocks "
        "({expected}: blocks_per_reply, {found}: how many it held)",
    )

    @field_validator("wrong_count")
    @classmethod
    def _placeholders(cls, value: str, info: ValidationInfo) -> str:
        return _check_fields(value, _PLACEHOLDERS[info.field_name])


class Scaffold(_Frozen):
    """Everything the agent model sees and how its actions run; its id names it on rollouts."""

    name: str = Field(
        description="short readable name, the id's prefix (the id is NAME-<10 hex>)",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
    )
    system_prompt: str = Field(description="the system message ({marker}: episode_end.marker)")
    task_template: str = Field(
        description="the first user message ({request}: the task or PR text, {marker})"
    )
    tools: list[ToolSpec] = Field(min_length=1, description="the tools offered, in this order")
    observation: ObservationSpec = Field(description="how tool results are written")
    format_error: str = Field(
        description="the user message after a reply whose tool call could not be parsed "
        "({error}: what was wrong; {found}: how many actions the reply held)"
    )
    episode_end: EpisodeEnd = Field(description="what ends the episode")
    tool_calls_per_turn: int = Field(
        0,
        ge=0,
        description="the most tool calls one reply may make (SWE-agent: 1); more is a format "
        "error. 0: any number, run in order",
    )
    text_actions: TextActions | None = Field(
        None,
        description="actions are fenced blocks in the reply's text, not tool calls: no tools "
        "are offered to the endpoint (`tools` then only names what runs a block) and results "
        "come back as user messages. Empty: tool calling",
    )

    @field_validator("system_prompt", "task_template", "format_error")
    @classmethod
    def _placeholders(cls, value: str, info: ValidationInfo) -> str:
        return _check_fields(value, _PLACEHOLDERS[info.field_name])

    @model_validator(mode="after")
    def _check_tools(self) -> Scaffold:
        names = [tool.name for tool in self.tools]
        if len(set(names)) != len(names):
            raise ValueError(f"tools: two tools share a name ({', '.join(names)})")
        end = self.episode_end
        if not end.submit_tool and not end.marker:
            raise ValueError("episode_end: set submit_tool, marker or both")
        runs = {tool.name: tool.runs_with() for tool in self.tools}
        if end.submit_tool and runs.get(end.submit_tool) != "submit":
            raise ValueError(
                f"episode_end.submit_tool: {end.submit_tool!r} is not a tool with "
                "implementation submit"
            )
        if end.marker and "bash" not in runs.values():
            raise ValueError("episode_end.marker: needs a tool with implementation bash")
        text = self.text_actions
        if text and runs.get(text.tool) != "bash":
            raise ValueError(
                f"text_actions.tool: {text.tool!r} is not a tool with implementation bash"
            )
        if text and end.submit_tool:
            raise ValueError("episode_end.submit_tool: text actions end with a marker only")
        return self

    def tool_schemas(self) -> list[dict[str, Any]]:
        """The tools as sent to the endpoint (and recorded with every rollout): none when the
        actions are text."""
        return [] if self.text_actions else self.declared_tools()

    def declared_tools(self) -> list[dict[str, Any]]:
        """Every tool of the scaffold, offered or not (the id hashes these)."""
        return [tool.schema_for_model() for tool in self.tools]

    def id(self) -> str:
        """NAME-<10 hex>: changes whenever anything the model sees or how it runs changes."""
        return scaffold_id(self)


#: The values the bash-only scaffold had before scaffolds were data; part of the id formula
#: (a field equal to its value here is left out of the hash), so it never changes.
HISTORICAL: dict[str, Any] = {
    "observation.empty_output": "",
    "observation.error": "{output}",
    "observation.timeout": "The command was killed after {timeout:g} seconds.",
    "observation.max_chars": 10_000,
    "observation.truncated": "[… {cut} characters cut …]",
    "episode_end.submit_tool": "",
    "episode_end.marker": "COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT",
    "episode_end.review_on_submit": "",
    "tools.implementation": None,  # every tool run by the built-in tool of its own name
    "tool_calls_per_turn": 0,
    "observation.long_template": "",
    "text_actions": None,
}


def _later_fields(scaffold: Scaffold) -> dict[str, Any]:
    """Fields the historical id did not hash, where they differ from HISTORICAL."""
    data = scaffold.model_dump(mode="json")
    values: dict[str, Any] = {
        f"{section}.{key}": value
        for section in ("observation", "episode_end")
        for key, value in data[section].items()
        if key != "template"
    }
    values["tool_calls_per_turn"] = data["tool_calls_per_turn"]
    values["text_actions"] = data["text_actions"]
    if any(tool.runs_with() != tool.name for tool in scaffold.tools):
        values["tools.implementation"] = [tool.runs_with() for tool in scaffold.tools]
    else:
        values["tools.implementation"] = None
    return {key: value for key, value in values.items() if HISTORICAL.get(key) != value}


def scaffold_id(scaffold: Scaffold) -> str:
    """The id recorded on rollouts (see the module docstring for why it is hashed this way)."""
    parts = [
        scaffold.system_prompt,
        scaffold.task_template,
        json.dumps(scaffold.declared_tools(), sort_keys=True),
        scaffold.observation.template,
        scaffold.format_error,
    ]
    if later := _later_fields(scaffold):
        parts.append(json.dumps(later, sort_keys=True))
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:10]
    return f"{scaffold.name}-{digest}"


def builtin_names() -> list[str]:
    return sorted(path.stem for path in SCAFFOLD_DIR.glob("*.yaml"))


def scaffold_path(name_or_path: str | Path) -> Path:
    """The file of a built-in scaffold name, or the path itself."""
    text = str(name_or_path)
    if text in builtin_names():
        return SCAFFOLD_DIR / f"{text}.yaml"
    path = Path(text)
    if not path.suffix and not path.exists():
        raise ConfigError(
            f"scaffold {text!r} is neither a built-in scaffold ({', '.join(builtin_names())}) "
            "nor a file: write one starting from `trajlake scaffold example`"
        )
    return path


def load_scaffold(name_or_path: str | Path) -> Scaffold:
    """A built-in scaffold by name, or a scaffold YAML file; ConfigError naming each bad field."""
    path = scaffold_path(name_or_path)
    data = read_mapping(path, "scaffold file")
    try:
        return Scaffold.model_validate(data)
    except ValidationError as e:
        raise ConfigError(describe(e, f"invalid scaffold {path}")) from None
