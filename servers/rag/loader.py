"""Collections: a JSON array of records, {"documents": [...]}, or JSON Lines, parsed as a stream
(ijson) so a 100 MB file never needs several times its size in memory. The body comes from
`content`, else `page_body`, else `text`; `title` and `url` are optional."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.errors import InputError
from shared.inputs import resolve_local_path

BODY_FIELDS = ("content", "page_body", "text")


@dataclass(frozen=True)
class Record:
    index: int  # 0-based position in the file: the reference's Document Index
    title: str
    body: str
    url: str | None


def collection_path(raw: str) -> Path:
    """The collection a tool argument names, inside the allowed roots."""
    text = raw.strip()
    if text.endswith(".chunks.db"):
        text = text[: -len(".chunks.db")]  # the reference's cache file: use the JSON beside it
    return resolve_local_path(text, kind="collection")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float | bool):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def _record(index: int, raw: Any) -> Record:
    if not isinstance(raw, dict):
        return Record(index, "", _text(raw), None)
    body = next((_text(raw[f]) for f in BODY_FIELDS if raw.get(f) not in (None, "")), "")
    url = raw.get("url")
    return Record(index, _text(raw.get("title")).strip(), body, _text(url) if url else None)


def _first_char(path: Path) -> str:
    with open(path, "rb") as handle:
        head = handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head[:1].decode("ascii", errors="replace")


def iter_records(path: Path) -> Iterator[Record]:
    import ijson

    first = _first_char(path)
    if first == "":
        raise InputError("the collection file is empty")
    if first not in "[{":
        raise InputError("the collection is not JSON: expected an array, {\"documents\": [...]} or JSON Lines")
    try:
        if first == "[":
            with open(path, "rb") as handle:
                for index, raw in enumerate(ijson.items(handle, "item", use_float=True)):
                    yield _record(index, raw)
            return
        with open(path, "rb") as handle:
            head = handle.readline()
        try:
            one = json.loads(head)
            # JSON Lines: the first line alone is a whole record (anything else is one JSON object).
            lines = isinstance(one, dict) and "documents" not in one and \
                any(key in one for key in (*BODY_FIELDS, "title", "url"))
        except ValueError:
            lines = False
        if lines:
            with open(path, "rb") as handle:
                index = 0
                for number, line in enumerate(handle, start=1):
                    if line.strip():  # blank lines are not records
                        try:
                            yield _record(index, json.loads(line))
                        except ValueError:
                            raise InputError(f"line {number} of the JSON Lines file is not valid JSON") from None
                        index += 1
            return
        found = False
        with open(path, "rb") as handle:
            for index, raw in enumerate(ijson.items(handle, "documents.item", use_float=True)):
                found = True
                yield _record(index, raw)
        if not found:
            raise InputError("the JSON object has no \"documents\" array: give an array of records, "
                             "{\"documents\": [...]} or JSON Lines")
    except ijson.JSONError as exc:
        raise InputError(f"the collection is not valid JSON ({str(exc)[:120]})") from None
