"""Output models read from engine types, so that a field added to an engine cannot be left out of a
tool's output unnoticed.

`@mirrors(EngineType, leave_out={...})` on an output model checks, when the server module is
imported, that the model declares every field of the engine dataclass except those left out, each
with the reason it is not shown under its own name. `from_engine(Model, value, **more)` then fills
the model from the engine value's attributes (nested engine values too, properties included), with
`more` for what the engine does not carry (the input's label, a page of text, renamed fields).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


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
