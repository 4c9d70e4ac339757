"""Structural caps checked before a parser runs.

Parsers recurse per nesting level (Python's json and minidom, markdownify, MuPDF's outline loader)
or allocate per entry (zipfile reads the whole central directory, Pillow the whole bitmap). A
small hostile file can therefore raise RecursionError, exhaust memory or crash the process before
any size cap is looked at. These checks measure the structure cheaply and without recursion, so
callers can refuse or degrade with a clear message first.
"""

from __future__ import annotations

import itertools
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from shared.errors import InputError

# ---- JSON nesting -----------------------------------------------------------------------------------

_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')  # strings may hold brackets; they do not nest
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in `text` (well-formed or not), without parsing it."""
    if not any(ch in text for ch in "[{"):
        return 0
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(itertools.accumulate(map(_STEP.__getitem__, brackets), initial=0))


# ---- ZIP central directory ----------------------------------------------------------------------------

_EOCD = b"PK\x05\x06"
_EOCD64_LOCATOR = b"PK\x06\x07"
_EOCD64 = b"PK\x06\x06"


@dataclass(frozen=True)
class ZipDirectory:
    entries: int  # as the end record declares them
    size: int  # bytes of the central directory, which zipfile reads and parses whole


def zip_directory(path: Path) -> ZipDirectory | None:
    """What a ZIP's end record declares, read from the file's tail only; None if there is none."""
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        length = handle.tell()
        start = max(0, length - (22 + 65535))  # the record plus the longest comment
        handle.seek(start)
        tail = handle.read()
        at = tail.rfind(_EOCD)
        if at == -1 or len(tail) - at < 22:
            return None
        _, _, _, entries, size, _, _ = struct.unpack("<4HIIH", tail[at + 4:at + 22])
        locator = tail.rfind(_EOCD64_LOCATOR, 0, at)
        if locator != -1 and at - locator == 20:
            (record_at,) = struct.unpack("<Q", tail[locator + 8:locator + 16])
            if record_at < length:
                handle.seek(record_at)
                record = handle.read(56)
                if record[:4] == _EOCD64 and len(record) == 56:
                    entries, size = struct.unpack("<QQ", record[32:48])
    return ZipDirectory(entries=entries, size=size)


MAX_ZIP_ENTRIES = 10_000
MAX_ZIP_DIRECTORY = 4 * 2**20  # a legitimate directory of 10,000 entries is under 2 MB


def zip_directory_problem(path: Path, max_entries: int = MAX_ZIP_ENTRIES) -> str | None:
    """Why the ZIP's central directory must not be loaded, or None when it may be."""
    directory = zip_directory(path)
    if directory is None:
        return None
    if directory.entries > max_entries:
        return f"the archive declares {directory.entries:,} files; the limit is {max_entries:,}"
    if directory.size > MAX_ZIP_DIRECTORY:
        return (f"the archive's file table is {directory.size / 2**20:.0f} MB; the limit is "
                f"{MAX_ZIP_DIRECTORY // 2**20} MB")
    return None


def check_zip_directory(path: Path, max_entries: int = MAX_ZIP_ENTRIES) -> None:
    problem = zip_directory_problem(path, max_entries)
    if problem:
        raise InputError(problem + " (ZIP bomb guard)")


# ---- XML and HTML nesting ------------------------------------------------------------------------


class _Stop(Exception):
    pass


def xml_problem(data: bytes, max_depth: int, max_elements: int) -> str | None:
    """Why `data` must not be built into a tree (too deep, too many elements, entity declarations),
    found by one streaming pass of expat that builds nothing; None when it may be (or when it is not
    well-formed, which the real parser then reports)."""
    from xml.parsers import expat

    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    depth = count = 0

    def start(_name: str, _attributes: dict) -> None:
        nonlocal depth, count
        depth += 1
        count += 1
        if depth > max_depth:
            raise _Stop(f"it nests elements more than {max_depth} levels deep")
        if count > max_elements:
            raise _Stop(f"it has more than {max_elements:,} elements")

    def end(_name: str) -> None:
        nonlocal depth
        depth -= 1

    def entity(*_args: object) -> None:
        raise _Stop("it declares entities (refused: entity expansion bombs)")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.EntityDeclHandler = entity
    parser.UnparsedEntityDeclHandler = entity
    try:
        parser.Parse(data, True)
    except _Stop as stop:
        return str(stop)
    except expat.ExpatError:
        return None
    return None


_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9:-]*)[^>]*?(/?)>")
# Elements that never nest (void) or whose end tag may be left out (they would only inflate the count).
_FLAT = frozenset([
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr",
    "p", "li", "dt", "dd", "tr", "td", "th", "option", "optgroup", "rb", "rt", "rp", "rtc", "thead", "tbody",
    "tfoot", "colgroup", "caption", "html", "head", "body",
])


def html_depth(text: str) -> int:
    """The deepest element nesting of an HTML page, estimated from its tags without building a tree."""
    depth = deepest = 0
    for closing, name, self_closing in _TAG.findall(text):
        if self_closing or name.lower() in _FLAT:
            continue
        if closing:
            depth = max(depth - 1, 0)
        else:
            depth += 1
            deepest = max(deepest, depth)
    return deepest


# ---- images ------------------------------------------------------------------------------------


def check_pixels(width: int, height: int, max_pixels: int, what: str = "the image") -> None:
    """Refuse a bitmap by its declared size, before it is decoded (decompression bomb guard)."""
    if width * height > max_pixels:
        raise InputError(f"{what} is {width:,} x {height:,} pixels ({width * height / 1e6:,.0f} megapixels); "
                         f"the limit is {max_pixels / 1e6:g} megapixels (decompression bomb guard)")
