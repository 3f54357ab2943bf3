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

#: The {fields} each template may use.
_PLACEHOLDERS: dict[str, set[str]] = {
    "system_prompt": {"marker"},
    "task_template": {"request", "marker"},
    "format_error": {"error"},
    "template": {"output", "returncode"},
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

    @field_validator("template", "empty_output", "error", "timeout", "truncated")
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
        "({error}: what was wrong)"
    )
    episode_end: EpisodeEnd = Field(description="what ends the episode")
    tool_calls_per_turn: int = Field(
        0,
        ge=0,
        description="the most tool calls one reply may make (SWE-agent: 1); more is a format "
        "error. 0: any number, run in order",
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
        return self

    def tool_schemas(self) -> list[dict[str, Any]]:
        """The tools as sent to the endpoint (and recorded with every rollout)."""
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
        json.dumps(scaffold.tool_schemas(), sort_keys=True),
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
