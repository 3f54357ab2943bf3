"""What the rollout agent sees: prompts, the tool schema and how tool results are written.

Rollouts and training data must agree on these byte for byte (a student trained on one format
and served with another loses accuracy), so they live in one place, a scaffold (data:
consumers/scaffolds/*.yaml, see scaffold_spec.py), and its hash is the scaffold id recorded on
every rollout. The functions here render any scaffold; `MINI_BASH` is the default
(`agent.scaffold`), whose marker (`SUBMIT_MARKER`) rollouts of every scaffold may still print.
"""

from __future__ import annotations

import functools
import platform

from trajlake.consumers.scaffold_spec import Scaffold, load_scaffold

DEFAULT = "mini-bash"
MINI_BASH: Scaffold = load_scaffold(DEFAULT)

SUBMIT_MARKER = MINI_BASH.episode_end.marker


def render_system(scaffold: Scaffold) -> str:
    return scaffold.system_prompt.format(marker=scaffold.episode_end.marker)


def render_task(scaffold: Scaffold, request: str, machine: dict[str, str] | None = None) -> str:
    """The first user message; {system} {release} {version} {machine} are this machine's (the
    sandbox shares its kernel), or `machine`'s."""
    return scaffold.task_template.format(
        request=request.strip(), marker=scaffold.episode_end.marker, **(machine or this_machine())
    )


@functools.cache
def this_machine() -> dict[str, str]:
    """platform.uname() as mini-swe-agent's text configurations show it."""
    uname = platform.uname()
    return {
        "system": uname.system,
        "release": uname.release,
        "version": uname.version,
        "machine": uname.machine,
    }


def render_observation(
    scaffold: Scaffold,
    output: str,
    returncode: int | None = None,
    limit_chars: int | None = None,
    error: bool = False,
) -> str:
    """A tool result as the model sees it; long output keeps its head and tail."""
    spec = scaffold.observation
    limit = spec.max_chars if limit_chars is None else limit_chars
    if not output and spec.empty_output:
        return spec.empty_output
    if spec.long_template and len(output) >= limit:
        half = limit // 2
        return spec.long_template.format(
            head=output[:half], tail=output[-half:], elided=len(output) - limit,
            returncode=returncode or 0,
        )  # fmt: skip
    if len(output) > limit:
        half = limit // 2
        note = spec.truncated.format(cut=len(output) - 2 * half)
        output = f"{output[:half]}\n{note}\n{output[-half:]}"
    if error:
        output = spec.error.format(output=output)
    return spec.template.format(returncode=returncode or 0, output=output)


def render_format_error(scaffold: Scaffold, error: str, found: int = 0) -> str:
    return scaffold.format_error.format(error=error, found=found)


def scaffold_id() -> str:
    """Changes whenever anything the model sees changes."""
    return MINI_BASH.id()
