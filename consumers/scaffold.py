"""What the rollout agent sees: prompts, the tool schema and how tool results are written.

Rollouts and training data must agree on these byte for byte (a student trained on one format
and served with another loses accuracy), so they live in one place and their hash is the
scaffold id recorded on every rollout.
"""

from __future__ import annotations

import hashlib
import json

SUBMIT_MARKER = "COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"

SYSTEM_PROMPT = """\
You are a software engineer working in a checkout of a code repository. You act through one \
tool, `bash`, which runs a command in the repository root and returns its exit code and output. \
Each command runs in a fresh shell: directory changes and variables do not persist. \
Think before each command. When the change is complete, run `echo {marker}` on its own."""

TASK_TEMPLATE = """\
{request}

Work in the repository to address this. Reproduce the problem first if you can, make the \
change, check it, then finish with `echo {marker}` as a command on its own."""

BASH_TOOL = {
    "type": "function",
    "function": {
        "name": "bash",
        "description": "Run a bash command in the repository root and return its output.",
        "parameters": {
            "type": "object",
            "properties": {"command": {"type": "string", "description": "The command to run."}},
            "required": ["command"],
        },
    },
}
TOOLS = [BASH_TOOL]

OBSERVATION_TEMPLATE = "<returncode>{returncode}</returncode>\n<output>\n{output}</output>"
FORMAT_ERROR_TEMPLATE = (
    "Your last reply had a malformed tool call ({error}). Call the bash tool again."
)
TIMEOUT_NOTE = "The command was killed after {timeout:g} seconds."


def system_prompt() -> str:
    return SYSTEM_PROMPT.format(marker=SUBMIT_MARKER)


def task_prompt(request: str) -> str:
    return TASK_TEMPLATE.format(request=request.strip(), marker=SUBMIT_MARKER)


def observation(output: str, returncode: int, limit_chars: int) -> str:
    """A tool result as the model sees it; long output keeps its head and tail."""
    if len(output) > limit_chars:
        half = limit_chars // 2
        cut = len(output) - 2 * half
        output = f"{output[:half]}\n[… {cut} characters cut …]\n{output[-half:]}"
    return OBSERVATION_TEMPLATE.format(returncode=returncode, output=output)


def format_error(error: str) -> str:
    """What the model is told after a reply whose tool call could not be parsed."""
    return FORMAT_ERROR_TEMPLATE.format(error=error)


def scaffold_id() -> str:
    """Changes whenever anything the model sees changes."""
    parts = [SYSTEM_PROMPT, TASK_TEMPLATE, json.dumps(TOOLS, sort_keys=True), OBSERVATION_TEMPLATE]
    parts.append(FORMAT_ERROR_TEMPLATE)
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:10]
    return f"mini-swe-agent-bash-{digest}"
