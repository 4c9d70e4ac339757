"""The bubblewrap command line of one sandbox: namespaces, what is bound where, the home's quota.

Knows nothing about requests or files: `command()` returns the argv that starts a sandbox's
supervisor, given the descriptors (seccomp program, info pipe) the caller passes to bwrap.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from shared import settings
from shared.errors import NotConfigured

SANDBOX_UID = 1000
SANDBOX_HOME = "/home/user"
KERNEL_SOURCE = Path(__file__).with_name("kernel.py")
# The supervisor, the interpreter it starts and the wire format both share, bound read-only.
KERNEL_FILES = ("kernel.py", "interpreter.py", "protocol.py")
KERNEL_DIR_INSIDE = "/opt/toolsuite"
KERNEL_INSIDE = f"{KERNEL_DIR_INSIDE}/kernel.py"

# System folders every program needs, read-only. /etc is not bound whole (it holds secrets such as
# /etc/shadow); only the files below are.
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/fonts",
              "/etc/ssl/certs", "/etc/alternatives", "/etc/mime.types", "/etc/nsswitch.conf")


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


def require_bwrap(bwrap: str | None) -> str:
    """`bwrap` (the program the server found), or an error that says what to install."""
    if bwrap is None:
        raise NotConfigured(
            "bubblewrap (bwrap) is not installed, so no sandbox can be made: install it "
            "(apt-get install bubblewrap, dnf install bubblewrap), or set "
            "TOOLSUITE_SANDBOX_ISOLATION=process to run code as a plain limited process, which can "
            "read every file the server can and reach the network (see the README)"
        )
    return bwrap


@functools.cache
def supports(bwrap: str, option: str) -> bool:
    """Whether this bubblewrap knows `option` (--size came in 0.7, --disable-userns in 0.8)."""
    try:
        usage = subprocess.run([bwrap, "--help"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return option in usage


def network_allowed() -> bool:
    return settings.flag("TOOLSUITE_SANDBOX_NETWORK")


def sandbox_env(home: str) -> dict[str, str]:
    return {
        "HOME": home,
        "USER": "user",
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TMPDIR": "/tmp",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": "/tmp/matplotlib",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def sandbox_python() -> str:
    return settings.text("TOOLSUITE_SANDBOX_PYTHON") or sys.executable


def _python_prefixes(python: str) -> list[str]:
    """Folders the sandbox's interpreter needs, bound read-only at the same paths."""
    prefixes = {os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix),
                os.path.dirname(os.path.dirname(os.path.realpath(python)))}
    return sorted(p for p in prefixes if not any(p == d or p.startswith(d + "/") for d in ("/usr",)))


@dataclass(frozen=True)
class Layout:
    """Where a sandbox's own files are on the host and how big its private file systems may be."""

    root: Path  # the sandbox's host folder (its passwd and group files)
    host_home: Path | None  # bound at /home/user when the home is not a tmpfs (old bubblewrap)
    quota_bytes: int  # size of the /home/user tmpfs, and of /tmp
    output_chars: int
    python: str  # the interpreter run inside
    network: bool


def home_is_tmpfs(bwrap: str) -> bool:
    return supports(bwrap, "--size")


def command(bwrap: str, layout: Layout, seccomp_fd: int | None, info_fd: int) -> list[str]:
    python = layout.python
    # --as-pid-1: the supervisor is the pid namespace's init, which sandboxed code cannot signal
    # and whose exit ends every process of the sandbox.
    argv = [bwrap, "--unshare-user", "--unshare-pid", "--as-pid-1", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--uid", str(SANDBOX_UID),
            "--gid", str(SANDBOX_UID), "--hostname", "sandbox", "--cap-drop", "ALL", "--info-fd", str(info_fd)]
    if supports(bwrap, "--disable-userns"):
        argv.append("--disable-userns")
    if seccomp_fd is not None:
        argv += ["--seccomp", str(seccomp_fd)]
    if not layout.network:
        argv.append("--unshare-net")
    for directory in _SYSTEM_DIRS:
        if os.path.islink(directory):
            argv += ["--symlink", os.readlink(directory), directory]
        elif os.path.isdir(directory):
            argv += ["--ro-bind", directory, directory]
    for path in _ETC_FILES:
        argv += ["--ro-bind-try", path, path]
    if layout.network:
        argv += ["--ro-bind-try", "/etc/resolv.conf", "/etc/resolv.conf", "--ro-bind-try", "/etc/hosts",
                 "/etc/hosts"]
    # A size-capped tmpfs is the quota: writes past it fail with ENOSPC inside the sandbox and the
    # host's disk never sees them.
    sized = ["--size", str(layout.quota_bytes)] if layout.host_home is None else []
    argv += ["--ro-bind", str(layout.root / "etc" / "passwd"), "/etc/passwd",
             "--ro-bind", str(layout.root / "etc" / "group"), "/etc/group",
             # /tmp comes before the Python binds: an interpreter installed under /tmp (a CI
             # checkout, say) must be bound on top of the private /tmp, not hidden by it.
             "--proc", "/proc", "--dev", "/dev", *sized, "--tmpfs", "/tmp"]
    for prefix in _python_prefixes(python):
        argv += ["--ro-bind", prefix, prefix]
    for name in KERNEL_FILES:
        argv += ["--ro-bind", str(KERNEL_SOURCE.with_name(name)), f"{KERNEL_DIR_INSIDE}/{name}"]
    if layout.host_home is None:
        argv += [*sized, "--tmpfs", SANDBOX_HOME]
    else:
        argv += ["--bind", str(layout.host_home), SANDBOX_HOME]
    argv += ["--chdir", SANDBOX_HOME, "--clearenv"]
    for key, value in sandbox_env(SANDBOX_HOME).items():
        argv += ["--setenv", key, value]
    argv += ["--setenv", "KERNEL_OUTPUT_LIMIT", str(layout.output_chars)]
    # The sandbox's own root folder (where /etc, /opt... are made) becomes read-only too.
    argv += ["--remount-ro", "/"]
    return [*argv, "--", python, KERNEL_INSIDE]
