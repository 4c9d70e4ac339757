"""The sandbox service: one process per user and installation that owns every sandbox, so that
sandboxes outlive the server processes that create and use them.

Agent hosts such as MiroThinker's start a new server process for every call and end it with SIGTERM;
a sandbox kept inside that process would end with the call that created it. So the first server
that needs a sandbox starts this service (`client.py`), which detaches (a session of its own, not a
child of any server), takes the configuration's lock, and listens on a unix socket in the
configuration's private folder (`runtime.py`). Servers send it one request at a time per connection
(`wire.py`); it serves only peers the kernel vouches for (`peers.py`), runs each request on the
`SandboxManager`, and answers. It exits once it has had no sandboxes and no connected servers for
`TOOLSUITE_SANDBOX_SERVICE_IDLE` seconds; on SIGTERM it ends its sandboxes and exits. Should it die
any other way its sandboxes die with it (bubblewrap's --die-with-parent), and the next service
started for the configuration tells callers of their ids that they were lost (`lost.py`).

Run as `python -m servers.python.daemon <configuration folder>`; servers do that, not people.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from servers.python import peers, runtime, wire
from servers.python.config import SandboxConfig
from servers.python.limits import remove_leftover_cgroups
from servers.python.lost import LostSandboxes
from servers.python.results import to_wire
from servers.python.sandbox import SandboxManager
from shared import settings
from shared.errors import InputError, NotConfigured, ToolFailure, redact

log = logging.getLogger("toolsuite.sandbox.service")

MAX_CLIENTS = 256
ID_CHARS = 200
CODE_CHARS = 1_000_000
COMMAND_CHARS = 100_000
PATH_CHARS = 4096
MAX_TIMEOUT = 86400.0
MAX_TRANSFER = 2**40
LOCK_WAIT_SECONDS = 10.0  # under the server's wait for a service to start (client.START_SECONDS)

# Each operation's fields and their kinds; a request with other fields, or missing ones, is refused.
OPERATIONS: dict[str, dict[str, str]] = {
    "create": {"idle_timeout": "seconds", "config": "config"},
    "describe": {"id": "id"},
    "set_timeout": {"id": "id", "idle_timeout": "seconds"},
    "remove": {"id": "id"},
    "run_code": {"id": "id", "code": "code"},
    "run_command": {"id": "id", "command": "command"},
    "put_file": {"id": "id", "path": "path", "name": "path", "max_bytes": "bytes"},
    "open_file": {"id": "id", "path": "path", "max_bytes": "bytes"},
    "status": {},
    "stop": {},
}
TAKES_FD = {"put_file"}
_TEXT_LIMITS = {"id": ID_CHARS, "code": CODE_CHARS, "command": COMMAND_CHARS, "path": PATH_CHARS}


class BadRequest(Exception):
    """A request that does not follow the protocol: answered, then the connection is dropped."""


def idle_seconds() -> float:
    return settings.number("TOOLSUITE_SANDBOX_SERVICE_IDLE", 60, minimum=1)


def _valid(kind: str, value: object) -> bool:
    if kind == "config":
        try:
            SandboxConfig.from_wire(value)
        except ValueError:
            return False
        return True
    if kind in _TEXT_LIMITS:
        return isinstance(value, str) and 0 < len(value) <= _TEXT_LIMITS[kind]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if kind == "seconds":
        return math.isfinite(value) and 0 < value <= MAX_TIMEOUT
    return isinstance(value, int) and 0 < value <= MAX_TRANSFER  # bytes


def check_request(message: dict[str, Any], fds: list[int]) -> tuple[str, dict[str, Any]]:
    """(operation, fields) of a well-formed request; raises BadRequest naming what is wrong."""
    op = message.get("op")
    if not isinstance(op, str) or op not in OPERATIONS:
        raise BadRequest("unknown operation")
    spec = OPERATIONS[op]
    given = set(message) - {"op"}
    if given != set(spec):
        raise BadRequest(f"{op} takes exactly: {', '.join(sorted(spec)) or 'nothing'}")
    for name, kind in spec.items():
        if not _valid(kind, message[name]):
            raise BadRequest(f"{op}: {name} is not a valid {kind}")
    if len(fds) != (1 if op in TAKES_FD else 0):
        raise BadRequest(f"{op} takes {'one descriptor' if op in TAKES_FD else 'no descriptor'}")
    return op, {name: message[name] for name in spec}


def _failure(kind: str, message: str) -> dict[str, Any]:
    return {"error": {"kind": kind, "message": message}}


class Service:
    def __init__(self, place: runtime.Place) -> None:
        self.place = place
        self.lost = LostSandboxes(place.path)
        self.lost.recover(place.path, lambda sandbox_id: remove_leftover_cgroups(f"toolsuite-{sandbox_id}-"))
        self.manager = SandboxManager(base=place.path, lost=self.lost)
        self.idle = idle_seconds()
        self.stopping = threading.Event()
        self.terminated = False  # by SIGTERM: the sandboxes it ends are written down as lost
        self._clients = 0
        self._clients_lock = threading.Lock()
        self._busy_until = time.monotonic()
        self.listener = self._bind()

    def _bind(self) -> socket.socket:
        # Whatever is at the name is a dead service's: this process holds the configuration's lock.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(runtime.SOCKET_NAME, dir_fd=self.place.fd)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # the socket is 0600 from its first moment, inside a 0700 folder
        try:
            listener.bind(self.place.via_fd(runtime.SOCKET_NAME))
        finally:
            os.umask(old)
        listener.listen(64)
        listener.settimeout(1.0)
        return listener

    # -- the accept loop --------------------------------------------------------------------------

    def serve(self) -> None:
        log.info("sandbox service %d serving configuration %s", os.getpid(), self.place.key)
        while not self.stopping.is_set():
            try:
                conn, _address = self.listener.accept()
            except TimeoutError:
                if self._idle_long_enough():
                    log.info("no sandboxes and no servers for %.0f s: exiting", self.idle)
                    break
                continue
            except OSError as exc:
                if self.stopping.is_set():
                    break
                # Out of descriptors or memory for a moment: the sandboxes must not die of it.
                log.warning("accept failed (%s); retrying", exc.strerror)
                time.sleep(0.1)
                continue
            if self.stopping.is_set():
                conn.close()
                break
            with self._clients_lock:  # counted from accept on, so the idle check never misses it
                if self._clients >= MAX_CLIENTS:
                    log.warning("refused a connection: %d servers are connected already", MAX_CLIENTS)
                    conn.close()
                    continue
                self._clients += 1
            threading.Thread(target=self._serve_client, args=(conn,), name="sandbox-client", daemon=True).start()
        if self.terminated:
            log.info("SIGTERM: ending %d sandbox(es), which are reported as lost, and exiting", self.manager.count())
        self.close(lost=self.terminated)

    def _idle_long_enough(self) -> bool:
        now = time.monotonic()
        with self._clients_lock:
            if self._clients or self.manager.count():
                self._busy_until = now
                return False
        return now - self._busy_until >= self.idle

    def close(self, lost: bool = False) -> None:
        """Stop listening and end every sandbox (`lost`: their ids are written down as lost)."""
        self.stopping.set()
        with contextlib.suppress(OSError):
            os.unlink(runtime.SOCKET_NAME, dir_fd=self.place.fd)
        with contextlib.suppress(OSError):
            self.listener.close()
        if lost:
            self.lost.remember(self.manager.ids())
        self.manager.shutdown()

    # -- one connected server ---------------------------------------------------------------------

    def _serve_client(self, conn: socket.socket) -> None:
        try:
            with conn:
                _peer, why = peers.check(conn)
                if why is not None:
                    log.warning("refused a connection: %s", why)
                    return
                wire.send(conn, {"hello": {"pid": os.getpid(), "configuration": self.place.key}})
                self._requests(conn)
        except OSError:
            pass  # the server went away (SIGTERM mid-call): its sandboxes stay
        finally:
            with self._clients_lock:
                self._clients -= 1
                self._busy_until = time.monotonic()

    def _requests(self, conn: socket.socket) -> None:
        reader = wire.Reader(conn, wire.REQUEST_CAP)
        while not self.stopping.is_set():
            try:
                frame = reader.read()
            except wire.FrameTooLarge as exc:
                wire.send(conn, _failure("protocol", f"request too large: {exc.size} bytes, at most {exc.cap}"))
                return
            except wire.Malformed as exc:
                wire.send(conn, _failure("protocol", f"malformed request: {exc}"))
                return
            except (TimeoutError, ConnectionError):
                return
            if frame is None:
                return
            message, fds = frame
            reply_fd: int | None = None
            try:
                op, fields = check_request(message, fds)
                reply, reply_fd = self._run(op, fields, fds)
            except BadRequest as exc:
                wire.send(conn, _failure("protocol", f"malformed request: {exc}"))
                return
            finally:
                for fd in fds:
                    os.close(fd)
            try:
                wire.send(conn, reply, () if reply_fd is None else (reply_fd,))
            finally:
                if reply_fd is not None:
                    os.close(reply_fd)
            if op == "stop":
                return

    def _run(self, op: str, fields: dict[str, Any], fds: list[int]) -> tuple[dict[str, Any], int | None]:
        try:
            return self._dispatch(op, fields, fds)
        except InputError as exc:
            return _failure("input", redact(str(exc))), None
        except NotConfigured as exc:
            return _failure("not_configured", redact(str(exc))), None
        except ToolFailure as exc:
            return _failure("failure", redact(str(exc))), None
        except Exception as exc:
            log.exception("%s failed", op)
            return _failure("failure", f"internal error in the sandbox service ({type(exc).__name__}); its log "
                                       "has the details"), None

    def _dispatch(self, op: str, fields: dict[str, Any], fds: list[int]) -> tuple[dict[str, Any], int | None]:
        manager = self.manager
        if op == "create":
            config = SandboxConfig.from_wire(fields["config"])
            return {"ok": to_wire(manager.create(float(fields["idle_timeout"]), config).info())}, None
        if op == "run_code":
            return {"ok": to_wire(manager.run_code(fields["id"], fields["code"]))}, None
        if op == "run_command":
            return {"ok": to_wire(manager.run_command(fields["id"], fields["command"]))}, None
        if op == "put_file":
            path, size = manager.put_file(fields["id"], fds[0], fields["path"], fields["name"], fields["max_bytes"])
            return {"ok": {"path": path, "bytes": size}}, None
        if op == "open_file":
            return {"ok": {}}, manager.open_file(fields["id"], fields["path"], fields["max_bytes"])
        if op == "describe":
            sandbox = manager.get(fields["id"])
            return {"ok": {"root": str(sandbox.root), "idle_timeout": sandbox.idle_timeout}}, None
        if op == "set_timeout":
            manager.set_timeout(fields["id"], float(fields["idle_timeout"]))
            return {"ok": {}}, None
        if op == "remove":
            manager.remove(fields["id"])
            return {"ok": {}}, None
        if op == "status":
            with self._clients_lock:
                clients = self._clients
            return {"ok": {"pid": os.getpid(), "sandboxes": manager.count(), "servers": clients}}, None
        # stop: what tests, benchmarks and operators ask for. The socket goes before the answer, so
        # the asker's next call starts a new service; the sandboxes go, and nothing is "lost".
        self.close()
        return {"ok": {}}, None


def _detach() -> None:
    """Leave the server that started us: it reaps our first process at once, and the service lives on
    in a session of its own, a child of no server (hosts that end a server's whole process group or
    tree leave it alone)."""
    if os.fork():
        os._exit(0)
    os.setsid()


def _take_lock(place: runtime.Place) -> bool:
    """Hold the folder's lock for the rest of our life. A server starts us when no service answers,
    which includes one that is still on its way out (socket gone, lock not yet released): so wait a
    little for the lock rather than give up at once."""
    lock = place.open_file(runtime.LOCK_NAME, os.O_RDWR | os.O_CREAT)
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True  # the descriptor stays open (and locked) until the process ends
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(lock)
                return False
            time.sleep(0.05)


def _configure_logging() -> None:
    level = os.environ.get("TOOLSUITE_LOG_LEVEL", "info").upper()
    handler = logging.StreamHandler(sys.stderr)  # the configuration folder's sandboxd.log
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level if level in logging.getLevelNamesMapping() else "INFO", handlers=[handler])


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write("usage: python -m servers.python.daemon <configuration folder> (servers start it)\n")
        return 2
    _detach()
    _configure_logging()
    try:
        place = runtime.open_folder_as_place(Path(argv[1]))
    except ToolFailure as exc:
        log.error("%s", exc)
        return 1
    if not _take_lock(place):
        return 0  # another service holds the folder: the server that started us finds that one
    service = Service(place)

    def on_sigterm(_signum: int, _frame: object) -> None:
        # Only a flag: the handler may run while this thread holds a lock the cleanup needs; the
        # accept loop (woken within a second) does the rest.
        service.terminated = True
        service.stopping.set()

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    service.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
