"""Standing attack suite, URL fetcher: each test fails if the attack works. Never skipped on CI;
the only network is the hostile server these tests start on 127.0.0.1.

Covered: compression bombs (gzip, deflate, stacked) and encodings we did not ask for.
"""

from __future__ import annotations

import tempfile
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.errors import InputError, RemoteError
from shared.fetch import FetchLimits, fetch_to_file
from tests.hostile_http import HostileServer, deflate_bytes, gzip_bytes


@pytest.fixture
def temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Temporary files of this test land here, so a leaked one is seen."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def hostile(monkeypatch: pytest.MonkeyPatch) -> Iterator[HostileServer]:
    monkeypatch.setenv("TOOLSUITE_ALLOWED_HOSTS", "127.0.0.1")
    server = HostileServer().start()
    yield server
    server.stop()


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
