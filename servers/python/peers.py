"""Who is on the other end of a sandbox service socket, from the kernel's word (SO_PEERCRED).

The socket's folder is closed to other users; this is the second lock. The service serves a peer
only when the kernel says it runs as the same user, in the same user and pid namespaces as the
service, and is not one of the service's own descendants. A sandbox fails all three ways: bubblewrap
maps its user to ours, so the uid alone would not tell, but its processes live in namespaces of
their own and descend from the service (in the weaker process mode, the last check is the one
that holds). The server checks the service the same way (same uid), so a socket planted by someone
else is never sent code or files.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import struct
from dataclasses import dataclass

_UCRED = struct.Struct("3i")
_MAX_ANCESTORS = 256
SO_PEERPIDFD = 77  # Linux 6.5+; not in Python 3.11's socket module


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int


def credentials(sock: socket.socket) -> Peer:
    pid, uid, gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    return Peer(pid, uid, gid)


def _namespace(pid: int | str, kind: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{kind}")


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as stat:
        return int(stat.read().rsplit(b")", 1)[1].split()[1])


def _descends_from(pid: int, ancestor: int) -> bool:
    for _ in range(_MAX_ANCESTORS):
        if pid == ancestor:
            return True
        if pid <= 1:
            return False
        pid = _parent(pid)
    return True  # a chain this long is not one of ours to trust


def _peer_pidfd(sock: socket.socket) -> int | None:
    """A pidfd of the process that connected, where the kernel gives one: while it says that process
    is alive, its pid cannot have been handed to another process during the checks."""
    try:
        return struct.unpack("i", sock.getsockopt(socket.SOL_SOCKET, SO_PEERPIDFD, 4))[0]
    except OSError:
        return None


def check(sock: socket.socket) -> tuple[Peer, str | None]:
    """The peer of `sock` and why it must not be served (None: serve it)."""
    peer = credentials(sock)
    pidfd = _peer_pidfd(sock)
    try:
        why = refusal(peer)
        if why is None and pidfd is not None and select.select([pidfd], [], [], 0)[0]:
            why = f"pid {peer.pid} exited before it could be checked"
        return peer, why
    finally:
        if pidfd is not None:
            with contextlib.suppress(OSError):
                os.close(pidfd)


def refusal(peer: Peer) -> str | None:
    """Why the service must not serve `peer`, or None. Anything that cannot be checked is refused."""
    if peer.uid != os.getuid():
        return f"uid {peer.uid} is not the service's user"
    if peer.pid <= 0:
        return "the peer's process is not visible from here (another pid namespace)"
    try:
        for kind in ("user", "pid"):
            if _namespace(peer.pid, kind) != _namespace("self", kind):
                return f"pid {peer.pid} is in another {kind} namespace (a sandbox)"
        if _descends_from(peer.pid, os.getpid()):
            return f"pid {peer.pid} was started by the service (a sandbox)"
    except (OSError, ValueError, IndexError) as exc:
        return f"pid {peer.pid} could not be checked ({type(exc).__name__})"
    return None
