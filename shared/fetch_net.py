"""The network layer under the URL fetcher: connections go only to the address that was checked,
and no socket operation outlives the fetch's deadline or its call.

Per-operation timeouts alone are not enough: a server that sends one byte every half second never
trips a read timeout, and a worker thread blocked in `recv` keeps running after the tool call that
started it has timed out or been cancelled. So every connect, handshake, read and write here waits
in short slices; between slices it checks the fetch's total deadline and whether the AnyIO call
that runs this thread has been cancelled (a timed-out tool call is a cancelled one), and gives up
when either has happened. The thread then unwinds normally and the fetcher removes its temporary
file.
"""

from __future__ import annotations

import errno
import ipaddress
import select
import socket
import ssl
import time
from typing import Any

import httpcore

from shared.errors import TimedOut

SLICE = 0.25  # the longest a socket call blocks before the deadline and cancellation are checked again


class Abandoned(TimedOut):
    """The tool call that started the fetch was cancelled or timed out."""


def _call_abandoned() -> bool:
    """True when this is an AnyIO worker thread whose calling task has been cancelled."""
    import anyio.from_thread

    try:
        anyio.from_thread.check_cancelled()
    except RuntimeError:  # not an AnyIO worker thread (NoEventLoopError): nobody to cancel it
        return False
    except BaseException:  # the event loop's cancellation exception
        return True
    return False


class Deadline:
    """The total time one fetch may take (all hops, headers and body), plus the call's cancellation."""

    def __init__(self, seconds: float, what: str) -> None:
        self.seconds = seconds
        self.what = what
        self.end = time.monotonic() + seconds

    def check(self) -> None:
        if time.monotonic() >= self.end:
            raise TimedOut(f"{self.what} exceeded its {self.seconds:g} s limit")
        if _call_abandoned():
            raise Abandoned(f"{self.what} was abandoned: the tool call was cancelled or timed out")

    def wait(self, operation_end: float | None) -> float:
        """How long the next blocking socket call may wait; raises when the fetch must stop."""
        self.check()
        now = time.monotonic()
        limit = min(SLICE, self.end - now)
        if operation_end is not None:
            limit = min(limit, operation_end - now)
        return max(limit, 0.001)


def _operation_end(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _expired(operation_end: float | None) -> bool:
    return operation_end is not None and time.monotonic() >= operation_end


class GuardedStream(httpcore.NetworkStream):
    """A socket whose every blocking call waits in slices under a `Deadline`."""

    def __init__(self, sock: socket.socket, deadline: Deadline) -> None:
        self._sock = sock
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        end = _operation_end(timeout)
        while True:
            self._sock.settimeout(self._deadline.wait(end))
            try:
                return self._sock.recv(max_bytes)
            except TimeoutError:
                if _expired(end):
                    raise httpcore.ReadTimeout("no data within the read timeout") from None
            except OSError as exc:
                raise httpcore.ReadError(str(exc)) from None

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        end = _operation_end(timeout)
        while buffer:
            self._sock.settimeout(self._deadline.wait(end))
            try:
                sent = self._sock.send(buffer)
            except TimeoutError:
                if _expired(end):
                    raise httpcore.WriteTimeout("could not send within the write timeout") from None
                continue
            except OSError as exc:
                raise httpcore.WriteError(str(exc)) from None
            buffer = buffer[sent:]

    def close(self) -> None:
        self._sock.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        end = _operation_end(timeout)
        try:
            wrapped = ssl_context.wrap_socket(self._sock, server_hostname=server_hostname,
                                              do_handshake_on_connect=False)
            while True:
                wrapped.settimeout(self._deadline.wait(end))
                try:
                    wrapped.do_handshake()
                    break
                except TimeoutError:  # the handshake resumes where it stopped
                    if _expired(end):
                        raise httpcore.ConnectTimeout("the TLS handshake timed out") from None
        except (ssl.SSLError, OSError) as exc:
            self._sock.close()
            raise httpcore.ConnectError(f"TLS failed: {exc}") from None
        except BaseException:
            self._sock.close()
            raise
        return GuardedStream(wrapped, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object" and isinstance(self._sock, ssl.SSLSocket):
            return self._sock._sslobj  # type: ignore[attr-defined]
        if info == "client_addr":
            return self._sock.getsockname()
        if info == "server_addr":
            return self._sock.getpeername()
        if info == "socket":
            return self._sock
        if info == "is_readable":
            readable, _, _ = select.select([self._sock], [], [], 0)
            return bool(readable)
        return None


class PinnedBackend(httpcore.NetworkBackend):
    """Connects every request to one checked address, whatever host name the URL carries (the name
    still goes into the Host header and TLS SNI), so DNS cannot answer differently at connect time."""

    def __init__(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address, deadline: Deadline) -> None:
        self._address = address
        self._deadline = deadline

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        family = socket.AF_INET6 if self._address.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            code = sock.connect_ex((str(self._address), port))
            if code not in (0, errno.EINPROGRESS):
                raise httpcore.ConnectError(f"connection failed: {errno.errorcode.get(code, code)}")
            end = _operation_end(timeout)
            while code:
                _, writable, _ = select.select([], [sock], [], self._deadline.wait(end))
                if writable:
                    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if code:
                        raise httpcore.ConnectError(f"connection failed: {errno.errorcode.get(code, code)}")
                    break
                if _expired(end):
                    raise httpcore.ConnectTimeout("timed out connecting")
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except BaseException:
            sock.close()
            raise
        return GuardedStream(sock, self._deadline)

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Any = None) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are never fetched")

    def sleep(self, seconds: float) -> None:
        time.sleep(min(seconds, max(self._deadline.end - time.monotonic(), 0)))
