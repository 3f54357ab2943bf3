"""Does a training sample show the model exactly what its rollout scaffold shows it?

A student is served with the scaffold's prompts and tool schemas; if its training data used
other words, other schemas or another observation format, it learns a format it will never see.
`check_sample` compares one sample, field by field, with what `scaffold` produces, and returns
the first difference (field, line number, expected and actual line), or None. `check_rows`
checks each sample against the scaffold its `scaffold_id` names, among `known_scaffolds`.
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import Any

from trajlake.consumers.scaffold import render_system, render_task
from trajlake.consumers.scaffold_spec import Scaffold, builtin_names, load_scaffold


def template_pattern(template: str, fields: dict[str, str]) -> re.Pattern[str]:
    """A regex matching `template` as rendered, each {field} matching its sub-pattern."""
    parts = []
    for literal, name, _, _ in string.Formatter().parse(template):
        parts.append(re.escape(literal))  # {{ and }} come back as single braces
        if name is not None:
            parts.append(f"(?:{fields[name]})")
    return re.compile("".join(parts), re.DOTALL)


def first_difference(field: str, expected: str, actual: str) -> str | None:
    """`field: line N: expected …, got …` for the first line that differs, else None."""
    pairs = zip_longest(expected.splitlines(), actual.splitlines())
    for number, (want, got) in enumerate(pairs, start=1):
        if want != got:
            return f"{field}: line {number}: expected {want!r}, got {got!r}"
    return None


def check_sample(
    messages: Sequence[dict[str, Any]], tools: str, request: str, scaffold: Scaffold
) -> str | None:
    """The first way the sample differs from what `scaffold` sends at inference, or None."""
    expected_tools = json.dumps(scaffold.tool_schemas(), indent=2, sort_keys=True)
    try:
        actual_tools = json.dumps(json.loads(tools), indent=2, sort_keys=True)
    except json.JSONDecodeError as e:
        return f"tools: not JSON ({e})"
    problem = first_difference("tools", expected_tools, actual_tools)
    if problem:
        return problem
    if len(messages) < 2 or [m["role"] for m in messages[:2]] != ["system", "user"]:
        return "messages: must start with a system and a user message"
    task = messages[1]["content"] or ""
    problem = first_difference(
        "system prompt", render_system(scaffold), messages[0]["content"] or ""
    ) or first_difference("task prompt", render_task(scaffold, request, machine(task)), task)
    if problem:
        return problem
    if scaffold.text_actions:
        return _check_text_turns(messages[2:], scaffold)
    return _check_turns(messages[2:], scaffold)


def machine(task: str) -> dict[str, str] | None:
    """The machine a text scaffold's task prompt names ({system} {release} {version}
    {machine} on one line, as mini-swe-agent writes them), so that a sample generated on
    another machine is compared with the prompt it was really given; None when not found."""
    found = re.search(r"<system_information>\n(\S+) (\S+) (.*) (\S+)\n</system_information>", task)
    if not found:
        return None
    return dict(zip(("system", "release", "version", "machine"), found.groups(), strict=True))


def is_observation(content: str, scaffold: Scaffold) -> bool:
    """Whether `content` is a tool message the scaffold writes: its empty-output message, or
    the observation template around some output (never empty when empty_output is set: the
    scaffold then sends empty_output instead) and an integer return code."""
    spec = scaffold.observation
    if spec.empty_output and content == spec.empty_output:
        return True
    output = ".+" if spec.empty_output else ".*"
    pattern = template_pattern(spec.template, {"output": output, "returncode": r"-?\d+"})
    if pattern.fullmatch(content) is not None:
        return True
    if not spec.long_template:
        return False
    fields = {"head": ".*", "tail": ".*", "elided": r"\d+", "returncode": r"-?\d+"}
    return template_pattern(spec.long_template, fields).fullmatch(content) is not None


def _check_turns(messages: Sequence[dict[str, Any]], scaffold: Scaffold) -> str | None:
    schemas = {tool.name: tool.function for tool in scaffold.tools}
    format_error = template_pattern(scaffold.format_error, {"error": ".*", "found": r"\d+"})
    limit = scaffold.tool_calls_per_turn
    open_calls: set[str] = set()
    for number, message in enumerate(messages, start=3):
        role, content = message["role"], message.get("content") or ""
        where = f"message {number} ({role})"
        if role == "assistant":
            calls = message.get("tool_calls") or []
            if limit and len(calls) > limit:
                return f"{where}: {len(calls)} tool calls in one turn; the scaffold allows {limit}"
            for call in calls:
                problem = _check_call(call, schemas)
                if problem:
                    return f"{where}: {problem}"
                open_calls.add(call["id"])
        elif role == "tool":
            if message.get("tool_call_id") not in open_calls:
                return f"{where}: answers no earlier tool call ({message.get('tool_call_id')!r})"
            if not is_observation(content, scaffold):
                return f"{where}: not in the observation format: {content.splitlines()[:1]!r}"
        elif role == "user":
            if not format_error.fullmatch(content):
                return f"{where}: {_unexpected_user_turn(content, scaffold)}"
        else:
            return f"{where}: unknown role"
    return None


def _check_text_turns(messages: Sequence[dict[str, Any]], scaffold: Scaffold) -> str | None:
    """A text scaffold's turns: replies without tool calls, each followed by the result of its
    block (a user message in the observation format) or by the scaffold's format error."""
    text = scaffold.text_actions
    assert text is not None
    format_error = template_pattern(scaffold.format_error, {"error": ".*", "found": r"\d+"})
    for number, message in enumerate(messages, start=3):
        role, content = message["role"], message.get("content") or ""
        where = f"message {number} ({role})"
        if role == "assistant":
            if message.get("tool_calls"):
                blocks = f"```{text.language} blocks"
                return f"{where}: tool calls, but this scaffold's actions are {blocks}"
        elif role == "user":
            if not (is_observation(content, scaffold) or format_error.fullmatch(content)):
                return f"{where}: {_unexpected_user_turn(content, scaffold)}"
        else:
            return f"{where}: a {role} message, which a text scaffold never sends"
    return None


def _unexpected_user_turn(content: str, scaffold: Scaffold) -> str:
    review = scaffold.episode_end.review_on_submit
    if review and template_pattern(review, {"diff": ".*"}).fullmatch(content):
        return (
            "the review step as a user turn: this scaffold returns it as the tool result of "
            f"the first {scaffold.episode_end.submit_tool} call"
        )
    return f"a user turn the scaffold never sends: {content[:80]!r}"


def _check_call(call: dict[str, Any], schemas: dict[str, dict[str, Any]]) -> str | None:
    function = call.get("function") or {}
    name = function.get("name")
    if name not in schemas:
        return f"calls {name!r}, not one of the tools {sorted(schemas)}"
    try:
        arguments = json.loads(function.get("arguments") or "")
    except json.JSONDecodeError:
        return f"arguments are not JSON: {function.get('arguments')!r}"
    if not isinstance(arguments, dict):
        return f"arguments are not a JSON object: {function.get('arguments')!r}"
    missing = set(schemas[name]["parameters"].get("required", [])) - set(arguments)
    if missing:
        return f"arguments {function.get('arguments')!r} lack {sorted(missing)}"
    return None


@dataclass(frozen=True)
class Known:
    """A scaffold samples may name, and where it came from (for messages)."""

    scaffold: Scaffold
    source: str


def known_scaffolds(agent_scaffold: str, files: Sequence[str | Path] = ()) -> dict[str, Known]:
    """Scaffold id -> scaffold: the built-in scaffolds, the config's `agent.scaffold` (a name or
    a file) and `files`; ConfigError for one that cannot be read."""
    named = [(f"built-in {name}", name) for name in builtin_names()]
    named.append((f"agent.scaffold {agent_scaffold}", agent_scaffold))
    named += [(f"--scaffold {path}", path) for path in files]
    known: dict[str, Known] = {}
    for source, name in named:
        scaffold = load_scaffold(name)
        known.setdefault(scaffold.id(), Known(scaffold, source))
    return known


@dataclass
class CheckReport:
    """What `check_rows` found: samples matched per scaffold id, samples that differ (and the
    first difference), samples per scaffold id that no known scaffold has."""

    matched: Counter[str] = field(default_factory=Counter)
    differ: int = 0
    first: str = ""
    unknown: Counter[str] = field(default_factory=Counter)

    @property
    def samples(self) -> int:
        return sum(self.matched.values()) + self.differ + sum(self.unknown.values())


def check_rows(rows: Iterable[dict[str, Any]], known: dict[str, Known]) -> CheckReport:
    """Check each row (sample_id, messages, tools, request, scaffold_id) against its scaffold."""
    report = CheckReport()
    for row in rows:
        scaffold_id = row["scaffold_id"] or ""
        if scaffold_id not in known:
            report.unknown[scaffold_id] += 1
            continue
        scaffold = known[scaffold_id].scaffold
        problem = check_sample(row["messages"], row["tools"], row["request"], scaffold)
        if problem:
            report.differ += 1
            report.first = report.first or f"sample {row['sample_id']}: {problem}"
        else:
            report.matched[scaffold_id] += 1
    return report


def unknown_scaffold(scaffold_id: str, samples: int, known: dict[str, Known]) -> str:
    """What to do about samples whose scaffold id no known scaffold has."""
    searched = ", ".join(f"{k.source} ({i})" for i, k in known.items())
    return (
        f"{samples} samples were generated with scaffold {scaffold_id!r}, which is none of "
        f"the scaffolds known here: {searched}. Pass the scaffold file they were generated "
        "with: `trajlake mixture check NAME --scaffold FILE`"
    )
