"""Attacks on tool-python's sandbox service and its socket: each must fail while the service keeps serving.

Who may talk to the service: only processes of the same user, in the same user and pid namespaces,
not started by the service (peers.py); the folder holding the socket is closed to everyone else, and
a server never speaks to a socket someone else made. What they may send: frames under a size cap,
of known operations with checked fields, with at most the one descriptor an operation takes. Tests
that act as another user need root (they become uid 65534 for a moment) and say so when skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import anyio
import pytest
from mcp import Client

from servers.python import runtime, wire
from servers.python.client import SandboxClient
from servers.python.config import SandboxConfig
from shared.errors import InputError, NotConfigured
from tests.sandboxes import EVERY_DESCRIPTOR, create_sandbox, python_server, run_code, services_of, stop_service

NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="acting as another user needs root")


@pytest.fixture
def short_folder() -> Iterator[Path]:
    """A sandbox folder with a short path: the tests below name the socket by its real path, which a
    unix socket address caps at 107 bytes."""
    folder = Path(tempfile.mkdtemp(prefix="tsx-", dir="/tmp")) / "sandboxes"
    yield folder
    shutil.rmtree(folder.parent, ignore_errors=True)


@pytest.fixture
def service(monkeypatch, root: Path, short_folder: Path) -> Iterator[runtime.Place]:
    """A running service for this test's settings; its folder, open."""
    monkeypatch.setenv("TOOLSUITE_SANDBOX_DIR", str(short_folder))
    monkeypatch.setenv("TOOLSUITE_OUTPUT_DIR", str(root / "out"))
    monkeypatch.setenv("TOOLSUITE_SANDBOX_CALL_TIMEOUT", "10")
    client = SandboxClient()
    with pytest.raises(InputError):
        client.get("sbx_" + "x" * 24)  # starts the service
    place = runtime.open_place()
    yield place
    place.close()
    client.shutdown()
    stop_service(dict(os.environ))


def _pid(place: runtime.Place) -> int:
    [pid] = services_of(place.path.parent)
    return pid


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _raw(place: runtime.Place) -> tuple[socket.socket, wire.Reader]:
    """A connection of our own, greeted."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(place.via_fd(runtime.SOCKET_NAME))
    reader = wire.Reader(sock, wire.REPLY_CAP)
    hello = reader.read(5)
    assert hello is not None and "hello" in hello[0], hello
    return sock, reader


def _send_raw(place: runtime.Place, data: bytes, fds: list[int] | None = None) -> tuple[dict | None, bool]:
    """Send `data` as is; (the answer, whether the service then closed the connection)."""
    sock, reader = _raw(place)
    with sock:
        if fds:
            socket.send_fds(sock, [data[:4]], fds)
            data = data[4:]
        if data:
            sock.sendall(data)
        answer = reader.read(10)
        try:
            closed = reader.read(5) is None
        except ConnectionResetError:  # closed with our unread bytes still in its queue
            closed = True
    return (answer[0] if answer else None), closed


def _body(body: bytes) -> bytes:
    return wire.HEADER.pack(len(body)) + body


def _frame(message: object) -> bytes:
    return _body(json.dumps(message).encode())


def _still_serves() -> None:
    client = SandboxClient()
    try:
        sandbox = client.create(60)
        assert client.run_code(sandbox.id, "6 * 7").result == "42"
        client.remove(sandbox.id)
    finally:
        for pool in client._idle.values():
            for conn in pool:
                conn.close()


def test_the_service_folder_and_socket_are_closed_to_everyone_else(service: runtime.Place):
    for folder in (service.path.parent, service.path):
        info = folder.lstat()
        assert stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) == 0o700
    sock = (service.path / runtime.SOCKET_NAME).lstat()
    assert stat.S_ISSOCK(sock.st_mode) and stat.S_IMODE(sock.st_mode) & 0o077 == 0


CONNECT_AS_NOBODY = r"""
import ctypes, json, os, socket, sys
path = sys.argv[1]
libc = ctypes.CDLL(None, use_errno=True)
report = {}
os.setgroups([])
os.setegid(65534)
os.seteuid(65534)
def attempt(name):
    client = socket.socket(socket.AF_UNIX)
    client.settimeout(3)
    try:
        client.connect(path)
        report[name] = "greeted" if client.recv(4096) else "closed without a word"
    except OSError as exc:
        report[name] = type(exc).__name__
    finally:
        client.close()
attempt("as uid 65534")
# The file system checks the fs uid, the kernel's peer credentials the effective uid: with the fs
# uid back at 0 the socket is reachable, so only the service's own check stands in the way.
libc.setfsuid(0)
attempt("as uid 65534 through the folder")
print(json.dumps(report))
"""


@needs_root
def test_another_user_cannot_talk_to_the_service(service: runtime.Place):
    path = str(service.path / runtime.SOCKET_NAME)
    done = subprocess.run([sys.executable, "-c", CONNECT_AS_NOBODY, path], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report == {"as uid 65534": "PermissionError", "as uid 65534 through the folder": "closed without a word"}
    assert "refused a connection: uid 65534" in (service.path / runtime.LOG_NAME).read_text()
    _still_serves()


CONNECT = r"""
import socket, sys
client = socket.socket(socket.AF_UNIX)
client.settimeout(3)
try:
    client.connect(sys.argv[1])
    print("greeted" if client.recv(4096) else "closed without a word")
except OSError as exc:
    print(type(exc).__name__)
"""


def test_a_process_in_other_namespaces_is_refused_even_with_the_socket_in_reach(service: runtime.Place):
    """What a sandbox would be if it could see the socket: the same user mapped in, its own user and
    pid namespaces, the host's files bound in."""
    bwrap = shutil.which("bwrap")
    assert bwrap, "bubblewrap is installed by make test"
    path = str(service.path / runtime.SOCKET_NAME)
    done = subprocess.run([bwrap, "--bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-user",
                           "--unshare-pid", "--uid", str(os.getuid()), "--gid", str(os.getgid()), "--die-with-parent",
                           "--", sys.executable, "-c", CONNECT, path], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "closed without a word", (done.stdout, done.stderr)
    assert "another user namespace" in (service.path / runtime.LOG_NAME).read_text()
    _still_serves()


FIND_THE_SERVICE = "import glob, json, os, socket, struct\n" + EVERY_DESCRIPTOR + r"""
reached = []
def try_connect(address):
    client = socket.socket(socket.AF_UNIX)
    client.settimeout(2)
    try:
        client.connect(address)
        reached.append([address, client.recv(4096).decode(errors="replace")])
    except OSError:
        pass
    finally:
        client.close()
for address in [SOCKET, "/proc/1/root" + SOCKET, "/proc/self/root" + SOCKET, "\0" + SOCKET,
                "\0toolsuite-sandboxes"]:
    try_connect(address)
for pattern in ("/tmp/**/sandboxd.sock", "/run/**/sandboxd.sock", "/proc/*/root/tmp/**/sandboxd.sock",
                "/proc/*/cwd/**/sandboxd.sock", "/home/**/sandboxd.sock"):
    for found in glob.glob(pattern, recursive=True):
        try_connect(found)
# Any socket descriptor that reached the sandbox: ask it for the service's status.
frame = json.dumps({"op": "status"}).encode()
for pid, fd, path in every_descriptor():
    try:
        if os.readlink(path).startswith("socket:"):
            os.write(int(fd) if pid == "self" else os.open(path, os.O_WRONLY), struct.pack(">I", len(frame)) + frame)
            reached.append([pid, fd])
    except OSError:
        pass
reached
"""


@pytest.mark.anyio
async def test_a_sandbox_cannot_reach_the_service_socket(service: runtime.Place):
    code = f"SOCKET = {str(service.path / runtime.SOCKET_NAME)!r}\n" + FIND_THE_SERVICE
    with python_server() as server:
        async with Client(server) as client:
            sandbox_id = await create_sandbox(client)
            result = await run_code(client, sandbox_id, code)
            assert result.structured_content["error"] is None, result.content[-1].text
            assert result.structured_content["result"] == "[]", result.content[-1].text
            shell = await client.call_tool("run_command", {"sandbox_id": sandbox_id, "command": (
                "find / -xdev -name 'sandboxd*' 2>/dev/null; ls /proc/1/root/tmp 2>&1 | head -3; "
                f"kill -0 {_pid(service)} && echo SIGNALLED; kill -9 {_pid(service)} && echo KILLED; true")})
            assert "sandboxd" not in shell.structured_content["stdout"], shell.structured_content
            assert "SIGNALLED" not in shell.structured_content["stdout"]
            assert "KILLED" not in shell.structured_content["stdout"]
    _still_serves()


@pytest.mark.anyio
async def test_a_process_mode_sandbox_that_reaches_the_socket_is_refused(service: runtime.Place, monkeypatch):
    """The weaker process mode shares the host's files and namespaces: the socket is in reach, and the
    service refuses its own descendants."""
    monkeypatch.setenv("TOOLSUITE_SANDBOX_ISOLATION", "process")
    code = (f"import socket\nSOCKET = {str(service.path / runtime.SOCKET_NAME)!r}\n"
            "client = socket.socket(socket.AF_UNIX)\nclient.settimeout(3)\ntry:\n    client.connect(SOCKET)\n"
            "    answer = 'greeted' if client.recv(4096) else 'closed without a word'\n"
            "except OSError as exc:\n    answer = type(exc).__name__\nanswer")
    with python_server() as server:
        async with Client(server) as client:
            created = await client.call_tool("create_sandbox", {})
            assert created.structured_content["isolation"] == "process"
            result = await run_code(client, created.structured_content["sandbox_id"], code)
            assert result.structured_content["result"] == "'closed without a word'", result.content[-1].text
    assert "was started by the service" in (service.path / runtime.LOG_NAME).read_text()
    monkeypatch.delenv("TOOLSUITE_SANDBOX_ISOLATION")
    _still_serves()


def _config() -> dict:
    return SandboxConfig.from_settings().to_wire()


MALFORMED: list[tuple[str, bytes]] = [
    ("not JSON", wire.HEADER.pack(9) + b"not json!"),
    ("an empty frame", wire.HEADER.pack(0)),
    ("a JSON list", _frame([1, 2, 3])),
    ("deep nesting", wire.HEADER.pack(200_000) + b"[" * 100_000 + b"]" * 100_000),
    ("invalid UTF-8", wire.HEADER.pack(4) + b"\xff\xfe\xfd\xfc"),
    ("no operation", _frame({"id": "sbx_x"})),
    ("an unknown operation", _frame({"op": "exec", "command": "id"})),
    ("a field missing", _frame({"op": "run_code", "id": "sbx_x"})),
    ("an extra field", _frame({"op": "status", "debug": True})),
    ("a bool for a number", _frame({"op": "open_file", "id": "sbx_x", "path": "a", "max_bytes": True})),
    ("a negative size", _frame({"op": "open_file", "id": "sbx_x", "path": "a", "max_bytes": -1})),
    ("an enormous size", _frame({"op": "open_file", "id": "sbx_x", "path": "a", "max_bytes": 10**30})),
    ("NaN seconds", _body(b'{"op":"set_timeout","id":"sbx_x","idle_timeout":NaN}')),
    ("infinite seconds", _frame({"op": "set_timeout", "id": "sbx_x", "idle_timeout": 1e309})),
    ("too many seconds", _frame({"op": "set_timeout", "id": "sbx_x", "idle_timeout": 10**9})),
    ("an id too long", _frame({"op": "describe", "id": "x" * 201})),
    ("an empty id", _frame({"op": "describe", "id": ""})),
    ("a code block too long", _frame({"op": "run_code", "id": "sbx_x", "code": "x" * 1_000_001})),
    ("a put_file without its descriptor", _frame({"op": "put_file", "id": "sbx_x", "path": "a", "name": "a",
                                                 "max_bytes": 10})),
    ("a relative python", _frame({"op": "create", "idle_timeout": 60, "config": {**_config(), "python": "python3"}})),
    ("a zero limit", _frame({"op": "create", "idle_timeout": 60,
                             "config": {**_config(), "limits": {**_config()["limits"], "memory_mb": 0}}})),
    ("another isolation", _frame({"op": "create", "idle_timeout": 60, "config": {**_config(), "isolation": "none"}})),
    ("a config field more", _frame({"op": "create", "idle_timeout": 60, "config": {**_config(), "seccomp": False}})),
]


def test_oversized_and_malformed_requests_are_refused_and_the_service_holds(service: runtime.Place):
    pid = _pid(service)
    fds_before = _open_fds(pid)
    answer, closed = _send_raw(service, wire.HEADER.pack(wire.REQUEST_CAP + 1) + b"{")
    assert answer == {"error": {"kind": "protocol", "message":
                                f"request too large: {wire.REQUEST_CAP + 1} bytes, at most {wire.REQUEST_CAP}"}}
    assert closed
    answer, closed = _send_raw(service, wire.HEADER.pack(2**32 - 1))
    assert answer["error"]["kind"] == "protocol" and closed
    for name, data in MALFORMED:
        answer, closed = _send_raw(service, data)
        assert answer is not None and answer["error"]["kind"] == "protocol", (name, answer)
        assert "malformed request" in answer["error"]["message"] and closed, name
    # A descriptor where the operation takes none, and more than one where it takes one: refused,
    # and the service keeps none of them.
    with open(os.devnull) as null:
        answer, closed = _send_raw(service, _frame({"op": "status"}), [null.fileno()])
        assert answer["error"]["kind"] == "protocol" and closed
        answer, closed = _send_raw(service, _frame({"op": "put_file", "id": "sbx_x", "path": "a", "name": "a",
                                                    "max_bytes": 10}), [null.fileno()] * 3)
        assert answer["error"]["kind"] == "protocol" and closed
    time.sleep(0.2)
    assert _open_fds(pid) <= fds_before, "descriptors leaked into the service"
    assert services_of(service.path.parent) == [pid]
    _still_serves()


def test_a_descriptor_that_is_not_a_regular_file_is_refused_without_blocking(service: runtime.Place,
                                                                              tmp_path: Path):
    client = SandboxClient()
    sandbox = client.create(60)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    listener = socket.socket(socket.AF_UNIX)
    opened = [os.open(fifo, os.O_RDWR | os.O_NONBLOCK), os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY),
              listener.fileno(), os.open("/dev/zero", os.O_RDONLY)]
    try:
        for fd in opened:
            started = time.monotonic()
            with pytest.raises(InputError, match="not a regular file"):
                client.put_file(sandbox.id, fd, "/home/user/x", "x", 10 << 20)
            assert time.monotonic() - started < 5
        assert client.run_code(sandbox.id, "import os\nos.path.exists('x')").result == "False"
    finally:
        for fd in opened[:2] + opened[3:]:
            os.close(fd)
        listener.close()
        client.remove(sandbox.id)


@pytest.mark.anyio
async def test_a_stalled_frame_holds_only_its_own_connection(service: runtime.Place):
    sock, _reader = _raw(service)
    try:
        sock.sendall(wire.HEADER.pack(100)[:2])  # a frame begun and never finished
        started = time.monotonic()
        await anyio.to_thread.run_sync(_still_serves)
        assert time.monotonic() - started < 20
    finally:
        sock.close()


def test_a_frame_must_arrive_whole_soon_after_it_begins(monkeypatch):
    monkeypatch.setattr(wire, "FRAME_SECONDS", 0.3)
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(wire.HEADER.pack(100) + b"{")
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            wire.Reader(ours, wire.REQUEST_CAP).read()
        assert time.monotonic() - started < 2


PLANT = r"""
import json, os, socket, sys, time
listener = socket.socket(socket.AF_UNIX)
listener.bind(sys.argv[1])  # as root, into the folder; listening as another user is what clients see
os.seteuid(65534)
listener.listen()
print("listening", flush=True)
listener.settimeout(20)
received = b""
try:
    conn, _ = listener.accept()
    conn.settimeout(3)
    try:
        while chunk := conn.recv(65536):
            received += chunk
    except OSError:
        pass
except OSError:
    pass
print(json.dumps({"received": len(received)}))
"""


@needs_root
def test_a_socket_another_user_listens_on_is_never_sent_anything(monkeypatch, short_folder: Path):
    monkeypatch.setenv("TOOLSUITE_SANDBOX_DIR", str(short_folder))
    place = runtime.open_place()
    planted = subprocess.Popen([sys.executable, "-c", PLANT, str(place.path / runtime.SOCKET_NAME)],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert planted.stdout is not None and planted.stdout.readline().strip() == "listening"
        with pytest.raises(Exception, match="belongs to another user"):
            SandboxClient().create(60)
        report = json.loads(planted.communicate(timeout=30)[0])
    finally:
        planted.kill()
        place.close()
    assert report == {"received": 0}


@needs_root
def test_a_sandbox_folder_of_another_user_or_a_symlink_is_refused(monkeypatch, short_folder: Path, tmp_path: Path):
    short_folder.mkdir(mode=0o700)
    os.chown(short_folder, NOBODY, NOBODY)
    monkeypatch.setenv("TOOLSUITE_SANDBOX_DIR", str(short_folder))
    with pytest.raises(NotConfigured, match="belongs to another user") as refused:
        SandboxClient().create(60)
    assert str(short_folder) not in str(refused.value)
    assert os.listdir(short_folder) == []
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    link = short_folder.parent / "link"
    link.symlink_to(elsewhere)
    monkeypatch.setenv("TOOLSUITE_SANDBOX_DIR", str(link))
    with pytest.raises(NotConfigured, match="cannot be opened as a folder"):
        SandboxClient().create(60)
    assert os.listdir(elsewhere) == []


def test_a_sandbox_folder_of_ours_open_to_others_is_closed_first(monkeypatch, short_folder: Path):
    short_folder.mkdir()
    short_folder.chmod(0o777)
    monkeypatch.setenv("TOOLSUITE_SANDBOX_DIR", str(short_folder))
    client = SandboxClient()
    try:
        client.status()
        assert stat.S_IMODE(short_folder.stat().st_mode) == 0o700
    finally:
        client.shutdown()
    with mock.patch.dict(os.environ, {"TOOLSUITE_SANDBOX_DIR": str(short_folder)}):
        assert SandboxClient().status() is None  # asking started nothing


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_flooding_the_reply_channels_does_not_grow_the_service(service: runtime.Place):
    """The server-side attack of the same name, aimed at the process that now reads the replies."""
    client = SandboxClient()
    sandbox = client.create(60)
    pid = _pid(service)
    before = _peak_rss_mb(pid)
    flood = client.run_code(sandbox.id, "import os\nchunk = b'x' * (1 << 20)\nfor n in range(3, 64):\n    try:\n"
                            "        for _ in range(300):\n            os.write(n, chunk)\n    except OSError:\n"
                            "        pass\n'survived'")
    grown = _peak_rss_mb(pid) - before
    assert grown < 150, f"the service grew by {grown:.0f} MB"
    assert flood.error is not None or flood.result == "'survived'"
    assert client.run_code(sandbox.id, "1 + 1").result == "2"
    client.remove(sandbox.id)
