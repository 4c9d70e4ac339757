"""The host folder that files copied out of sandboxes go to, and how they are named there.

The folder is opened once per download with `O_NOFOLLOW | O_DIRECTORY` and every file is created
relative to that descriptor with `O_CREAT | O_EXCL | O_NOFOLLOW`: swapping the folder (or a file
name in it) for a symlink between a check and a write cannot send a sandbox's file elsewhere, and
an existing file is never overwritten (`name-1.ext`, `name-2.ext`... instead). Names are reduced
to plain characters; mode bits are never copied (files are 0644).
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import re
from pathlib import Path

from servers.python import files
from servers.python.results import SandboxError
from shared import scratch, settings
from shared.cjk import HAN
from shared.errors import InputError
from shared.inputs import display_path

FILE_MODE = 0o644
MAX_NAME_TRIES = 10_000
_UNSAFE = re.compile(f"[^A-Za-z0-9._\\-{HAN}]+")  # Chinese names stay readable


def output_dir() -> Path:
    """TOOLSUITE_OUTPUT_DIR, else `<first allowed root>/toolsuite-output`."""
    configured = settings.text("TOOLSUITE_OUTPUT_DIR")
    if configured:
        return Path(configured).expanduser()
    return settings.allowed_roots()[0] / "toolsuite-output"


def safe_name(name: str) -> str:
    """A plain file name: no folders, no leading dots, no odd characters."""
    base = posixpath.basename(name.replace("\\", "/")).strip()
    cleaned = _UNSAFE.sub("_", base).lstrip(".") or "file"
    return cleaned[:200]


def _numbered(name: str, counter: int) -> str:
    if counter == 0:
        return name
    stem, dot, suffix = name.partition(".") if not name.startswith(".") else (name, "", "")
    return f"{stem}-{counter}{dot}{suffix}"


class OutputFolder:
    """The output folder, open; use as a context manager."""

    def __init__(self, folder: Path | None = None) -> None:
        self.path = folder or output_dir()
        self.fd = _open_folder(self.path)

    def __enter__(self) -> OutputFolder:
        return self

    def __exit__(self, *_exc: object) -> None:
        os.close(self.fd)

    def create(self, name: str) -> tuple[int, str]:
        """A new file for `name` (made safe, numbered when taken): (writable fd, the name used)."""
        base = safe_name(name)
        for counter in range(MAX_NAME_TRIES):
            candidate = _numbered(base, counter)
            try:
                fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                             FILE_MODE, dir_fd=self.fd)
            except FileExistsError:
                continue
            os.fchmod(fd, FILE_MODE)  # whatever the umask; never setuid, never executable
            return fd, candidate
        raise InputError(f"the output folder already holds {MAX_NAME_TRIES} files named like {base!r}; "
                         "choose another local_filename")

    def save(self, source: int, name: str, max_bytes: int) -> tuple[str, int]:
        """Copy the open file `source` into a new file for `name`; returns (shown path, bytes). A copy
        that fails leaves nothing behind."""
        try:
            target, used = self.create(name)
        except OSError as exc:
            raise SandboxError(f"could not create a file in the output folder ({exc.strerror})") from None
        scratch.writing_in_folder(self.fd, used)  # a SIGTERM mid-copy removes the part written
        try:
            copied = files.copy_capped(source, target, max_bytes)
        except BaseException as exc:
            os.close(target)
            self.remove(used)
            if isinstance(exc, OSError):
                raise SandboxError(f"could not write {self.shown(used)} ({exc.strerror})") from None
            raise
        finally:
            scratch.written_in_folder(self.fd, used)
        os.close(target)
        return self.shown(used), copied

    def remove(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=self.fd)

    def shown(self, name: str) -> str:
        """How messages show a file in the folder (relative to its root, never a host path outside)."""
        return display_path(self.path / name)


def _open_folder(path: Path) -> int:
    """The folder as a descriptor: its parent as configured, the folder itself never through a symlink."""
    shown = display_path(path)
    parent = Path(os.path.realpath(path.parent))  # the operator's configuration, symlinks there are theirs
    try:
        parent.mkdir(parents=True, exist_ok=True)
        parent_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise InputError(f"the output folder {shown!r} cannot be made ({exc.strerror}); set TOOLSUITE_OUTPUT_DIR "
                         "to a writable folder") from None
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        try:
            return os.open(path.name, flags, dir_fd=parent_fd)
        except FileNotFoundError:
            with contextlib.suppress(FileExistsError):
                os.mkdir(path.name, 0o755, dir_fd=parent_fd)
            return os.open(path.name, flags, dir_fd=parent_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise InputError(f"the output folder {shown!r} is a symlink or not a folder; refusing to write "
                             "through it (remove it, or set TOOLSUITE_OUTPUT_DIR to a real folder)") from None
        raise InputError(f"the output folder {shown!r} cannot be opened ({exc.strerror})") from None
    finally:
        os.close(parent_fd)
