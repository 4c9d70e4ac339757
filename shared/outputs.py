"""Tool output models derived from engine dataclasses, so a field added to an engine's result
reaches the output schema and the structured content without a hand-written copy.

`output_model(Result)` is a pydantic model with the dataclass's fields, types and descriptions
(`field(metadata={"description": ...})`); dataclasses nested in the types (`list[Passage]`,
`Summary | None`) become models too. Every field is required in the schema: an engine result always
has all its fields, defaults only spare the engine from spelling them out. Fill a model with
`Model.model_validate(result, from_attributes=True)`, which reads attributes, so fields computed
in `__post_init__` (`field(init=False)`) are included as well.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import types
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model


class EngineOutput(BaseModel):
    model_config = ConfigDict(from_attributes=True)


def _translate(hint: Any) -> Any:
    """`hint` with every dataclass in it replaced by its output model."""
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return output_model(hint)
    origin = typing.get_origin(hint)
    arguments = typing.get_args(hint)
    if origin is None or not arguments:
        return hint
    translated = tuple(_translate(argument) for argument in arguments)
    if origin in (typing.Union, types.UnionType):
        return functools.reduce(operator.or_, translated)
    if origin is typing.Annotated:
        return typing.Annotated[(translated[0], *arguments[1:])]
    return origin[translated]


@functools.cache
def output_model(source: type, name: str | None = None) -> type[BaseModel]:
    """The output model of the engine dataclass `source` (one model per dataclass and name)."""
    if not (dataclasses.is_dataclass(source) and isinstance(source, type)):
        raise TypeError(f"{source!r} is not a dataclass")
    hints = typing.get_type_hints(source, include_extras=True)
    fields: dict[str, Any] = {}
    for item in dataclasses.fields(source):
        description = item.metadata.get("description")
        fields[item.name] = (_translate(hints[item.name]), Field(description=description))
    return create_model(name or source.__name__, __base__=EngineOutput, **fields)
