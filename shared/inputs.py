"""The one policy for every path or URL a tool accepts.

Local paths (bare or `file://`) must resolve, after symlinks, inside the allowed roots
(`TOOLSUITE_ROOTS`). `http(s)` URLs go through the safe fetcher. `data:` URIs are decoded with a
size cap. Whatever the source, the tool gets a file it can read and its type sniffed from its bytes.

How a local file is opened, and why:
- once: resolved relative to descriptors of folders inside a root (`shared.beneath`), never by
  name again, so swapping a folder or file for a symlink after the check changes nothing;
- without side effects: the lookup descriptor is `O_PATH` (a FIFO cannot block, a device is not
  opened), and `fstat` on it must say "regular file" (`shared.filekind`): folders, FIFOs, sockets,
  devices and files of /proc, /sys and similar are refused by name;
- its size judged from that `fstat` against `TOOLSUITE_MAX_INPUT_MB` before any byte is read or
  hashed (a sparse 5 GB file is refused at once, not after minutes of hashing);
- then reopened for reading through `/proc/self/fd/N` of that descriptor (same file, no lookup),
  `O_NONBLOCK`; engines read `item.path`, which is `/proc/self/fd/M` of the held read descriptor: a
  name for this very file, valid in this process while the `open_input` block runs;
- the size seen at open is the size: caps use it, and when the block ends a file that shrank or was
  rewritten in place while being read is a clear error (the result would be built from a partial or
  mixed file); a file that grew is accepted (what was appended may or may not be in the result).
Temporary files (URL bodies, data: URIs) are opened and unlinked at once: they never outlive the
call, even if the engine is still unwinding when the call ends.

This module is the only place an input is opened (tools reach it through `shared.worker`; a tool
that must hold a local file itself, such as tool-python's upload, uses `open_local`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from shared import beneath, filekind, scratch, settings
from shared.errors import InputError
from shared.fetch import FetchLimits, fetch_to_file
from shared.mime import FileType, sniff_file

log = logging.getLogger("toolsuite.inputs")

MAX_DATA_URI_BYTES = 50 * 2**20
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)


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


def max_input_bytes() -> int:
    return int(settings.number("TOOLSUITE_MAX_INPUT_MB", 4096, minimum=1) * 2**20)


_proc_fd: list[bool] = []


def _proc_fd_usable() -> bool:
    """Whether `/proc/self/fd/N` names open descriptors here (Linux with /proc mounted)."""
    if not _proc_fd:
        _proc_fd.append(os.path.isdir("/proc/self/fd"))
        if not _proc_fd[0]:
            log.warning("/proc is not mounted: engines get inputs by their resolved name, which a symlink "
                        "swap between opening and reading could redirect")
    return _proc_fd[0]


def fd_path(fd: int, fallback: Path) -> Path:
    """A path that names the file open on `fd` and cannot be redirected (in this process)."""
    return Path(f"/proc/self/fd/{fd}") if _proc_fd_usable() else fallback


# ---- local paths -------------------------------------------------------------------------------

def _candidate(raw: str) -> tuple[str, list[Path]]:
    """The absolute path a bare path or file:// URI spells (symlinks and `..` not yet resolved)."""
    text = raw.strip()
    if not text:
        raise InputError("empty path: give a file path, file:// URI or URL")
    if text.lower().startswith("file:"):
        parts = urlsplit(text.replace("\x00", "%00"))
        if parts.netloc not in ("", "localhost"):
            raise InputError(f"file:// URIs must name a local file, not host {parts.netloc!r}")
        text = unquote(parts.path)
    if "\x00" in text:
        raise InputError("the path contains a NUL byte")
    roots = settings.allowed_roots()
    expanded = os.path.expanduser(text)
    base = str(roots[0]) if roots else os.getcwd()
    return (expanded if os.path.isabs(expanded) else os.path.join(base, expanded)), roots


def quoted(raw: str, limit: int = 300) -> str:
    """The caller's path as messages quote it: in full when short, its start and end when not."""
    return repr(raw) if len(raw) <= limit else repr(f"{raw[:limit // 2]}...{raw[-limit // 2:]}")


def _open_beneath(raw: str, kind: str) -> tuple[beneath.Found, list[Path]]:
    candidate, roots = _candidate(raw)
    shown = quoted(raw)
    try:
        return beneath.open_beneath(candidate, [str(root) for root in roots]), roots
    except beneath.Refused as refused:
        if refused.why == "outside":
            raise InputError(f"path outside the allowed roots: {shown} (allowed roots: {_roots_text(roots)}; "
                             "set TOOLSUITE_ROOTS to add folders)") from None
        if refused.why == "missing":
            raise InputError(f"{kind} not found: {shown} (allowed roots: {_roots_text(roots)})") from None
        if refused.why == "too long":
            raise InputError(f"the path is too long ({len(raw):,} characters; a file or folder name has at "
                             f"most 255 bytes): {shown}") from None
        if refused.why == "loop":
            raise InputError(f"too many levels of symbolic links in {shown}") from None
        raise InputError(f"permission denied reading {shown}") from None


def _check_kind(raw: str, fd: int, kind: str) -> os.stat_result:
    """The descriptor's stat if it is what `kind` needs, else a refusal naming what it is."""
    info = os.fstat(fd)
    what = filekind.kind_of(info.st_mode)
    if kind == "directory":
        if what != "a directory":
            raise InputError(f"{quoted(raw)} is {what or 'a file'}, not a folder")
        return info
    if what == "a directory":
        raise InputError(f"{quoted(raw)} is a directory, not a file")
    if what is not None:
        raise InputError(f"{quoted(raw)} is {what}, not a regular file: tools read regular files only")
    pseudo = filekind.pseudo_filesystem(fd)
    if pseudo is not None:
        raise InputError(f"{quoted(raw)} is a file of the kernel's {pseudo} filesystem (live system state, not "
                         "a document): refused")
    return info


def resolve_local_path(raw: str, *, must_exist: bool = True, kind: str = "file") -> Path:
    """Resolve a bare path or `file://` URI inside the allowed roots and check what it is, or refuse it.

    The returned name is for code that cannot take a descriptor yet: opening it again by name can be
    raced (a symlink swapped in between); `open_local` gives the file itself."""
    try:
        found, _roots = _open_beneath(raw, kind)
    except InputError:
        if must_exist:
            raise
        candidate, roots = _candidate(raw)
        resolved = Path(os.path.realpath(candidate))
        if not any(resolved == root or resolved.is_relative_to(root) for root in roots):
            raise
        return resolved
    try:
        info = _check_kind(raw, found.fd, "directory" if kind == "directory" else "file")
        if kind != "directory":
            _check_size(display_path(Path(found.path)), info.st_size, max_input_bytes())
        return Path(found.path)
    finally:
        os.close(found.fd)


def _check_size(label: str, size: int, limit: int, setting: str = "TOOLSUITE_MAX_INPUT_MB") -> None:
    if size > limit:
        raise InputError(f"{label!r} is {size / 2**20:,.1f} MB; the largest file this tool opens is "
                         f"{limit / 2**20:,.1f} MB ({setting})")


@dataclass
class HeldFile:
    """A regular file inside the roots, opened once. Read it through `fd` (e.g. `os.pread`) or `path`;
    never reopen `real_path` by name."""

    fd: int  # O_RDONLY | O_NONBLOCK, closed when the `open_local` block ends
    path: Path  # /proc/self/fd/<fd>: this very file, for code that wants a path (this process only)
    real_path: Path  # where it lives, for messages and labels
    label: str  # as messages show it: relative to its root
    size: int  # bytes when opened: caps were judged on this
    mtime_ns: int

    def change(self) -> str | None:
        """How the file changed since it was opened, if it did in a way that spoils a reading."""
        now = os.fstat(self.fd)
        if now.st_size < self.size:
            return f"shrank from {self.size} to {now.st_size} bytes"
        if now.st_size == self.size and now.st_mtime_ns != self.mtime_ns:
            return "was rewritten in place"
        return None


def _reopen_for_reading(found: beneath.Found, looked_up: os.stat_result) -> int:
    """A read descriptor for the very object `found.fd` names."""
    if not beneath.O_PATH:
        return os.dup(found.fd)  # no O_PATH (not Linux): the lookup descriptor is already a read one
    if _proc_fd_usable():
        fd = os.open(f"/proc/self/fd/{found.fd}", _READ_FLAGS)
    else:
        fd = os.open(found.path, _READ_FLAGS | beneath.O_NOFOLLOW)
    opened = os.fstat(fd)
    if (opened.st_dev, opened.st_ino) != (looked_up.st_dev, looked_up.st_ino) or not stat.S_ISREG(opened.st_mode):
        os.close(fd)
        raise InputError("the file changed while it was being opened; try again")
    return fd


@contextlib.contextmanager
def open_local(raw: str, *, max_bytes: int | None = None, limit_setting: str = "TOOLSUITE_MAX_INPUT_MB"
               ) -> Iterator[HeldFile]:
    """Open a local path or `file://` URI inside the roots as a `HeldFile`, or refuse it: only regular
    files, at most `max_bytes` (default `TOOLSUITE_MAX_INPUT_MB`; `limit_setting` names the setting
    behind a caller's own cap in the message) judged before reading. The descriptor is closed when
    the block ends."""
    found, _roots = _open_beneath(raw, "file")
    read_fd = -1
    try:
        info = _check_kind(raw, found.fd, "file")
        label = display_path(Path(found.path))
        _check_size(label, info.st_size, max_input_bytes() if max_bytes is None else max_bytes, limit_setting)
        try:
            read_fd = _reopen_for_reading(found, info)
        except PermissionError:
            raise InputError(f"permission denied reading {label!r}") from None
    finally:
        os.close(found.fd)
    try:
        yield HeldFile(fd=read_fd, path=fd_path(read_fd, Path(found.path)), real_path=Path(found.path), label=label,
                       size=info.st_size, mtime_ns=info.st_mtime_ns)
    finally:
        os.close(read_fd)


# ---- every source ------------------------------------------------------------------------------

@dataclass
class LocalInput:
    """A file ready to read, whatever the source was. `path` names the opened file itself (see the
    module docstring); `size` is its size when opened."""

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
def _held_temporary(name: Path) -> Iterator[tuple[int, Path]]:
    """Open a temporary file we wrote and unlink it at once (when /proc lets engines reach it by
    descriptor): it cannot outlive the call, whatever happens to the engine."""
    try:
        fd = os.open(name, _READ_FLAGS | beneath.O_NOFOLLOW)
    except BaseException:
        scratch.remove(name)
        raise
    if _proc_fd_usable():
        scratch.remove(name)
    try:
        yield fd, fd_path(fd, name)
    finally:
        os.close(fd)
        if not _proc_fd_usable():
            scratch.remove(name)


def _sniff(path: Path, label: str) -> FileType:
    try:
        return sniff_file(path)
    except PermissionError:
        raise InputError(f"permission denied reading {label!r}") from None


@contextlib.contextmanager
def open_input(raw: str, *, limits: FetchLimits | None = None) -> Iterator[LocalInput]:
    """Yield a `LocalInput` for a path, file:// URI, http(s) URL or data: URI."""
    text = (raw or "").strip()
    # data: is recognised from its prefix: urlsplit would copy a data: URI of many megabytes.
    is_data = text[:5].lower() == "data:"
    scheme = "data" if is_data else urlsplit(text).scheme.lower() if "://" in text else ""
    if scheme in ("http", "https", "data"):
        if scheme == "data":
            written, label = _data_uri_to_file(text), "data: URI"
        else:
            written, label = fetch_to_file(text, limits).path, text
        with _held_temporary(written) as (fd, path):
            yield LocalInput(path=path, source=text, label=label, file_type=_sniff(path, label),
                             size=os.fstat(fd).st_size, temporary=True)
        return
    if scheme not in ("", "file"):
        raise InputError(f"unsupported URI scheme {scheme!r}: use a path, file://, http(s):// or data:")
    with open_local(text) as held:
        item = LocalInput(path=held.path, source=text, label=held.label, file_type=_sniff(held.path, held.label),
                          size=held.size, temporary=False)
        try:
            yield item
        except Exception as exc:
            _refuse_if_changed(held, exc)
            raise
        _refuse_if_changed(held, None)


def _refuse_if_changed(held: HeldFile, cause: Exception | None) -> None:
    """A file that shrank or was rewritten while the engine read it gives a clear error, whatever the
    engine made of the partial bytes (its own error, if any, was caused by the change)."""
    change = held.change()
    if change is not None:
        raise InputError(f"{held.label!r} {change} while it was being read; try again once it is complete") from cause
