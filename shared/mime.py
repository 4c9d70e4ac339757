"""File types from bytes, never from extensions (real data has WebP files named .jpg)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from shared.bounds import json_depth, zip_directory_problem

_SNIFF_BYTES = 8192
_MAX_SNIFF_DEPTH = 200


@dataclass(frozen=True)
class FileType:
    mime: str
    extension: str

    @property
    def is_text(self) -> bool:
        return self.mime.startswith("text/") or self.mime in {"application/json", "application/xml"}


def _looks_like_text(head: bytes) -> str | None:
    """The encoding name if `head` is text, else None."""
    if not head:
        return "utf-8"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    if b"\x00" in head:
        return None
    for encoding in ("utf-8", "gb18030"):
        try:
            head.decode(encoding)
            return encoding
        except UnicodeDecodeError as exc:
            # The sniff window may end inside a multi-byte character.
            if exc.start >= len(head) - 4:
                return encoding
    # Mostly valid UTF-8 with a few broken bytes is still text (the decoder replaces them).
    decoded = head.decode("utf-8", errors="replace")
    broken = decoded.count("\ufffd")
    controls = sum(1 for ch in decoded if ord(ch) < 32 and ch not in "\t\n\r\f")
    if broken <= max(3, len(decoded) // 100) and controls <= len(decoded) // 100:
        return "utf-8"
    return None


def _text_kind(head: bytes, encoding: str) -> FileType:
    sample = head.decode(encoding, errors="ignore").lstrip("\ufeff").lstrip()
    lower = sample[:512].lower()
    if lower.startswith(("<!doctype html", "<html")) or "<html" in lower[:256]:
        return FileType("text/html", "html")
    if lower.startswith("<?xml") or (lower.startswith("<") and not lower.startswith("<!--")):
        return FileType("application/xml", "xml")
    if sample[:1] in ("{", "["):
        # json.loads recurses per level (`[` x 8192 raised RecursionError here): deep nesting is
        # JSON-shaped enough to be called JSON, and the reader bounds what it does with it.
        if json_depth(sample) > _MAX_SNIFF_DEPTH:
            return FileType("application/json", "json")
        try:
            json.loads(sample)
            return FileType("application/json", "json")
        except (ValueError, RecursionError):
            if len(head) >= _SNIFF_BYTES:  # truncated sample of a larger file
                return FileType("application/json", "json")
    return FileType("text/plain", "txt")


def sniff_bytes(head: bytes) -> FileType:
    import filetype

    kind = filetype.guess(head)
    if kind is not None:
        return FileType(kind.mime, kind.extension)
    encoding = _looks_like_text(head[:_SNIFF_BYTES])
    if encoding is not None:
        return _text_kind(head[:_SNIFF_BYTES], encoding)
    return FileType("application/octet-stream", "bin")


_ZIP_FLAVOURS = (
    ("word/", FileType("application/vnd.openxmlformats-officedocument.wordprocessingml.document", "docx")),
    ("ppt/", FileType("application/vnd.openxmlformats-officedocument.presentationml.presentation", "pptx")),
    ("xl/", FileType("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx")),
)


def _zip_flavour(path: Path) -> FileType | None:
    """Office files and EPUBs are ZIPs; which one is told by the members, not by the first bytes."""
    import zipfile

    if zip_directory_problem(path):  # zipfile would load a huge file table; the reader refuses it
        return None
    try:
        with zipfile.ZipFile(path) as bundle:
            names = bundle.namelist()
            if "mimetype" in names:
                with bundle.open("mimetype") as member:  # never read() whole: it may be a bomb
                    if member.read(64).strip() == b"application/epub+zip":
                        return FileType("application/epub+zip", "epub")
    except Exception:  # damaged, encrypted or oddly compressed: a sniffer must not fail on any bytes
        return None
    if "[Content_Types].xml" in names:
        for prefix, file_type in _ZIP_FLAVOURS:
            if any(name.startswith(prefix) for name in names):
                return file_type
    return None


def sniff_file(path: Path) -> FileType:
    with open(path, "rb") as handle:
        head = handle.read(_SNIFF_BYTES)
    found = sniff_bytes(head)
    if found.mime == "application/zip":
        return _zip_flavour(path) or found
    return found
