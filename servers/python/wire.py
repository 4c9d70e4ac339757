"""Frames between a server and the sandbox service: a 4-byte length, a JSON object, at most one descriptor.

A frame's size is read before its body, so a frame over the reader's cap is refused without being
read; a frame must arrive whole within `FRAME_SECONDS` once it has begun, so a peer that stops
mid-frame holds nothing for long. Descriptors ride on the frame's bytes (SCM_RIGHTS): the upload's
host file goes to the service, the file opened in a sandbox comes back, and no path crosses over.
Descriptors beyond the one a frame may carry are closed at once.
"""

from __future__ import annotations

import array
import contextlib
import json
import os
import socket
import struct

HEADER = struct.Struct(">I")
REQUEST_CAP = 8 * 2**20  # a 1,000,000-character cell with every character escaped is 6 MB
REPLY_CAP = 64 * 2**20  # the largest sandbox reply (protocol.reply_cap) is about 45 MB
FRAME_SECONDS = 30.0
MAX_FDS = 1
_CHUNK = 1 << 20


class FrameTooLarge(Exception):
    def __init__(self, size: int, cap: int) -> None:
        super().__init__(f"a frame of {size} bytes is over the cap of {cap} bytes")
        self.size = size
        self.cap = cap


class Malformed(Exception):
    """A frame that is not one JSON object, or carries more descriptors than allowed."""


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def encode(message: dict) -> bytes:
    """A frame's body. ASCII JSON: strings from a sandbox may hold lone surrogates, which UTF-8 cannot
    carry."""
    return json.dumps(message, separators=(",", ":")).encode("ascii")


def send(sock: socket.socket, message: dict, fds: tuple[int, ...] = ()) -> None:
    body = encode(message)
    header = HEADER.pack(len(body))
    # Header and body go out without being joined first: a 45 MB reply is not copied once more.
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    sent = sock.sendmsg([header, body], ancillary)
    if sent < len(header):
        sock.sendall(header[sent:])
        sent = len(header)
    if sent - len(header) < len(body):
        sock.sendall(memoryview(body)[sent - len(header):])


class Reader:
    """Reads frames from one socket, keeping the descriptors that came with them."""

    def __init__(self, sock: socket.socket, cap: int) -> None:
        self.sock = sock
        self.cap = cap

    def _read(self, size: int, fds: list[int], first: bool) -> bytearray | None:
        """Exactly `size` bytes (None: the peer closed before the first byte of a frame)."""
        data = bytearray()
        while len(data) < size:
            chunk, got, _flags, _addr = socket.recv_fds(self.sock, min(size - len(data), _CHUNK), MAX_FDS + 1,
                                                        socket.MSG_CMSG_CLOEXEC)
            fds.extend(got)
            if not chunk:
                if first and not data:
                    return None
                raise ConnectionError("the peer closed the connection in the middle of a frame")
            if first and not data:
                self.sock.settimeout(FRAME_SECONDS)  # begun: the rest must come soon
            data.extend(chunk)
        return data

    def read(self, idle_timeout: float | None = None) -> tuple[dict, list[int]] | None:
        """The next frame and its descriptors; None when the peer closed between frames.

        Waits `idle_timeout` seconds (None: for ever) for a frame to begin; raises TimeoutError,
        FrameTooLarge (the body is not read: drop the connection) and Malformed.
        """
        fds: list[int] = []
        self.sock.settimeout(idle_timeout)
        try:
            header = self._read(HEADER.size, fds, first=True)
            if header is None:
                return None
            (size,) = HEADER.unpack(header)
            if size > self.cap:
                raise FrameTooLarge(size, self.cap)
            body = self._read(size, fds, first=False) or bytearray()
            if len(fds) > MAX_FDS:
                raise Malformed(f"{len(fds)} descriptors came with one frame; at most {MAX_FDS} may")
            try:
                message = json.loads(body)
            except (ValueError, RecursionError):
                raise Malformed("the frame is not valid JSON") from None
            if not isinstance(message, dict):
                raise Malformed("the frame is not a JSON object")
        except BaseException:
            _close_all(fds)
            raise
        return message, fds
