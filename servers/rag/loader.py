"""Collections: a JSON array of records, {"documents": [...]}, or JSON Lines, parsed as a stream
(ijson) so a 100 MB file never needs several times its size in memory. The body comes from
`content`, else `page_body`, else `text`; `title` and `url` are optional.

Every byte is measured before a parser sees it (shared/bounds.py): records are flat objects, so
nesting past MAX_DEPTH levels, a string or JSON Lines line past MAX_VALUE_BYTES, or a number past
bounds.MAX_JSON_NUMBER characters is refused with a message naming it, instead of letting the
parser recurse or allocate without bound."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from shared.bounds import CappedJsonStream, check_json_depth, json_depth
from shared.errors import InputError
from shared.inputs import resolve_local_path

BODY_FIELDS = ("content", "page_body", "text")
MAX_DEPTH = 64  # levels of arrays and objects; a record with nested metadata needs a handful
# One string or one JSON Lines line: a document longer than most books. ijson's time grows with the
# square of a string's length (16 MB took 0.7 s here, 64 MB 12 s).
MAX_VALUE_BYTES = 16 * 2**20
WHAT = "the collection file"


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


def _capped(handle: BinaryIO) -> CappedJsonStream:
    return CappedJsonStream(handle, WHAT, max_depth=MAX_DEPTH, max_string=MAX_VALUE_BYTES)


def _read_line(handle: BinaryIO, number: int) -> bytes:
    """One JSON Lines line, read no further than the value cap."""
    line = handle.readline(MAX_VALUE_BYTES + 1)
    if len(line) > MAX_VALUE_BYTES:
        raise InputError(f"line {number} of the JSON Lines file is over {MAX_VALUE_BYTES // 2**20} MB; "
                         f"the limit is {MAX_VALUE_BYTES // 2**20} MB a record")
    return line


def _parse_line(line: bytes, number: int) -> Any:
    check_json_depth(json_depth(line), MAX_DEPTH, f"line {number} of the JSON Lines file")
    try:
        return json.loads(line)
    except ValueError:
        raise InputError(f"line {number} of the JSON Lines file is not valid JSON") from None


def _is_json_lines(path: Path) -> bool:
    """JSON Lines when the first line alone is a whole record (anything else is one JSON object)."""
    with open(path, "rb") as handle:
        head = handle.readline(MAX_VALUE_BYTES + 1)
    if len(head) > MAX_VALUE_BYTES:  # no record is this long: one JSON object, streamed below
        return False
    check_json_depth(json_depth(head), MAX_DEPTH, WHAT)
    try:
        one = json.loads(head)
    except ValueError:
        return False
    return isinstance(one, dict) and "documents" not in one and \
        any(key in one for key in (*BODY_FIELDS, "title", "url"))


def _json_lines(path: Path) -> Iterator[Record]:
    with open(path, "rb") as handle:
        index = 0
        number = 0
        while line := _read_line(handle, number + 1):
            number += 1
            if line.strip():  # blank lines are not records
                yield _record(index, _parse_line(line, number))
                index += 1


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
                for index, raw in enumerate(ijson.items(_capped(handle), "item", use_float=True)):
                    yield _record(index, raw)
            return
        if _is_json_lines(path):
            yield from _json_lines(path)
            return
        found = False
        with open(path, "rb") as handle:
            for index, raw in enumerate(ijson.items(_capped(handle), "documents.item", use_float=True)):
                found = True
                yield _record(index, raw)
        if not found:
            raise InputError("the JSON object has no \"documents\" array: give an array of records, "
                             "{\"documents\": [...]} or JSON Lines")
    except ijson.JSONError as exc:
        raise InputError(f"the collection is not valid JSON ({str(exc)[:120]})") from None
