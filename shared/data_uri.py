"""`data:` URIs decoded to a temporary file, with the cap on the decoded size.

The cap is on what the URI decodes to, not on its length: percent-encoding takes up to three
characters a byte, so a length check let a 69 MB URI through a 50 MB cap. A URI that cannot
decode to the cap or less is refused before anything is decoded or copied: from its length alone
when it is longer than any URI under the cap can be (three characters a byte for percent-encoding;
base64 of the cap plus half again for line breaks and escapes), else from a lower bound counted
over the string. The rest is decoded one slice at a time straight into the file, counting bytes.
Decoding is strict (a `%` must start a `%XX` escape; base64 takes its alphabet, the URL-safe
`-_`, whitespace and final padding), so garbage is an error rather than silently skipped.
"""

from __future__ import annotations

import binascii
import os
from collections.abc import Iterator
from pathlib import Path

from shared import scratch
from shared.errors import InputError

STEP = 1 << 20  # characters decoded at a time
MAX_HEADER = 1024  # the media type and its parameters come before the comma
_WHITESPACE = " \t\r\n\f\v"
_URLSAFE = bytes.maketrans(b"-_", b"+/")
# Each byte as its class: h for a hex digit, % for itself, o for anything else.
_CLASSES = bytes(ord("h") if chr(i) in "0123456789abcdefABCDEF" else ord("%") if i == ord("%") else ord("o")
                 for i in range(256))
_BAD_ESCAPES = (b"%o", b"%%", b"%h%", b"%ho")


def _too_large(cap: int, why: str = "") -> InputError:
    return InputError(f"the data: URI decodes to more than {cap / 2**20:g} MB, the cap for data: URIs{why}; "
                      "pass a file path or URL instead")


def _malformed(why: str) -> InputError:
    return InputError(f"malformed data: URI ({why})")


def _slices(uri: str, start: int, percent: bool) -> Iterator[str]:
    """The payload in slices of about STEP characters, never cutting a %XX escape in two."""
    end = len(uri)
    while start < end:
        stop = min(start + STEP, end)
        if percent and stop < end:
            escape = uri.rfind("%", max(stop - 2, start), stop)
            if escape > start:
                stop = escape
        yield uri[start:stop]
        start = stop


def _percent_decode(piece: str) -> bytes:
    raw = piece.encode("utf-8")
    if b"%" not in raw:
        return raw
    classes = raw.translate(_CLASSES)
    if any(bad in classes for bad in _BAD_ESCAPES) or classes.endswith((b"%", b"%h")):
        raise _malformed("a % that does not start a %XX escape")
    # Quoted-printable is %XX with '=' instead of '%', decoded in C: escape the '=' already there,
    # then swap. With every '%' known to start an escape, no '=' can form a soft line break.
    return binascii.a2b_qp(raw.replace(b"=", b"=3D").replace(b"%", b"="))


def _base64_pieces(uri: str, start: int, percent: bool) -> Iterator[bytes]:
    carry = b""
    padded = False
    for piece in _slices(uri, start, percent):
        if not piece.isascii():
            raise _malformed("invalid base64: non-ASCII characters")
        raw = _percent_decode(piece) if percent else piece.encode("ascii")
        raw = carry + raw.translate(_URLSAFE, _WHITESPACE.encode())
        if padded and raw:
            raise _malformed("invalid base64: data after the padding")
        usable = len(raw) - len(raw) % 4
        carry, raw = raw[usable:], raw[:usable]
        padded = raw.endswith(b"=")
        yield _decode_base64(raw)
    if carry:
        if padded:
            raise _malformed("invalid base64: data after the padding")
        yield _decode_base64(carry + b"=" * (-len(carry) % 4))  # a missing final padding is tolerated


def _decode_base64(chunk: bytes) -> bytes:
    try:
        return binascii.a2b_base64(chunk, strict_mode=True)
    except binascii.Error:
        raise _malformed("invalid base64") from None


def _count(uri: str, start: int, characters: str) -> int:
    # find() is a fast scan; count() is only paid for characters that are there.
    return sum(uri.count(ch, start) for ch in characters if uri.find(ch, start) != -1)


def _refuse_early(uri: str, start: int, is_base64: bool, cap: int) -> None:
    """Refuse a URI that cannot decode to `cap` bytes or less, without decoding or copying it."""
    length = len(uri) - start
    if is_base64:
        longest = (cap + 2) // 3 * 4 * 3 // 2
        if length > longest:
            raise _too_large(cap, f" (its {length:,} characters of base64 are over the {longest:,} allowed)")
        # An escape may stand for whitespace, which decodes to nothing: count it as nothing.
        characters = length - 3 * _count(uri, start, "%") - _count(uri, start, _WHITESPACE)
        smallest = characters // 4 * 3 - 2
    else:
        if length > 3 * cap:
            raise _too_large(cap, f" (its {length:,} characters are over the {3 * cap:,} allowed)")
        smallest = length - 2 * _count(uri, start, "%")  # each %XX is a byte, any other character at least one
    if smallest > cap:
        raise _too_large(cap)


def write_to_file(uri: str, cap: int) -> Path:
    """Decode `uri` (which starts with `data:`) into a new temporary file the caller removes."""
    comma = uri.find(",", 5, 5 + MAX_HEADER)
    if comma == -1:
        raise _malformed("no comma after the media type")
    is_base64 = uri[5:comma].strip().lower().endswith(";base64")
    start = comma + 1
    _refuse_early(uri, start, is_base64, cap)
    percent = uri.find("%", start) != -1
    slices = _slices(uri, start, percent)
    pieces = _base64_pieces(uri, start, percent) if is_base64 else (_percent_decode(piece) for piece in slices)
    handle, name = scratch.new_file("toolsuite-data-")
    size = 0
    try:
        with os.fdopen(handle, "wb") as out:
            for piece in pieces:
                size += len(piece)
                if size > cap:
                    raise _too_large(cap)
                out.write(piece)
    except BaseException:
        scratch.remove(name)
        raise
    return Path(name)
