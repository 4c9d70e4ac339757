"""Tool output models from engine types, so a field added to an engine's result reaches the output
schema and the structured content without a hand-written copy. Two forms, for two situations:

- The engine dataclass is shown as it is: `output_model(Result)` is a pydantic model with the
  dataclass's fields, types and descriptions (`field(metadata={"description": ...})`); dataclasses
  nested in the types (`list[Passage]`, `Summary | None`) become models too. Every field is
  required in the schema: an engine result always has all its fields. Fill it with
  `Model.model_validate(result, from_attributes=True)`, which reads attributes, so fields computed
  in `__post_init__` (`field(init=False)`) are included as well.
- The output renames, hides or adds fields: `@mirrors(EngineType, leave_out={...})` on a hand-written
  output model checks, when the server module is imported, that the model declares every field of
  the engine dataclass except those left out, each with the reason it is not shown under its own
  name. `from_engine(Model, value, **more)` then fills the model from the engine value's attributes
  (nested engine values too, properties included), with `more` for what the engine does not carry.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, create_model

M = TypeVar("M", bound=BaseModel)


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

def mirrors(engine: type, *, leave_out: dict[str, str] | None = None) -> Callable[[type[M]], type[M]]:
    """Check that the decorated model shows every field of the dataclass `engine` (see the module doc)."""
    left_out = dict(leave_out or {})

    def check(model: type[M]) -> type[M]:
        fields = {f.name for f in dataclasses.fields(engine)}
        missing = fields - set(model.model_fields) - set(left_out)
        if missing:
            raise TypeError(f"{model.__name__} does not show {engine.__name__}.{', '.join(sorted(missing))}: add "
                            "the field to the output model, or name it in leave_out with the reason")
        stale = set(left_out) - fields
        if stale:
            raise TypeError(f"{model.__name__} leaves out {', '.join(sorted(stale))}, which {engine.__name__} "
                            "does not have")
        return model

    return check


def from_engine(model: type[M], *values: Any, **more: Any) -> M:
    """`model` filled from `more`, then from the attributes of `values` (the first that has the field)."""
    data: dict[str, Any] = {}
    for name in model.model_fields:
        if name in more:
            data[name] = more[name]
            continue
        for value in values:
            if hasattr(value, name):
                data[name] = getattr(value, name)
                break
    return model.model_validate(data, from_attributes=True)
