"""Hostile inputs and the tools they are thrown at, shared by the attack tests and bench/hostile.py.

`path_targets()` finds, from the servers' own schemas, every tool argument that takes a path or URL
(a new tool is covered without editing this file); `make_*` build the hostile objects in a root.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import stat
import struct
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

# Argument names that carry a path or URL, as the compatibility contract spells them.
PATH_ARGUMENTS = ("uri", "image_path_or_url", "image_path_or_url_1", "image_path_or_url_2", "audio_path_or_url",
                  "video_path", "json_path", "local_file_path", "url")
# A 1x1 PNG: the other image of the comparison tool, valid whatever the roots are.
PNG_DATA_URI = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKm"
                "MIQAAAABJRU5ErkJggg==")
_SAMPLES: dict[str, Any] = {"question": "What does it say?", "comparison_question": "How do they differ?",
                            "query": "test", "sandbox_id": "no-such-sandbox", "document_index": 0, "chunk_index": 0,
                            "image_path_or_url_1": PNG_DATA_URI, "image_path_or_url_2": PNG_DATA_URI}


@dataclass(frozen=True)
class Target:
    server: str
    tool: str
    argument: str
    fixed: dict[str, Any] = field(default_factory=dict)

    def arguments(self, value: str) -> dict[str, Any]:
        return {**self.fixed, self.argument: value}

    @property
    def name(self) -> str:
        return f"{self.server}.{self.tool}.{self.argument}"


async def path_targets(servers: Any = None, *, sandbox_id: str | None = None) -> list[Target]:
    """One target per (tool, path-or-URL argument) of every server in `servers` (default: all)."""
    from mcp import Client

    from servers.registry import SERVERS

    found: list[Target] = []
    for entry in servers or SERVERS:
        async with Client(entry.build()) as client:
            for tool in (await client.list_tools()).tools:
                properties = tool.input_schema.get("properties", {})
                required = tool.input_schema.get("required", [])
                for argument in (name for name in PATH_ARGUMENTS if name in properties):
                    fixed = {name: _SAMPLES[name] for name in required if name != argument and name in _SAMPLES}
                    if sandbox_id is not None and "sandbox_id" in fixed:
                        fixed["sandbox_id"] = sandbox_id
                    found.append(Target(entry.name, tool.name, argument, fixed))
    return found


# ---- hostile objects ---------------------------------------------------------------------------

def make_fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def make_socket(path: Path) -> tuple[Path, socket.socket]:
    """A listening unix socket at `path`; keep the socket object alive while it is used."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    return path, server


def make_char_device(path: Path) -> Path | None:
    """A /dev/zero-like node at `path` where this user may create one (root with CAP_MKNOD), else None:
    callers then also use /dev itself as a root, which works for every user."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 5))
    except (PermissionError, OSError):
        return None
    return path


def make_sparse(path: Path, size: int = 5 * 2**30) -> Path:
    with open(path, "wb") as out:
        out.truncate(size)
    return path


def deep_json(depth: int = 200_000) -> bytes:
    return b"[" * depth + b"]" * depth


def zip_bomb() -> bytes:
    """About 1 MB holding a 1 GB member of zeros (and a nested one)."""
    buffer = io.BytesIO()
    block = b"\0" * 2**20
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as bundle, \
            bundle.open("zeros.txt", "w", force_zip64=True) as member:
        for _ in range(1024):
            member.write(block)
    inner = buffer.getvalue()
    outer = io.BytesIO()
    with zipfile.ZipFile(outer, "w", zipfile.ZIP_STORED) as bundle:
        bundle.writestr("inner.zip", inner)
        bundle.writestr("readme.txt", "a bomb")
    return outer.getvalue()


def png_bomb(width: int = 60_000, height: int = 60_000) -> bytes:
    """A PNG whose header claims 3.6 gigapixels, with a tiny compressed body."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = zlib.compress(b"\0" * (1 + width * 3) * 16, 9)  # the first rows only: a truncated bomb
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def wav_header_only(seconds: int = 10**6) -> bytes:
    """A WAV header announcing a very long stream, and no samples: truncated media."""
    rate, channels, bits = 16000, 1, 16
    data_size = min(seconds * rate * channels * bits // 8, 2**32 - 64)
    return (b"RIFF" + struct.pack("<I", data_size + 36) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate,
            rate * channels * bits // 8, channels * bits // 8, bits) + b"data" + struct.pack("<I", data_size))


TRUNCATED_PDF = b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n2 0 obj\n<< /Type /Pages /Kids ["
TRUNCATED_MP4 = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41\x00\x00\x00\x08free\x00\x10\x00\x00mdat"


@contextlib.contextmanager
def hostile_site_process(trickle_interval: float = 0.3, trickle_for: float = 30.0, *, bombs: bool = False,
                         host: str = "127.0.0.1") -> Iterator[str]:
    """`tests.hostile_http.HostileServer` on `host` in a process of its own (so its sockets and threads
    are not counted as ours); yields its base URL. `bombs` registers a gzip body of 1 GB of zeros
    ("bomb", about 1 MB on the wire) for `/encoded?as=gzip&body=bomb`."""
    import subprocess
    import sys

    bodies = "{'bomb': gzip_bytes(1 << 30)}" if bombs else "{}"
    script = ("import sys\nfrom tests.hostile_http import HostileServer, gzip_bytes\n"
              f"site = HostileServer(bodies={bodies}, trickle_interval={trickle_interval}, "
              f"trickle_for={trickle_for}).start({host!r})\nprint(site.base, flush=True)\nsys.stdin.read()\n")
    process = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip()
    finally:
        process.kill()
        process.wait()


# ---- what the process holds --------------------------------------------------------------------

def busy_threads() -> list[str]:
    """Threads running the suite's code (idle pool workers and test helpers excluded), by name and place."""
    import sys
    import traceback

    busy = []
    current = threading.get_ident()
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        if ident == current:
            continue
        stack = traceback.extract_stack(frame)
        ours = [entry for entry in stack if entry.filename.startswith(str(REPO / "shared"))
                or entry.filename.startswith(str(REPO / "servers"))]
        if ours:
            where = ours[-1]
            busy.append(f"{names.get(ident, ident)} in {Path(where.filename).name}:{where.lineno} {where.name}")
    return busy


def child_processes() -> list[int]:
    """Processes whose parent is this one."""
    me = str(os.getpid())
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if fields[1].decode() == me and fields[0] != b"Z":
            children.append(int(entry))
    return children


def open_descriptors() -> dict[str, int]:
    """What this process has open, by kind (a file's path, "socket", "pipe", "anon_inode:...")."""
    kinds: dict[str, int] = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue  # the descriptor listdir itself used
        # socket:[inode] and pipe:[inode] by type; anon_inode:[eventfd] names its type, not an inode
        kind = target.split(":", 1)[0] if ":[" in target and not target.startswith("anon_inode:") else target
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def temporary_files(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.startswith(("toolsuite-", "tmp")))


def children_since(before: list[int]) -> Callable[[], list[int]]:
    """A check for this process's children that were not there in `before` (such as a database a
    fixture started for the whole session)."""
    return lambda: [pid for pid in child_processes() if pid not in before]


def settle(check: Any, seconds: float = 5.0) -> Any:
    """`check()` once it is falsy, or its last value after `seconds`."""
    deadline = time.monotonic() + seconds
    value = check()
    while value and time.monotonic() < deadline:
        time.sleep(0.1)
        value = check()
    return value
