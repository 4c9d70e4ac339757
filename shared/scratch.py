"""Every temporary file and folder this process makes, in one registry, so that none outlives it.

A creator removes its own temporary when it is done, as before; the registry is for the ways out that
skip those `finally` blocks: shared/shutdown.py ends a stdio server with `os._exit` on SIGTERM while
a worker thread may still be writing a download, and a process that exits normally does not wait
for its daemon threads either. Both remove what is still registered on the way out.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
import threading
from pathlib import Path

_lock = threading.Lock()
_live: set[str] = set()
# Files written under their final name inside a folder held open by descriptor (tool-python's output
# folder): removed relative to that descriptor, never by a path a swapped symlink could redirect.
_live_in_folders: set[tuple[int, str]] = set()


def new_file(prefix: str, suffix: str = "", folder: str | Path | None = None) -> tuple[int, str]:
    """`tempfile.mkstemp`, registered: (descriptor, name)."""
    handle, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
    with _lock:
        _live.add(name)
    return handle, name


def new_folder(prefix: str, folder: str | Path | None = None) -> Path:
    """`tempfile.mkdtemp`, registered."""
    name = tempfile.mkdtemp(prefix=prefix, dir=folder)
    with _lock:
        _live.add(name)
    return Path(name)


def forget(name: str | Path) -> None:
    """The temporary is gone from its name (renamed into place, or removed by its creator)."""
    with _lock:
        _live.discard(str(name))


def remove(name: str | Path) -> None:
    """Remove a registered temporary (file or folder) if it is still there, and forget it."""
    forget(name)
    _delete(str(name))


def writing_in_folder(folder: int, name: str) -> None:
    """`name` inside the open folder `folder` is being written and is not whole until
    `written_in_folder` says so; the caller keeps `folder` open until then."""
    with _lock:
        _live_in_folders.add((folder, name))


def written_in_folder(folder: int, name: str) -> None:
    """The file is whole (or its writer removed it)."""
    with _lock:
        _live_in_folders.discard((folder, name))


def remove_all() -> int:
    """Remove every temporary and half-written file still registered (on the way out); returns how
    many were there."""
    with _lock:
        names = list(_live)
        _live.clear()
        in_folders = list(_live_in_folders)
        _live_in_folders.clear()
    for name in names:
        _delete(name)
    for folder, name in in_folders:
        with contextlib.suppress(OSError):
            os.unlink(name, dir_fd=folder)
    return len(names) + len(in_folders)


def _delete(name: str) -> None:
    if os.path.isdir(name) and not os.path.islink(name):
        shutil.rmtree(name, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


atexit.register(remove_all)
