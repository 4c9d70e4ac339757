"""Open a path inside the allowed roots once, so that what was checked is what gets read.

Resolving a name (realpath) and opening it again later leaves a window in which a folder or file on
the way can be swapped for a symlink pointing out of the roots. Here the path is resolved by the
kernel, or component by component, relative to descriptors of folders already known to be inside a
root, and the result is a descriptor of the final object itself (`O_PATH`: it reads nothing and
cannot block, whatever the object is). Whoever holds it can check its type with `fstat` and read it
through `/proc/self/fd/N` without ever looking the name up again.

Two ways, one result:
- `openat2(root, rest, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)` (Linux 5.6+) in one system call
  when the path is spelled under a root and its symlinks stay under that root;
- otherwise a walk: each component opened with `O_PATH | O_NOFOLLOW` relative to its parent's
  descriptor; a symlink is read (`readlinkat` on its own descriptor) and its target walked the same
  way, so symlinks inside the roots keep working, including absolute ones and ones from one root
  into another, while any step that leaves every root is refused. `/proc` "magic" links are read as
  the text they show, never followed as magic.
Outside the roots only the folders above a root are passed, by name (a root spelled through a
symlink, such as /tmp on some systems, still works); the roots themselves are trusted as configured.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from typing import Literal

O_PATH = getattr(os, "O_PATH", 0)
O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
# Without O_PATH (not Linux) a lookup opens for reading: non-blocking, so a FIFO still cannot block.
_LOOKUP = (O_PATH or (os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))) | O_CLOEXEC
MAX_SYMLINKS = 40  # as the kernel's own limit

Why = Literal["outside", "missing", "loop", "denied", "too long"]


class Refused(Exception):
    """The path cannot be opened inside the roots; `why` says which way it failed."""

    def __init__(self, why: Why) -> None:
        super().__init__(why)
        self.why: Why = why


@dataclass(frozen=True)
class Found:
    fd: int  # O_PATH descriptor of the object the path names (symlinks resolved); the caller closes it
    path: str  # its real absolute path, for messages and labels only: never reopen it by name


def open_beneath(candidate: str, roots: list[str]) -> Found:
    """The object `candidate` (absolute) names, opened once, inside one of `roots` (real paths)."""
    fast = _try_openat2(candidate, roots)
    if fast is not None:
        return fast
    return _walk(candidate, roots)


# ---- openat2 -----------------------------------------------------------------------------------

_SYS_OPENAT2 = 437  # the same number on every architecture that has it
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_BENEATH = 0x08
_openat2_state: dict[str, object] = {}


def _openat2_call():
    """The ctypes wrapper, or None when the kernel or a seccomp policy does not offer openat2."""
    if "call" in _openat2_state:
        return _openat2_state["call"]
    call = None
    if O_PATH and os.path.isdir("/proc/self/fd"):
        import ctypes

        class OpenHow(ctypes.Structure):
            _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]

        libc = ctypes.CDLL(None, use_errno=True)
        syscall = libc.syscall
        syscall.restype = ctypes.c_long
        syscall.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(OpenHow), ctypes.c_size_t]

        def call(dir_fd: int, rest: str) -> int:
            how = OpenHow(O_PATH | O_CLOEXEC, 0, _RESOLVE_BENEATH | _RESOLVE_NO_MAGICLINKS)
            result = syscall(_SYS_OPENAT2, dir_fd, os.fsencode(rest), ctypes.byref(how), ctypes.sizeof(how))
            if result < 0:
                raise OSError(ctypes.get_errno(), "openat2")
            return int(result)

    _openat2_state["call"] = call
    return call


def _split_under_root(candidate: str, roots: list[str]) -> tuple[str, str] | None:
    """(root, the rest) for the longest root `candidate` is spelled under, if any."""
    best: tuple[str, str] | None = None
    for root in roots:
        prefix = root.rstrip("/") + "/"
        if candidate == root or candidate.startswith(prefix):
            rest = candidate[len(prefix):] if candidate != root else ""
            if best is None or len(root) > len(best[0]):
                best = (root, rest)
    return best


def _try_openat2(candidate: str, roots: list[str]) -> Found | None:
    """One system call when it can decide; None hands the path to the walk (which decides everything
    openat2 refuses to: absolute symlinks, symlinks into another root, magic links)."""
    call = _openat2_call()
    split = _split_under_root(candidate, roots)
    if call is None or split is None:
        return None
    root, rest = split
    try:
        root_fd = os.open(root, O_PATH | O_DIRECTORY | O_CLOEXEC)
    except OSError:
        return None
    try:
        fd = call(root_fd, rest or ".")
    except OSError as exc:
        if exc.errno in (errno.ENOSYS, errno.EPERM):  # no openat2 here (old kernel, seccomp): stop trying
            _openat2_state["call"] = None
            return None
        if exc.errno == errno.EACCES:
            raise Refused("denied") from None
        return None  # ENOENT, EXDEV, ELOOP, EAGAIN...: the walk gives the precise answer
    finally:
        os.close(root_fd)
    try:
        real = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        os.close(fd)
        return None
    return Found(fd, real)


# ---- the component walk ------------------------------------------------------------------------

def _parts(path: str) -> list[str]:
    """Components to walk, as a stack (the next one last)."""
    return [part for part in reversed(path.split("/")) if part not in ("", ".")]


def _walk(candidate: str, roots: list[str]) -> Found:
    root_set = set(roots)
    pending = _parts(candidate)
    here = "/"
    folders: list[int] = []  # descriptors from the root we are in down to `here`; empty while outside the roots
    links = 0

    def leave_roots() -> None:
        while folders:
            os.close(folders.pop())

    def enter_if_root(path: str) -> None:
        if path in root_set:
            try:
                folders.append(os.open(path, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC))
            except OSError:
                raise Refused("missing") from None

    def follow(target: str) -> None:
        nonlocal here, links
        links += 1
        if links > MAX_SYMLINKS:
            raise Refused("loop")
        pending.extend(_parts(target))
        if target.startswith("/"):
            leave_roots()
            here = "/"
            enter_if_root("/")

    try:
        enter_if_root("/")
        while pending:
            part = pending.pop()
            if part == "..":
                if len(folders) > 1:
                    os.close(folders.pop())
                else:
                    leave_roots()  # above a root: outside unless that folder is a root too
                    enter_if_root(os.path.dirname(here))
                here = os.path.dirname(here)
                continue
            step = os.path.join(here, part)
            if not folders:
                passed = _step_outside(step, roots, root_set)
                if passed == "root":
                    enter_if_root(step)
                if passed in ("root", "folder"):
                    here = step
                else:  # a symlink, with its target made absolute
                    follow(passed)
                continue
            try:
                fd = os.open(part, _LOOKUP | O_NOFOLLOW, dir_fd=folders[-1])
            except PermissionError:
                raise Refused("denied") from None
            except OSError as exc:
                if exc.errno == errno.ELOOP and not O_PATH:  # a symlink, where O_NOFOLLOW cannot open one
                    follow(os.readlink(part, dir_fd=folders[-1]))
                    continue
                if exc.errno == errno.ENAMETOOLONG:
                    raise Refused("too long") from None
                raise Refused("missing") from None  # not there, or a file where a folder is needed
            mode = os.fstat(fd).st_mode
            if stat.S_ISLNK(mode):
                try:
                    target = os.readlink("", dir_fd=fd)  # readlinkat on the link's own descriptor: no second lookup
                finally:
                    os.close(fd)
                follow(target)
                continue
            if not pending:
                return Found(fd, step)
            if not stat.S_ISDIR(mode):
                os.close(fd)
                raise Refused("missing")  # a file where the path needs a folder
            folders.append(fd)
            here = step
        # The path ended on a folder reached by `..` or a symlink to a folder.
        if not folders:
            raise Refused("outside")
        return Found(folders.pop(), here)
    finally:
        leave_roots()


def _step_outside(step: str, roots: list[str], root_set: set[str]) -> str:
    """One step while no root has been entered: "root", "folder" (a folder above a root, passed by
    name) or a symlink's absolute target (then walked like the rest); anything else is outside."""
    if step in root_set:
        return "root"
    try:
        info = os.lstat(step)
        if stat.S_ISLNK(info.st_mode):
            target = os.readlink(step)
            return target if target.startswith("/") else os.path.join(os.path.dirname(step), target)
    except OSError:
        raise Refused("outside") from None
    above_a_root = any(root.startswith(step.rstrip("/") + "/") for root in roots)
    if above_a_root and stat.S_ISDIR(info.st_mode):
        return "folder"
    raise Refused("outside")
