"""The sandbox's seccomp program: system calls that research code never needs are refused.

Built with libseccomp (the library systemd, podman and flatpak use; it knows every architecture's
syscall numbers and emits an optimised BPF program) through its Python bindings: the official
`seccomp` module when the system has it, else `pyseccomp` from PyPI (pure Python over ctypes, the
same API), so no compiler is needed. Built once per server process; bubblewrap loads it with
`--seccomp FD` just before it starts the sandbox's supervisor, so every process in the sandbox
runs under it and none can remove it.

The default is to allow: the list below is what a kernel exploit or an escape needs and a notebook
does not (tracing other processes, mounting, keyrings, eBPF, userfaultfd, io_uring, namespaces,
kernel modules, the clock, the console). Refused calls fail with EPERM, so programs see an
ordinary permission error; clone3 fails with ENOSYS so the C library falls back to clone, whose
namespace flags can be checked. System calls of other architectures (32-bit int 0x80) kill the
process: libseccomp's default for a foreign architecture.
"""

from __future__ import annotations

import errno
import functools
import logging
from typing import Any

log = logging.getLogger("toolsuite.sandbox.seccomp")

REFUSED = (
    # other processes' memory and descriptors
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
    # file systems and the root
    "mount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig", "fsmount", "fspick", "move_mount",
    "open_tree", "mount_setattr", "open_by_handle_at", "name_to_handle_at", "quotactl", "quotactl_fd",
    # keyrings (the server's session keys), eBPF, userfaultfd (exploit timing), io_uring, perf
    "keyctl", "add_key", "request_key", "bpf", "userfaultfd", "io_uring_setup", "io_uring_enter",
    "io_uring_register", "perf_event_open", "fanotify_init", "lookup_dcookie",
    # namespaces (nested user namespaces above all): see also the clone rules below
    "unshare", "setns",
    # the kernel and the machine
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot", "swapon",
    "swapoff", "acct", "syslog", "vhangup", "iopl", "ioperm", "modify_ldt", "uselib", "settimeofday",
    "clock_settime", "clock_adjtime", "nfsservctl",
)

# clone() flags that would make new namespaces (CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER,
# NEWPID, NEWNET).
CLONE_NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)
# ioctl requests that push input into a terminal (TIOCSTI, TIOCLINUX).
TERMINAL_INJECTION = (0x5412, 0x541C)


def _bindings() -> Any:
    try:
        import seccomp  # the official bindings (Debian: python3-seccomp), when present
    except ImportError:
        import pyseccomp as seccomp  # raises RuntimeError when libseccomp itself is missing
    return seccomp


@functools.cache
def program() -> bytes:
    """The BPF program bubblewrap loads. Raises ImportError/RuntimeError/OSError when libseccomp or
    its bindings are missing (the caller turns that into a message saying what to install)."""
    import os
    import tempfile

    seccomp = _bindings()
    refuse = seccomp.ERRNO(errno.EPERM)
    rules = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    skipped = []
    for name in REFUSED:
        if not _add(rules, refuse, name):
            skipped.append(name)
    _add(rules, seccomp.ERRNO(errno.ENOSYS), "clone3")
    for flag in CLONE_NAMESPACE_FLAGS:
        _add(rules, refuse, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    for request in TERMINAL_INJECTION:
        _add(rules, refuse, "ioctl", seccomp.Arg(1, seccomp.MASKED_EQ, 0xFFFFFFFF, request))
    if skipped:
        log.info("seccomp: this libseccomp does not know %s (older kernel headers); not filtered", skipped)
    with tempfile.TemporaryFile() as handle:
        rules.export_bpf(handle)
        handle.flush()
        os.lseek(handle.fileno(), 0, os.SEEK_SET)
        return handle.read()


def _add(rules: Any, action: int, name: str, *args: Any) -> bool:
    try:
        rules.add_rule(action, name, *args)
    except (OSError, ValueError, RuntimeError):
        return False
    return True


def unavailable_reason() -> str | None:
    """None when the filter can be built; else what is missing and how to add it."""
    try:
        program()
    except (ImportError, RuntimeError, OSError) as exc:
        return (f"the sandbox's system-call filter cannot be built ({type(exc).__name__}: {exc}): install "
                "libseccomp (apt-get install libseccomp2, dnf install libseccomp) and the Python package "
                "pyseccomp (pip install 'toolsuite[python]')")
    return None
