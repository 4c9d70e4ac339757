"""The one policy for every path or URL a tool accepts.

Local paths (bare or `file://`) must resolve, after symlinks, inside the allowed roots
(`TOOLSUITE_ROOTS`). `http(s)` URLs go through the safe fetcher. `data:` URIs are decoded with a
size cap. Whatever the source, the tool gets a local file and its type sniffed from its bytes;
temporary files are removed when the `open_input` context ends.

This module is the only place an input is opened (tools reach it through `shared.worker`, and
engines receive the `LocalInput` and read `item.path`), so hardening how a local file is opened
(one open with O_NOFOLLOW|O_NONBLOCK, fstat on that descriptor to refuse what is not a regular
file, engines reading through the descriptor or a path derived from it) changes this module only.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from shared import settings
from shared.errors import InputError
from shared.fetch import FetchLimits, fetch_to_file
from shared.mime import FileType, sniff_file

MAX_DATA_URI_BYTES = 50 * 2**20


def _roots_text(roots: list[Path]) -> str:
    return ", ".join(str(r) for r in roots)


def display_path(path: Path) -> str:
    """A path as messages may show it: relative to its root when inside one, else only its name."""
    for root in settings.allowed_roots():
        try:
            return str(path.relative_to(root)) or "."
        except ValueError:
            continue
    return path.name


def resolve_local_path(raw: str, *, must_exist: bool = True, kind: str = "file") -> Path:
    """Resolve a bare path or `file://` URI inside the allowed roots, or refuse it."""
    text = raw.strip()
    if not text:
        raise InputError("empty path: give a file path, file:// URI or URL")
    if "\x00" in text:
        raise InputError("the path contains a NUL byte")
    if text.lower().startswith("file:"):
        parts = urlsplit(text)
        if parts.netloc not in ("", "localhost"):
            raise InputError(f"file:// URIs must name a local file, not host {parts.netloc!r}")
        text = unquote(parts.path)
    roots = settings.allowed_roots()
    expanded = os.path.expanduser(text)
    candidate = expanded if os.path.isabs(expanded) else os.path.join(roots[0] if roots else os.getcwd(), expanded)
    resolved = Path(os.path.realpath(candidate))
    if not any(resolved == root or resolved.is_relative_to(root) for root in roots):
        raise InputError(
            f"path outside the allowed roots: {raw!r} (allowed roots: {_roots_text(roots)}; "
            "set TOOLSUITE_ROOTS to add folders)"
        )
    if must_exist:
        if not resolved.exists():
            raise InputError(f"{kind} not found: {raw!r} (allowed roots: {_roots_text(roots)})")
        if kind != "directory" and resolved.is_dir():
            raise InputError(f"{raw!r} is a directory, not a file")
    return resolved


@dataclass
class LocalInput:
    """A file ready to read, whatever the source was."""

    path: Path
    source: str
    label: str
    file_type: FileType
    size: int
    temporary: bool


def _data_uri_to_file(uri: str) -> Path:
    from shared import data_uri

    return data_uri.write_to_file(uri, MAX_DATA_URI_BYTES)


@contextlib.contextmanager
def open_input(raw: str, *, limits: FetchLimits | None = None) -> Iterator[LocalInput]:
    """Yield a `LocalInput` for a path, file:// URI, http(s) URL or data: URI."""
    text = (raw or "").strip()
    # data: is recognised from its prefix: urlsplit would copy a data: URI of many megabytes.
    is_data = text[:5].lower() == "data:"
    scheme = "data" if is_data else urlsplit(text).scheme.lower() if "://" in text else ""
    temporary: Path | None = None
    try:
        if scheme in ("http", "https"):
            fetched = fetch_to_file(text, limits)
            temporary = fetched.path
            path, label = fetched.path, text
        elif scheme == "data":
            temporary = _data_uri_to_file(text)
            path, label = temporary, "data: URI"
        elif scheme in ("", "file"):
            path = resolve_local_path(text)
            label = display_path(path)
        else:
            raise InputError(f"unsupported URI scheme {scheme!r}: use a path, file://, http(s):// or data:")
        try:
            size = path.stat().st_size
            file_type = sniff_file(path)
        except PermissionError:
            raise InputError(f"permission denied reading {label!r}") from None
        yield LocalInput(path=path, source=text, label=label, file_type=file_type, size=size,
                         temporary=temporary is not None)
    finally:
        if temporary is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
