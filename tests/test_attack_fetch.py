"""Standing attack suite, URL fetcher: each test fails if the attack works. Never skipped on CI;
the only network is the hostile server these tests start on 127.0.0.1.

Covered: trickled headers and bodies and a silent TLS handshake against the total deadline, tool
calls that time out or are cancelled while fetching (no thread left reading, no temporary file),
endless bodies, compression bombs (gzip, deflate, stacked) and encodings we did not ask for.
"""

from __future__ import annotations

import sys
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.errors import InputError, RemoteError, TimedOut
from shared.fetch import FetchLimits, fetch_to_file
from tests.hostile_http import HostileServer, deflate_bytes, gzip_bytes


@pytest.fixture
def hostile(monkeypatch: pytest.MonkeyPatch) -> Iterator[HostileServer]:
    monkeypatch.setenv("TOOLSUITE_ALLOWED_HOSTS", "127.0.0.1")
    server = HostileServer().start()
    yield server
    server.stop()


def fetcher_threads() -> list[str]:
    """Threads that are still inside the fetcher's code."""
    found = []
    for ident, frame in sys._current_frames().items():
        while frame is not None:
            if Path(frame.f_code.co_filename).name in ("fetch.py", "fetch_net.py", "fetch_decode.py") and \
                    ident != threading.get_ident():
                found.append(str(ident))
                break
            frame = frame.f_back
    return found


# ---- time: the total deadline holds whatever the server does --------------------------------------

@pytest.mark.parametrize("route", ["/trickle-headers", "/trickle-body"])
def test_a_trickling_server_is_cut_off_at_the_total_deadline(hostile: HostileServer, temp_dir: Path, route: str):
    # One byte every 0.2 s never trips a 5 s read timeout; only the 1.5 s total deadline can stop it.
    started = time.monotonic()
    with pytest.raises(TimedOut, match=r"1\.5 s limit"):
        fetch_to_file(hostile.base + route, FetchLimits(total_timeout=1.5, read_timeout=5))
    elapsed = time.monotonic() - started
    assert elapsed < 2.5, f"the fetch ran {elapsed:.1f} s against a 1.5 s limit"
    visit = hostile.visit(route)
    deadline = time.monotonic() + 2
    while visit.closed is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert visit.closed is not None and visit.closed - started < 3, "the connection was left open"
    assert list(temp_dir.iterdir()) == []


def test_a_silent_tls_handshake_is_cut_off_at_the_total_deadline(hostile: HostileServer, temp_dir: Path):
    # The server reads the ClientHello and never answers: only the total deadline ends the handshake.
    started = time.monotonic()
    with pytest.raises(TimedOut):
        fetch_to_file(f"https://127.0.0.1:{hostile.port}/", FetchLimits(total_timeout=1.5, connect_timeout=8))
    assert time.monotonic() - started < 2.5


def test_an_endless_body_stops_at_the_size_cap(hostile: HostileServer, temp_dir: Path):
    started = time.monotonic()
    with pytest.raises(InputError, match="exceeds the 1 MB cap"):
        fetch_to_file(hostile.base + "/endless", FetchLimits(max_bytes=2**20))
    assert time.monotonic() - started < 5
    assert list(temp_dir.iterdir()) == []


def test_a_silent_server_times_out_on_the_read_timeout(hostile: HostileServer, temp_dir: Path):
    started = time.monotonic()
    with pytest.raises(TimedOut):
        fetch_to_file(hostile.base + "/hang", FetchLimits(read_timeout=0.5))
    assert time.monotonic() - started < 2
    assert list(temp_dir.iterdir()) == []


# ---- compression bombs ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    single = gzip_bytes(256 << 20)  # 256 MB of zeros in ~250 KB
    return {
        "gzip": single,
        "deflate": deflate_bytes(256 << 20, raw=False),
        "deflate-raw": deflate_bytes(256 << 20, raw=True),
        # 256 MB in about 1 KB: a client that inflates each layer in one call holds it all at once.
        "gzip-gzip": zlib.compress(single, 9, wbits=zlib.MAX_WBITS | 16),
    }


@pytest.mark.parametrize(("encoding", "body"), [("gzip", "gzip"), ("deflate", "deflate"),
                                                ("deflate", "deflate-raw"), ("gzip, gzip", "gzip-gzip")])
def test_compression_bombs_are_capped_on_decoded_bytes_in_bounded_memory(
        hostile: HostileServer, temp_dir: Path, bombs: dict[str, bytes], encoding: str, body: str):
    hostile.bodies[body] = bombs[body]
    url = f"{hostile.base}/encoded?as={encoding.replace(' ', '%20')}&body={body}"
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match="decompresses to more than the 8 MB cap"):
            fetch_to_file(url, FetchLimits(max_bytes=8 << 20))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The decoded body is streamed to disk in pieces: memory never holds much of it at once.
    assert peak < 16 << 20, f"decoding the bomb peaked at {peak / 2**20:.0f} MB of memory"
    assert list(temp_dir.iterdir()) == []


def test_a_compressed_body_under_the_cap_is_decoded(hostile: HostileServer, temp_dir: Path):
    hostile.bodies["small"] = gzip_bytes(3 << 20)
    fetched = fetch_to_file(f"{hostile.base}/encoded?as=gzip&body=small")
    try:
        assert fetched.size == 3 << 20 and fetched.path.read_bytes() == bytes(3 << 20)
    finally:
        fetched.remove()
    assert hostile.visit("/encoded").headers["accept-encoding"] == "gzip, deflate"


@pytest.mark.parametrize("encoding", ["br", "zstd", "compress"])
def test_encodings_that_were_not_asked_for_are_refused_not_passed_on(hostile: HostileServer, temp_dir: Path,
                                                                     encoding: str):
    hostile.bodies[encoding] = b"\x8b\x00\x80garbage" * 100
    with pytest.raises(InputError, match=f"Content-Encoding '{encoding}'"):
        fetch_to_file(f"{hostile.base}/encoded?as={encoding}")
    assert list(temp_dir.iterdir()) == []


def test_stacks_of_encodings_are_refused(hostile: HostileServer, temp_dir: Path):
    hostile.bodies["triple"] = b"x"
    with pytest.raises(RemoteError, match="stacked 3 content encodings"):
        fetch_to_file(f"{hostile.base}/encoded?as=gzip,gzip,gzip&body=triple")


def test_a_damaged_compressed_body_is_a_clear_error(hostile: HostileServer, temp_dir: Path):
    hostile.bodies["broken"] = gzip_bytes(1 << 20)[:10] + b"\xff" * 200  # a reserved block type
    with pytest.raises(RemoteError, match="gzip-compressed body is damaged"):
        fetch_to_file(f"{hostile.base}/encoded?as=gzip&body=broken")
    assert list(temp_dir.iterdir()) == []


# ---- a tool call that times out or is cancelled lets go of the fetch at once ------------------------

async def _let_go(hostile: HostileServer, temp_dir: Path, started: float) -> None:
    import anyio

    for _ in range(60):
        visit = hostile.visits[0] if hostile.visits else None
        if visit is not None and visit.closed is not None and not fetcher_threads() and not list(temp_dir.iterdir()):
            break
        await anyio.sleep(0.05)
    assert hostile.visits and hostile.visits[0].closed is not None, "the server is still being read from"
    assert hostile.visits[0].closed - started < 3.5
    assert fetcher_threads() == [], "a worker thread is still inside the fetcher"
    assert list(temp_dir.iterdir()) == [], "a temporary file was left behind"


@pytest.mark.anyio
@pytest.mark.parametrize("route", ["/trickle-headers", "/trickle-body"])
async def test_a_tool_timeout_ends_the_fetch_thread_and_its_temporary_file(
        hostile: HostileServer, temp_dir: Path, monkeypatch: pytest.MonkeyPatch, route: str):
    from mcp import Client

    from servers.reader.server import build

    monkeypatch.setenv("TOOLSUITE_TOOL_TIMEOUT", "1")  # the fetch's own limit (300 s) is far away
    started = time.monotonic()
    async with Client(build()) as client:
        result = await client.call_tool("convert_to_markdown", {"uri": hostile.base + route})
        assert result.is_error and "did not finish within 1 s" in result.content[0].text
        await _let_go(hostile, temp_dir, started)


@pytest.mark.anyio
async def test_a_cancelled_tool_call_ends_the_fetch_thread_and_its_temporary_file(
        hostile: HostileServer, temp_dir: Path):
    import anyio
    from mcp import Client

    from servers.reader.server import build

    started = time.monotonic()
    async with Client(build()) as client:
        with anyio.move_on_after(1):
            await client.call_tool("convert_to_markdown", {"uri": hostile.base + "/trickle-body"})
        await _let_go(hostile, temp_dir, started)
