"""Moving files across the sandbox boundary without following anything the sandbox planted.

Sandboxed code controls its home: it can replace any folder with a symlink at any moment. So paths
inside the home are walked one component at a time with `O_NOFOLLOW` relative to an open
directory descriptor, never resolved as strings; a symlink anywhere on the way is refused.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import secrets
import stat
from pathlib import Path

from shared import settings
from shared.errors import InputError

SANDBOX_HOME = "/home/user"
COPY_CHUNK = 1 << 20
# O_DIRECTORY fails on anything but a folder before a FIFO's open could block; O_NONBLOCK is a
# second guard.
DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def max_transfer_bytes() -> int:
    """Largest file moved into or out of a sandbox (the URL download cap applies to both ways)."""
    return int(settings.number("TOOLSUITE_MAX_DOWNLOAD_MB", 100) * 2**20)


def name_from_url(url: str) -> str:
    """The file name a URL's path ends with, without its query (\"download\" when it has none)."""
    return plain_name(url.split("?", 1)[0].split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1] or "download")


def sandbox_relative(path: str) -> list[str]:
    """The components of a sandbox path below /home/user, or refuse it."""
    raw = (path or "").strip() or SANDBOX_HOME
    if "\x00" in raw:
        raise InputError("the sandbox path contains a NUL byte")
    absolute = raw if raw.startswith("/") else posixpath.join(SANDBOX_HOME, raw)
    normal = posixpath.normpath(absolute)
    if normal != SANDBOX_HOME and not normal.startswith(SANDBOX_HOME + "/"):
        raise InputError(f"sandbox path {path!r} is outside {SANDBOX_HOME}, the only place files can go")
    return [part for part in normal[len(SANDBOX_HOME):].split("/") if part]


def _open_dir_chain(home: int, parts: list[str], create: bool) -> int:
    """An fd for the folder `home/parts...` (`home` an open folder), refusing symlinks; creating
    folders when asked."""
    fd = os.open(".", DIRECTORY_FLAGS, dir_fd=home)
    try:
        for part in parts:
            try:
                next_fd = os.open(part, DIRECTORY_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise InputError(f"folder {part!r} does not exist in the sandbox") from None
                os.mkdir(part, 0o755, dir_fd=fd)
                next_fd = os.open(part, DIRECTORY_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise InputError(f"{part!r} in the sandbox path is a symlink or not a folder") from None
                raise
            os.close(fd)
            fd = next_fd
        return fd
    except BaseException:
        os.close(fd)
        raise


def is_dir_in_home(home: int, parts: list[str]) -> bool:
    try:
        fd = _open_dir_chain(home, parts, create=False)
    except (InputError, OSError):
        return False
    os.close(fd)
    return True


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"), (stat.S_ISLNK, "symlink"),
                       (stat.S_ISDIR, "folder"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device")):
        if test(mode):
            return name
    return "special file"


def open_host_file(path: Path, shown: str, max_bytes: int) -> tuple[int, int]:
    """A host file opened once for reading: (descriptor, size). Never blocks (a FIFO is refused, not
    waited on) and never follows a symlink swapped in at the last step; the caller closes it.
    (The shared input policy's opener will take over the whole path walk.)"""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError(f"{shown!r} became a symlink while being opened; try again") from None
        raise InputError(f"{shown!r} cannot be opened ({exc.strerror})") from None
    try:
        return fd, check_regular(fd, max_bytes, subject=repr(shown))
    except BaseException:
        os.close(fd)
        raise


def check_regular(fd: int, max_bytes: int, subject: str = "the upload") -> int:
    """The size of the open file `fd`, which must be a regular file of at most `max_bytes` (the
    service checks a descriptor it is handed as the server checked the file it opened); `subject`
    names the file in the refusal."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{subject} is a {_kind(info.st_mode)}, not a regular file; only files can be uploaded")
    if info.st_size > max_bytes:
        raise InputError(f"the file is {info.st_size / 2**20:.1f} MB; the sandbox accepts at most "
                         f"{max_bytes / 2**20:.0f} MB")
    return info.st_size


def write_into_home(home: int, parts: list[str], source: int, max_bytes: int) -> int:
    """Copy the open host file `source` to home/parts; returns bytes written.

    The existing target is never opened: a new file is written under a random name and renamed
    over it, so a FIFO, a hard link or anything else sandboxed code left there can neither block
    the call nor be written through. Only a regular file (or nothing) may stand at the target.
    """
    if not parts:
        raise InputError("give a file path inside /home/user, not the home folder itself")
    directory = _open_dir_chain(home, parts[:-1], create=True)
    try:
        try:
            existing = os.stat(parts[-1], dir_fd=directory, follow_symlinks=False)
        except FileNotFoundError:
            existing = None
        if existing is not None and not stat.S_ISREG(existing.st_mode):
            raise InputError(f"{parts[-1]!r} in the sandbox is a {_kind(existing.st_mode)}, not a file; "
                             "upload under another name or delete it first")
        temporary = f".upload-{secrets.token_hex(8)}"
        out = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                      dir_fd=directory)
        try:
            try:
                written = copy_capped(source, out, max_bytes)
            finally:
                os.close(out)
            os.rename(temporary, parts[-1], src_dir_fd=directory, dst_dir_fd=directory)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary, dir_fd=directory)
            raise
        return written
    finally:
        os.close(directory)


def open_regular_in_home(home: int, parts: list[str], max_bytes: int) -> int:
    """A read descriptor for the regular file home/parts (never a symlink, FIFO or device, and
    opened without blocking); refuses files over `max_bytes`."""
    if not parts:
        raise InputError("give the path of a file inside /home/user")
    directory = _open_dir_chain(home, parts[:-1], create=False)
    try:
        try:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=directory)
        except FileNotFoundError:
            raise InputError(f"file not found in the sandbox: /home/user/{'/'.join(parts)}") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise InputError("the sandbox file is a symlink; copy the real file instead") from None
            raise
    finally:
        os.close(directory)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InputError("the sandbox path is not a regular file")
        if info.st_size > max_bytes:
            raise InputError(f"the file is {info.st_size / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB")
    except BaseException:
        os.close(fd)
        raise
    return fd


def copy_capped(source: int, target: int, max_bytes: int) -> int:
    """Copy between descriptors; refuses a source that grows past `max_bytes` while being read."""
    copied = 0
    while chunk := os.read(source, COPY_CHUNK):
        copied += len(chunk)
        if copied > max_bytes:
            raise InputError("the file grew past the size limit while being copied")
        view = memoryview(chunk)
        while view:
            view = view[os.write(target, view):]
    return copied


def plain_name(name: str) -> str:
    """A file name for inside the sandbox: its own name, without folders (spaces and Unicode kept)."""
    base = posixpath.basename(name.replace("\\", "/")).replace("\x00", "").strip()
    return base if base not in ("", ".", "..") else "file"
