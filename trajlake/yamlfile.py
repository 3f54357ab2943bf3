"""YAML files that hold one validated model: read, override, explain what is wrong.

Used by every file a user writes (trajlake.yaml, training configs, mixture specs, teacher
scripts), so all of them report problems the same way: the file, then each field and why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from trajlake.errors import ConfigError


def read_mapping(path: str | Path, what: str, error: type[Exception] = ConfigError) -> dict:
    """The top-level mapping of the YAML file at `path` (an empty file is an empty mapping)."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise error(f"{what} {path} not found") from None
    except yaml.YAMLError as e:
        raise error(f"{what} {path} is not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise error(f"{what} {path} must hold a mapping at the top level")
    return data


def apply_override(data: dict[str, Any], item: str) -> None:
    """Apply `dotted.key=value` to `data`; the value is parsed as a YAML scalar or list."""
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {item!r} must look like section.key=value")
    node = data
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {part} is not a section")
    node[leaf] = yaml.safe_load(raw) if raw else ""


def describe(error: ValidationError, header: str) -> str:
    """`header:` then one `  field.path: problem` line per validation error."""
    lines = [f"{header}:"]
    for err in error.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"  {field}: {err['msg']}")
    return "\n".join(lines)
