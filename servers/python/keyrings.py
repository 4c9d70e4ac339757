"""A fresh, empty kernel session keyring for each sandbox.

A server started from a login session or a service manager has a session keyring, and children
share it: without this, code in a sandbox could search and read the server's keys (and one
sandbox another's). The syscall filter refuses the keyring calls as well; this keeps the keys out
of reach even where the filter cannot be loaded.
"""

from __future__ import annotations

import contextlib
import ctypes
import platform
from collections.abc import Callable

KEYCTL_JOIN_SESSION_KEYRING = 1
# keyctl's number differs per architecture; where it is unknown the filter alone guards the keys.
_SYS_KEYCTL = {"x86_64": 250, "aarch64": 219, "arm64": 219, "i386": 288, "i686": 288, "ppc64le": 271,
               "s390x": 280, "riscv64": 219}


def fresh_session_joiner() -> Callable[[], None]:
    """A function for a child between fork and exec (resolved here, so the child only calls it)."""
    number = _SYS_KEYCTL.get(platform.machine())
    if number is None:
        return lambda: None
    syscall = ctypes.CDLL(None, use_errno=True).syscall

    def join() -> None:
        # NULL name: a new anonymous keyring that nothing else holds. A failure (keyrings compiled
        # out, a container's own filter) leaves the filter as the guard.
        with contextlib.suppress(Exception):
            syscall(number, KEYCTL_JOIN_SESSION_KEYRING, None)

    return join
