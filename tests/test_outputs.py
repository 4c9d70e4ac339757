"""Output models derived from engine dataclasses (shared/outputs.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.outputs import output_model


@dataclass(frozen=True)
class Item:
    label: str = field(init=False)
    number: int
    note: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "label", f"item {self.number}")


@dataclass(frozen=True)
class Result:
    items: list[Item]
    best: Item | None
    count: int = field(default=0, metadata={"description": "How many items."})


def test_every_field_nested_and_computed_reaches_schema_and_content():
    model = output_model(Result, "ResultOutput")
    schema = model.model_json_schema()
    assert schema["title"] == "ResultOutput" and schema["type"] == "object"
    assert set(schema["required"]) == {"items", "best", "count"}  # an engine result always has every field
    assert schema["properties"]["count"]["description"] == "How many items."
    assert set(schema["$defs"]["Item"]["required"]) == {"label", "number", "note"}
    data = model.model_validate(Result([Item(1), Item(2, "two")], None, 2), from_attributes=True)
    assert data.model_dump(mode="json") == {
        "items": [{"label": "item 1", "number": 1, "note": None}, {"label": "item 2", "number": 2, "note": "two"}],
        "best": None, "count": 2}


def test_a_field_added_to_the_engine_reaches_the_output():
    @dataclass(frozen=True)
    class Grown(Result):
        added: str = "new"

    assert "added" in output_model(Grown).model_json_schema()["properties"]
    assert output_model(Result) is output_model(Result)  # one model per dataclass
