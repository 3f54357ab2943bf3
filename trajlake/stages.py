"""Where stages are found: built-in names, or `package.module:factory` for your own.

A factory takes the resolved `Config` and returns a `Stage` (or is a `Stage` already).
"""

from __future__ import annotations

import importlib

from trajlake.config import Config
from trajlake.errors import ConfigError
from trajlake.stage import Stage

#: built-in stage name -> "module:factory", in pipeline order.
BUILTIN: dict[str, str] = {
    "function_sampler": "trajlake.consumers.function_sampler:make_stage",
    "rollout1": "trajlake.consumers.rollout:make_rollout1",
    "pr_writer": "trajlake.consumers.pr_writer:make_stage",
    "rollout2": "trajlake.consumers.rollout:make_rollout2",
    "verifier": "trajlake.consumers.verifier:make_stage",
    "tester": "trajlake.consumers.tester:make_stage",
    "filter": "trajlake.consumers.filter:make_stage",
    "dagger": "trajlake.consumers.dagger:make_stage",
}

#: What each built-in stage reads, known without building it: building rollout1 imports the
#: agent, the OpenAI client and tree-sitter (~3 s), which `trajlake status` should not pay.
#: tests/test_stages.py checks this table against the stages themselves.
BUILTIN_INPUTS: dict[str, tuple[str, ...]] = {
    "function_sampler": ("commits",),
    "rollout1": ("tasks", "replay"),
    "pr_writer": ("rollouts.t1",),
    "rollout2": ("prs", "replay"),
    "verifier": ("rollouts.t2",),
    "tester": ("rollouts.t1", "rollouts.t2"),
    "filter": ("rollouts.t1", "rollouts.t2"),
    "dagger": ("dagger.tasks",),
}


def load_stage(ref: str, config: Config) -> Stage:
    """A built-in stage by name, or `module:attr` naming a Stage or a factory(config) -> Stage."""
    target = BUILTIN.get(ref, ref)
    module_name, sep, attr = target.partition(":")
    if not sep:
        known = ", ".join(sorted(BUILTIN)) or "(none yet)"
        raise ConfigError(
            f"unknown stage {ref!r}: built-in stages are {known}; "
            "or name your own as package.module:factory"
        )
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"cannot load stage {ref!r}: {e}") from None
    stage = obj if isinstance(obj, Stage) else obj(config)
    if not isinstance(stage, Stage):
        raise ConfigError(f"{ref!r} gave a {type(stage).__name__}, not a trajlake Stage")
    return stage
