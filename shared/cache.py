"""Derived data under `TOOLSUITE_CACHE_DIR`: keyed by content hash + engine version, written atomically.

Writers create a temporary file in the destination folder and `os.replace` it into place, so a
reader sees either nothing or a complete entry, and two processes writing the same key both
succeed with identical content. A per-key lock file lets expensive work run once when several
processes ask for the same entry at the same time.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from shared import callscope, scratch, settings

_HASH_CHUNK = 1 << 20


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, streamed; stops between chunks when the tool call it works for ends."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
            callscope.check("hashing the input")
    return digest.hexdigest()


def cache_key(content_digest: str, *parts: str) -> str:
    """A key that changes when the content or any engine/version part changes."""
    return hashlib.sha256("\x1f".join((content_digest, *parts)).encode()).hexdigest()[:40]


def area(name: str) -> Path:
    """A cache area for one kind of derived data (e.g. 'rag', 'reader'), created on demand."""
    path = settings.cache_dir() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_atomic(destination: Path, data: bytes, *, durable: bool = False) -> None:
    """Write-then-rename: readers never see a partial file, even if this process dies mid-write.
    `durable` also fsyncs, for data that must survive a power cut (derived caches need not)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = scratch.new_file(".tmp-", folder=destination.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            if durable:
                out.flush()
                os.fsync(out.fileno())
        os.replace(temporary, destination)
        scratch.forget(temporary)
    except BaseException:
        scratch.remove(temporary)
        raise


def read(destination: Path) -> bytes | None:
    try:
        return destination.read_bytes()
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    """An inter-process lock (flock) held for the duration of the block."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
