"""A server's way to its sandboxes: the sandbox service of this user and configuration, started when absent.

`SandboxClient` has the same methods as `SandboxManager` (create, get, run_code, run_command,
put_file, open_file, remove), so the tools do not care where sandboxes live. Each request takes a
connection of its own from a small pool (so calls run side by side), sends one frame, and waits for
the answer. A connection opens only when the service's kernel-reported user is ours and it has
greeted us; when no service answers, one is started (`daemon.py`) and waited for. A service that
vanishes mid-call is reported as such; the next call starts a new one, which knows which sandboxes
were lost.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from servers.python import peers, runtime, wire
from servers.python.config import SandboxConfig
from servers.python.limits import SandboxLimits
from servers.python.results import (
    CodeResult,
    CommandResult,
    SandboxError,
    SandboxInfo,
    code_from_wire,
    command_from_wire,
    info_from_wire,
)
from shared.errors import InputError, NotConfigured

START_SECONDS = 20.0  # a service's start: Python, the sandbox modules, the seccomp program
HELLO_SECONDS = 10.0
LOG_KEEP_BYTES = 1 << 20
POOL_SIZE = 8  # idle connections kept per service


class _NoService(Exception):
    """Nothing (or only a service on its way out) answers at the socket."""


class _Connection:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = wire.Reader(sock, wire.REPLY_CAP)

    def usable(self) -> bool:
        # The service never speaks unasked: anything readable now is its end of the connection.
        try:
            return not select.select([self.sock], [], [], 0)[0]
        except (OSError, ValueError):
            return False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class RemoteSandbox:
    """A sandbox of the service, as `create` and `get` return it."""

    def __init__(self, client: SandboxClient, sandbox_id: str, info: SandboxInfo | None = None,
                 root: str | None = None, idle_timeout: float | None = None) -> None:
        self._client = client
        self.id = sandbox_id
        self._info = info
        self.root = Path(root) if root else None
        self._idle_timeout = idle_timeout

    def info(self) -> SandboxInfo:
        if self._info is None:
            raise SandboxError("no creation details for a sandbox looked up by id")
        return self._info

    @property
    def idle_timeout(self) -> float | None:
        return self._idle_timeout

    @idle_timeout.setter
    def idle_timeout(self, seconds: float) -> None:
        self._client.set_timeout(self.id, seconds)
        self._idle_timeout = seconds


def _reply_seconds() -> float:
    """How long a request may take: waiting for a busy sandbox, starting one, the call, the backstop."""
    return 2.0 * SandboxLimits.from_settings().wall_seconds_per_call + 120.0


class SandboxClient:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._places: dict[str, runtime.Place] = {}
        self._idle: dict[str, list[_Connection]] = {}

    # -- the tools' operations ----------------------------------------------------------------------

    def create(self, idle_timeout: float) -> RemoteSandbox:
        # The sandbox is made to this server's settings, not the service's (see config.py).
        config = SandboxConfig.from_settings().to_wire()
        info = info_from_wire(self._call("create", idle_timeout=idle_timeout, config=config)[0])
        return RemoteSandbox(self, info.id, info=info)

    def get(self, sandbox_id: str) -> RemoteSandbox:
        """The sandbox (its idle timer restarts), or InputError naming why there is none."""
        answer = self._call("describe", id=sandbox_id)[0]
        return RemoteSandbox(self, sandbox_id, root=answer.get("root"), idle_timeout=answer.get("idle_timeout"))

    def set_timeout(self, sandbox_id: str, idle_timeout: float) -> None:
        self._call("set_timeout", id=sandbox_id, idle_timeout=idle_timeout)

    def remove(self, sandbox_id: str) -> None:
        self._call("remove", id=sandbox_id)

    _discard = remove  # SandboxManager's name, which tests use

    def run_code(self, sandbox_id: str, code: str) -> CodeResult:
        return code_from_wire(self._call("run_code", id=sandbox_id, code=code)[0])

    def run_command(self, sandbox_id: str, command: str) -> CommandResult:
        return command_from_wire(self._call("run_command", id=sandbox_id, command=command)[0])

    def put_file(self, sandbox_id: str, source: int, sandbox_path: str, name_hint: str,
                 max_bytes: int) -> tuple[str, int]:
        answer = self._call("put_file", fd=source, id=sandbox_id, path=sandbox_path, name=name_hint,
                            max_bytes=max_bytes)[0]
        return str(answer.get("path", "")), int(answer.get("bytes", 0))

    def open_file(self, sandbox_id: str, sandbox_path: str, max_bytes: int) -> int:
        _answer, fds = self._call("open_file", keep_fds=True, id=sandbox_id, path=sandbox_path, max_bytes=max_bytes)
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            raise SandboxError("the sandbox service did not hand over the file")
        return fds[0]

    # -- the service ---------------------------------------------------------------------------------

    def status(self) -> dict[str, Any] | None:
        """The service's pid and counts, or None when none runs (none is started to ask)."""
        place = self._place()
        try:
            conn = self._open(place)
        except _NoService:
            return None
        try:
            return self._exchange(place.key, conn, {"op": "status"}, None, HELLO_SECONDS)[0]
        except SandboxError:
            return None

    def shutdown(self) -> None:
        """Stop every service this client has used, ending their sandboxes (tests and benchmarks; a
        server never does this when it exits: its sandboxes are meant to outlive it)."""
        with self._lock:
            places = list(self._places.values())
            idle = [conn for pool in self._idle.values() for conn in pool]
            self._places.clear()
            self._idle.clear()
        for conn in idle:
            conn.close()
        for place in places:
            self._stop(place)
            place.close()

    def stop(self) -> bool:
        """Stop the service of this process's settings if one runs (ending its sandboxes, and starting
        none); True when one did."""
        return self._stop(self._place())

    def _stop(self, place: runtime.Place) -> bool:
        try:
            conn = self._open(place)
        except (_NoService, SandboxError):
            return False
        try:
            wire.send(conn.sock, {"op": "stop"})
            return conn.reader.read(_reply_seconds()) is not None
        except (OSError, wire.FrameTooLarge, wire.Malformed):
            return False
        finally:
            conn.close()

    # -- requests ------------------------------------------------------------------------------------

    def _place(self) -> runtime.Place:
        key = runtime.configuration_key()
        with self._lock:
            place = self._places.get(key)
            if place is not None and os.fstat(place.fd).st_nlink == 0:
                # The folder was deleted under us (a /tmp cleaner): make it again rather than talk
                # to a socket that can no longer exist.
                del self._places[key]  # its descriptor may be in use by another call: left to close
                for conn in self._idle.pop(key, []):
                    conn.close()
                place = None
        if place is None:
            place = runtime.open_place(key)
            with self._lock:
                kept = self._places.setdefault(key, place)
            if kept is not place:
                place.close()
                place = kept
        return place

    def _call(self, op: str, fd: int | None = None, keep_fds: bool = False,
              **fields: Any) -> tuple[dict[str, Any], list[int]]:
        """The answer to one request, and the descriptors that came with it (closed unless kept)."""
        place = self._place()
        answer, fds = self._exchange(place.key, self._checkout(place), {"op": op, **fields}, fd, _reply_seconds())
        if not keep_fds:
            for received in fds:
                os.close(received)
            fds = []
        return answer, fds

    def _exchange(self, key: str, conn: _Connection, request: dict[str, Any], fd: int | None,
                  timeout: float) -> tuple[dict[str, Any], list[int]]:
        try:
            wire.send(conn.sock, request, () if fd is None else (fd,))
            frame = conn.reader.read(timeout)
        except TimeoutError:
            conn.close()
            raise SandboxError(f"the sandbox service did not answer within {timeout:.0f} s; try again") from None
        except (OSError, wire.FrameTooLarge, wire.Malformed):
            conn.close()
            frame = None
        if frame is None:
            conn.close()
            raise SandboxError("the sandbox service stopped while this call ran (it was stopped, killed or crashed), "
                               "and its sandboxes ended with it, variables and files too; create a new sandbox with "
                               "create_sandbox (the next call starts a new service)")
        reply, fds = frame
        self._checkin(key, conn)
        error = reply.get("error")
        if isinstance(error, dict):
            for received in fds:
                os.close(received)
            message = str(error.get("message") or "the sandbox service refused the request")
            kind = error.get("kind")
            raise (InputError if kind == "input" else NotConfigured if kind == "not_configured"
                   else SandboxError)(message)
        answer = reply.get("ok")
        return (answer if isinstance(answer, dict) else {}), fds

    def _checkout(self, place: runtime.Place) -> _Connection:
        with self._lock:
            pool = self._idle.get(place.key, [])
            while pool:
                conn = pool.pop()
                if conn.usable():
                    return conn
                conn.close()
        return self._connect(place)

    def _checkin(self, key: str, conn: _Connection) -> None:
        with self._lock:
            pool = self._idle.setdefault(key, [])
            if len(pool) < POOL_SIZE:
                pool.append(conn)
                return
        conn.close()

    def _connect(self, place: runtime.Place) -> _Connection:
        """A connection to the service, starting it when none answers."""
        deadline = time.monotonic() + START_SECONDS
        started = False
        while True:
            try:
                return self._open(place)
            except _NoService:
                if not started:
                    self._start_service(place)
                    started = True
                elif time.monotonic() > deadline:
                    raise SandboxError(f"the sandbox service did not start within {START_SECONDS:.0f} s; its log "
                                       f"is {runtime.LOG_NAME} in the sandbox folder (TOOLSUITE_SANDBOX_DIR)") from None
                time.sleep(0.01)

    def _open(self, place: runtime.Place) -> _Connection:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(HELLO_SECONDS)
            try:
                sock.connect(place.via_fd(runtime.SOCKET_NAME))
            except (FileNotFoundError, ConnectionRefusedError):
                raise _NoService from None
            service = peers.credentials(sock)
            if service.uid != os.getuid():
                # Never send code or files to a socket someone else made (the folder check should
                # already have made this impossible).
                raise SandboxError("refusing the sandbox service's socket: it belongs to another user")
            conn = _Connection(sock)
            try:
                hello = conn.reader.read(HELLO_SECONDS)
            except (OSError, wire.FrameTooLarge, wire.Malformed):
                hello = None
            if hello is None or "hello" not in hello[0]:
                raise _NoService  # refused, or a service on its way out: start or wait for the next one
            return conn
        except BaseException:
            sock.close()
            raise

    def _start_service(self, place: runtime.Place) -> None:
        log_fd = place.open_file(runtime.LOG_NAME, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            if os.fstat(log_fd).st_size > LOG_KEEP_BYTES:
                os.ftruncate(log_fd, 0)
            # The first process forks the service and exits at once; the service is nobody's child.
            first = subprocess.Popen([sys.executable, "-m", "servers.python.daemon", str(place.path)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log_fd,
                                     env=runtime.daemon_environment(), cwd="/", start_new_session=True,
                                     close_fds=True)
        finally:
            os.close(log_fd)
        try:
            first.wait(START_SECONDS)
        except subprocess.TimeoutExpired:
            first.kill()
            first.wait()
