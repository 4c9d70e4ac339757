"""Where the sandbox service of one user keeps its socket, lock, log and sandboxes.

The folder is `TOOLSUITE_SANDBOX_DIR` (default `$TMPDIR/toolsuite-sandboxes-<uid>`), which must be a
real folder owned by this user and closed to everyone else (0700): it holds the socket that runs
code, so a folder another user made first (in a shared /tmp) is refused, never used. Inside it, the
service gets a folder of its own, `d-<key>`: the key hashes the service's own settings
(`TOOLSUITE_SANDBOX_MAX`, `TOOLSUITE_SANDBOX_SERVICE_IDLE`), the folder, the Python and the sandbox
code itself, so servers of one user and one installation share a service and a newer version never
talks to an older one. Limits, isolation and network are not in the key: they travel with each
sandbox's create request (`config.py`).

Sockets are bound and reached as `/proc/self/fd/<folder fd>/sandboxd.sock`: the folder is checked
once, on an open descriptor, and the path stays short whatever the folder's own path (a unix socket
address holds at most 107 bytes).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from shared import settings
from shared.errors import NotConfigured

log = logging.getLogger("toolsuite.sandbox.runtime")

SOCKET_NAME = "sandboxd.sock"
LOCK_NAME = "sandboxd.lock"
LOG_NAME = "sandboxd.log"
# The settings of the service itself; every other sandbox setting travels with each create
# request (config.py), so servers with different limits still share one service.
SERVICE_SETTINGS = ("TOOLSUITE_SANDBOX_MAX", "TOOLSUITE_SANDBOX_SERVICE_IDLE")
# The files whose code decides what a sandbox is and how the service speaks: a change to any of them
# is a new service rather than a conversation with an old one.
_CODE_FILES = ("bwrap.py", "daemon.py", "files.py", "interpreter.py", "kernel.py", "keyrings.py", "limits.py",
               "lost.py", "peers.py", "protocol.py", "runtime.py", "sandbox.py", "spawner.py", "syscall_filter.py",
               "wire.py", "config.py", "results.py")
_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def base_folder() -> Path:
    configured = settings.text("TOOLSUITE_SANDBOX_DIR")
    if configured:
        return Path(configured).expanduser()
    return Path(tempfile.gettempdir()) / f"toolsuite-sandboxes-{os.getuid()}"


@functools.cache
def _code_digest() -> str:
    digest = hashlib.sha256()
    here = Path(__file__).parent
    for name in _CODE_FILES:
        with contextlib.suppress(OSError):
            digest.update(name.encode() + b"\0" + (here / name).read_bytes())
    return digest.hexdigest()


def configuration_key() -> str:
    """What makes two servers share a service (see the module docstring)."""
    parts = [f"{name}={settings.text(name)}" for name in SERVICE_SETTINGS]
    parts += [f"folder={os.path.realpath(base_folder())}", f"python={sys.executable}", f"code={_code_digest()}"]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def daemon_environment() -> dict[str, str]:
    """The service's whole environment: its own settings and nothing else (no model keys, no tokens:
    it outlives the server that started it, and its environment with it)."""
    keep = {name: value for name, value in os.environ.items()
            if name in (*SERVICE_SETTINGS, "PATH", "TMPDIR", "TOOLSUITE_LOG_LEVEL")}
    package_root = str(Path(__file__).resolve().parent.parent.parent)
    return {**keep, "PYTHONPATH": package_root, "LANG": "C.UTF-8"}


def _refuse(path: Path, why: str) -> NotConfigured:
    log.error("sandbox folder %s: %s", path, why)
    # The message reaches the agent: it names the setting, not the host path.
    return NotConfigured(f"the sandbox folder (TOOLSUITE_SANDBOX_DIR) {why}; point TOOLSUITE_SANDBOX_DIR at a "
                         "folder of this user's that no one else can open")


def open_private_folder(path: Path, parent_fd: int | None = None) -> int:
    """`path` (relative to `parent_fd` when given) as a descriptor, made if missing, and checked: a
    real folder (not a symlink), owned by this user, open to no one else. A folder of ours with wider
    permissions is narrowed; anyone else's is refused."""
    name: str | Path = path.name if parent_fd is not None else path
    if parent_fd is None:
        path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, 0o700, dir_fd=parent_fd)
    try:
        fd = os.open(name, _FOLDER_FLAGS, dir_fd=parent_fd)
    except OSError as exc:
        raise _refuse(path, f"cannot be opened as a folder ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISDIR(info.st_mode):
            raise _refuse(path, "is not a folder")
        if info.st_uid != os.getuid():
            raise _refuse(path, f"belongs to another user (uid {info.st_uid})")
        if info.st_mode & 0o077:
            os.fchmod(fd, 0o700)
    except BaseException:
        os.close(fd)
        raise
    return fd


@dataclass(frozen=True)
class Place:
    """One configuration's folder, open."""

    key: str
    path: Path  # for logs and for the service's own sandbox folders; reached through `fd` otherwise
    fd: int

    def via_fd(self, name: str) -> str:
        """A short path to `name` in the folder that goes through the checked descriptor."""
        return f"/proc/self/fd/{self.fd}/{name}"

    def open_file(self, name: str, flags: int, mode: int = 0o600) -> int:
        return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=self.fd)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def open_place(key: str | None = None) -> Place:
    """The folder of this configuration (or of `key`), made and checked."""
    key = key or configuration_key()
    base = base_folder()
    base_fd = open_private_folder(base)
    try:
        fd = open_private_folder(base / f"d-{key}", parent_fd=base_fd)
    finally:
        os.close(base_fd)
    return Place(key, Path(os.path.realpath(base)) / f"d-{key}", fd)


def open_folder_as_place(folder: Path) -> Place:
    """The service's side: the folder it was started for, checked again (it trusts no argument)."""
    parent_fd = open_private_folder(folder.parent)
    try:
        fd = open_private_folder(folder, parent_fd=parent_fd)
    finally:
        os.close(parent_fd)
    return Place(folder.name.removeprefix("d-"), Path(os.path.realpath(folder)), fd)
