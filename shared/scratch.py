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


def remove_all() -> int:
    """Remove every temporary still registered (on the way out); returns how many were there."""
    with _lock:
        names = list(_live)
        _live.clear()
    for name in names:
        _delete(name)
    return len(names)


def _delete(name: str) -> None:
    if os.path.isdir(name) and not os.path.islink(name):
        shutil.rmtree(name, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


atexit.register(remove_all)
