"""Structural caps checked before a parser runs.

Parsers recurse per nesting level (Python's json and minidom, markdownify, MuPDF's outline loader)
or allocate per entry (zipfile reads the whole central directory, Pillow the whole bitmap). A
small hostile file can therefore raise RecursionError, exhaust memory or crash the process before
any size cap is looked at. These checks measure the structure cheaply and without recursion, so
callers can refuse or degrade with a clear message first.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from shared.errors import InputError

# ---- JSON nesting -----------------------------------------------------------------------------------

# Strings may hold brackets; they do not nest. `"` and `\\` never occur inside a multi-byte UTF-8
# sequence, so the bytes can be scanned without decoding them.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_STRING_REST = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*"')  # the end of a string begun in an earlier piece
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")
_BARE_RUN = re.compile(rb'[^\s\[\]{},:"]*')  # bytes of a number or literal (or of garbage)
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def _ends_in_escape(inside: bytes) -> bool:
    """Whether a piece that ends inside a string leaves a backslash waiting for its escaped byte."""
    return (len(inside) - len(inside.rstrip(b"\\"))) % 2 == 1


class JsonDepthMeter:
    """The nesting of a JSON stream measured piece by piece as it arrives (well-formed or not), without
    parsing it: `deepest` levels so far, and the bytes of the longest string (`longest_string`) and
    number or literal (`longest_bare`) that span pieces (a streaming parser buffers a whole value
    before handing it on)."""

    def __init__(self) -> None:
        self.depth = 0
        self.deepest = 0
        self.longest_string = 0
        self.longest_bare = 0
        self._in_string = False
        self._escaped = False
        self._string_bytes = 0  # of the string still open at the end of the last piece
        self._bare_bytes = 0  # of the number or literal that the last piece ended in

    def feed(self, piece: bytes) -> int:
        if not piece:  # the end of the stream: nothing to measure (and an escape stays pending)
            return self.deepest
        start = 0
        if self._in_string:
            start = 1 if self._escaped else 0
            end = _STRING_REST.match(piece, start) if b'"' in piece else None  # `in` is a fast scan
            if end is None:
                self._still_inside(piece[start:])
                return self.deepest
            self._in_string, self._escaped, self._string_bytes = False, False, 0
            start = end.end()
        outside = _JSON_STRING.sub(b"", piece[start:] if start else piece)
        # A string that does not end in this piece is all that is left after its first remaining quote
        # (no whole string can be found inside it: it holds no unescaped quote).
        opened = outside.find(b'"')
        if opened != -1:
            self._in_string = True
            self._still_inside(outside[opened:])
            outside = outside[:opened]
        self._measure_bare(outside, ends_in_string=opened != -1)
        for step in _NOT_BRACKET.sub(b"", outside):
            self.depth += _STEP[step]
            self.deepest = max(self.deepest, self.depth)
        return self.deepest

    def _still_inside(self, inside: bytes) -> None:
        self._escaped = _ends_in_escape(inside)
        self._string_bytes += len(inside)
        self.longest_string = max(self.longest_string, self._string_bytes)

    def _measure_bare(self, outside: bytes, ends_in_string: bool) -> None:
        head = _BARE_RUN.match(outside).end()
        self.longest_bare = max(self.longest_bare, self._bare_bytes + head)
        if head == len(outside) and not ends_in_string:  # the whole piece goes on with the same value
            self._bare_bytes += head
        else:
            self._bare_bytes = 0 if ends_in_string else _BARE_RUN.match(outside[::-1]).end()


def json_depth(text: str | bytes) -> int:
    """The deepest nesting of arrays and objects in `text` (well-formed or not), without parsing it."""
    data = text if isinstance(text, bytes) else text.encode("utf-8", errors="surrogatepass")
    if b"[" not in data and b"{" not in data:
        return 0
    return JsonDepthMeter().feed(data)


MAX_JSON_NUMBER = 4096  # characters of a number or literal (true, false, null): none is longer


class CappedJsonStream:
    """A binary file as a streaming JSON parser (ijson) reads it, each piece measured before the parser
    sees it: deeper nesting than `max_depth`, a longer string than `max_string` bytes or a longer number
    than MAX_JSON_NUMBER raises InputError naming `what`. ijson builds a path string per level for every
    event, so its memory grows with the square of the depth (20,000 levels took 1 GB), and it buffers a
    whole value, in time that grows with the square of its length (a 16 MB string took 0.7 s)."""

    def __init__(self, handle: BinaryIO, what: str, *, max_depth: int, max_string: int) -> None:
        self.handle, self.what, self.max_depth, self.max_string = handle, what, max_depth, max_string
        self.meter = JsonDepthMeter()

    def read(self, size: int = -1) -> bytes:
        piece = self.handle.read(size)
        self.meter.feed(piece)
        check_json_depth(self.meter.deepest, self.max_depth, self.what)
        if self.meter.longest_string > self.max_string:
            raise InputError(f"{self.what} holds a string of more than {self.max_string // 2**20} MB; "
                             f"the limit is {self.max_string // 2**20} MB a string")
        if self.meter.longest_bare > MAX_JSON_NUMBER:
            raise InputError(f"{self.what} holds a number or literal of more than {MAX_JSON_NUMBER:,} "
                             "characters (refused before parsing)")
        return piece


def check_json_depth(depth: int, max_depth: int, what: str) -> None:
    if depth > max_depth:
        raise InputError(f"{what} nests arrays and objects more than {max_depth} levels deep; the limit is "
                         f"{max_depth} (refused before parsing: deep nesting makes JSON parsers recurse or "
                         "allocate without bound)")


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
