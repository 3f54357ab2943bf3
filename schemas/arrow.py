"""Arrow types derived from a record's Python annotations, so one class is the only definition."""

from __future__ import annotations

import types
import typing
from datetime import datetime

import pyarrow as pa
from pydantic import BaseModel

from trajlake.errors import SchemaError

_SCALARS: dict[type, pa.DataType] = {
    str: pa.string(),
    int: pa.int64(),
    float: pa.float64(),
    bool: pa.bool_(),
    bytes: pa.binary(),
    datetime: pa.timestamp("us", tz="UTC"),
}


def arrow_type(annotation: typing.Any) -> tuple[pa.DataType, bool]:
    """(Arrow type, nullable) for a field annotation."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            raise SchemaError(f"unions other than X | None have no Arrow type: {annotation}")
        return arrow_type(rest[0])[0], True
    if origin is typing.Literal:
        return arrow_type(type(args[0]))[0], False
    if origin is list:
        return pa.list_(arrow_type(args[0])[0]), False
    if annotation in _SCALARS:
        return _SCALARS[annotation], False
    raise SchemaError(f"no Arrow type for annotation {annotation}")


def arrow_schema(model: type[BaseModel]) -> pa.Schema:
    """The Arrow schema of a record class, field order preserved."""
    hints = typing.get_type_hints(model)
    fields = []
    for name in model.model_fields:
        dtype, nullable = arrow_type(hints[name])
        fields.append(pa.field(name, dtype, nullable=nullable))
    return pa.schema(fields)
