"""What an opened descriptor is, in words an agent understands, for the rule "only regular files".

Tools read documents, images and media: regular files. Anything else is refused before a byte is
read: a FIFO would block the reader forever, a device can be endless (/dev/zero) or have side
effects when opened, a socket cannot be opened at all, and a folder is not a document. Regular files
of the kernel's pseudo-filesystems (/proc, /sys and their kind) are refused too: their sizes are
made up (0 or 4096), reading them can block or never end, and they show live process state such as
another program's environment, which is no input for a tool.
"""

from __future__ import annotations

import os
import stat

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a unix socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISLNK, "a symbolic link"),
)

# statfs f_type values (linux/magic.h) of filesystems whose files are views of kernel state.
_PSEUDO_FILESYSTEMS = {
    0x9FA0: "proc",
    0x62656572: "sysfs",
    0x64626720: "debugfs",
    0x74726163: "tracefs",
    0x73636673: "securityfs",
    0x27E0EB: "cgroup",
    0x63677270: "cgroup2",
    0xCAFE4A11: "bpf",
    0x62656570: "configfs",
    0xDE5E81E4: "efivarfs",
    0x6165676C: "pstore",
    0x65735543: "fusectl",
    0x1CD1: "devpts",
    0x42494E4D: "binfmt_misc",
    0xF97CFF8C: "selinuxfs",
    0x19800202: "mqueue",
    0x6E736673: "nsfs",
}


def kind_of(mode: int) -> str | None:
    """None for a regular file, else what it is ("a FIFO (named pipe)", "a directory", ...)."""
    if stat.S_ISREG(mode):
        return None
    for test, words in _KINDS:
        if test(mode):
            return words
    return "not a regular file"


def pseudo_filesystem(fd: int) -> str | None:
    """The name of the kernel pseudo-filesystem `fd` lives on, or None for a real one (or when the
    platform cannot tell)."""
    f_type = _fstatfs_type(fd)
    return None if f_type is None else _PSEUDO_FILESYSTEMS.get(f_type)


_fstatfs = None


def _fstatfs_type(fd: int) -> int | None:
    global _fstatfs
    if not hasattr(os, "O_PATH"):  # not Linux: no such filesystems to fear, and no fstatfs layout to trust
        return None
    if _fstatfs is None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        _fstatfs = libc.fstatfs
        _fstatfs.argtypes = [ctypes.c_int, ctypes.c_void_p]
        _fstatfs.restype = ctypes.c_int
    import ctypes

    buffer = ctypes.create_string_buffer(256)  # struct statfs is 120 bytes on 64-bit Linux
    if _fstatfs(fd, buffer) != 0:
        return None
    # f_type is the first field, a C long (__fsword_t) on the 64-bit platforms this runs on.
    return ctypes.c_long.from_buffer(buffer).value & 0xFFFFFFFF
