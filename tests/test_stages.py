"""The built-in stages: what `trajlake status` knows of them without building them."""

from __future__ import annotations

from pathlib import Path

from trajlake.config import load_config
from trajlake.stages import BUILTIN, BUILTIN_INPUTS, load_stage


def test_the_table_of_inputs_is_what_each_built_in_stage_reads(tmp_path: Path) -> None:
    config = load_config(None, [f"lake.root={tmp_path / 'lake'}", f"bus.path={tmp_path / 'b.db'}"])
    built = {name: load_stage(name, config).inputs for name in BUILTIN}
    assert {name: tuple(inputs) for name, inputs in built.items()} == BUILTIN_INPUTS
