"""The shared input policy: allowed roots, the SSRF-guarded fetcher, data: URIs, types from bytes."""

from __future__ import annotations

import base64
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from shared.errors import InputError, RemoteError, TimedOut
from shared.fetch import FetchLimits, fetch_to_file
from shared.inputs import open_input, resolve_local_path
from shared.mime import sniff_bytes

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


# ---- local paths -------------------------------------------------------------------------------

def test_relative_path_resolves_inside_the_root(root: Path):
    (root / "a.txt").write_text("hello")
    assert resolve_local_path("a.txt") == root / "a.txt"
    assert resolve_local_path(f"file://{root / 'a.txt'}") == root / "a.txt"


def test_dotdot_escape_is_refused(root: Path, tmp_path: Path):
    (tmp_path / "secret.txt").write_text("x")
    with pytest.raises(InputError, match="outside the allowed roots"):
        resolve_local_path("../secret.txt")
    with pytest.raises(InputError, match="outside the allowed roots"):
        resolve_local_path("/etc/passwd")


def test_symlink_out_of_the_root_is_refused(root: Path, tmp_path: Path):
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    os.symlink(outside, root / "link.txt")
    with pytest.raises(InputError, match="outside the allowed roots"):
        resolve_local_path("link.txt")


def test_missing_file_and_directory_messages(root: Path):
    with pytest.raises(InputError, match=r"file not found: 'nope.txt' \(allowed roots: "):
        resolve_local_path("nope.txt")
    (root / "sub").mkdir()
    with pytest.raises(InputError, match="is a directory"):
        resolve_local_path("sub")


def test_several_roots_separated_by_pathsep(monkeypatch, tmp_path: Path):
    second = tmp_path / "second"
    second.mkdir()
    (second / "b.txt").write_text("b")
    monkeypatch.setenv("TOOLSUITE_ROOTS", f"{tmp_path / 'root'}{os.pathsep}{second}")
    assert resolve_local_path(str(second / "b.txt")) == second / "b.txt"


# ---- types from bytes --------------------------------------------------------------------------

def test_mime_comes_from_bytes_not_the_extension(root: Path):
    (root / "lies.pdf").write_bytes(PNG)
    with open_input("lies.pdf") as item:
        assert item.file_type.mime == "image/png"
    assert sniff_bytes(b"RIFF\x00\x00\x00\x00WEBPVP8 ").mime == "image/webp"
    assert sniff_bytes('{"a": "中文"}'.encode()).mime == "application/json"
    assert sniff_bytes("你好，世界".encode("gb18030")).mime == "text/plain"
    assert sniff_bytes(b"<!DOCTYPE html><html></html>").mime == "text/html"
    assert sniff_bytes(b"\x00\x01\x02binary").mime == "application/octet-stream"


def test_data_uri_is_decoded_and_cleaned_up():
    uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
    with open_input(uri) as item:
        path = item.path
        assert item.file_type.mime == "image/png" and item.size == len(PNG)
        assert path.exists()
    assert not path.exists()
    with pytest.raises(InputError, match="malformed data"), open_input("data:text/plain;base64"):
        pass


def test_unsupported_schemes_are_refused():
    for uri in ("ftp://example.org/x", "gopher://x/", "javascript:alert(1)://"):
        with pytest.raises(InputError), open_input(uri):
            pass


# ---- the SSRF guard ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://localhost:8080/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://2130706433/",  # 127.0.0.1 written as a decimal number
        "http://0x7f000001/",  # and as hex
        "http://10.0.0.1/",
        "http://192.168.1.1/",
        "http://0.0.0.0/",
    ],
)
def test_private_and_metadata_addresses_are_refused_before_connecting(url: str):
    with pytest.raises(InputError, match="private, loopback, link-local or reserved"):
        fetch_to_file(url)


def test_offline_switch_refuses_every_url(monkeypatch):
    monkeypatch.setenv("TOOLSUITE_OFFLINE", "1")
    with pytest.raises(InputError, match="TOOLSUITE_OFFLINE"):
        fetch_to_file("https://example.org/")


class _Site:
    """A small HTTP site on 127.0.0.1 with a redirect, a big body and a body that never comes."""

    def __init__(self) -> None:
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args):
                pass

            def do_GET(self):
                site.hits.append(self.path)
                if self.path == "/ok":
                    body = b"hello"
                    self.send_response(200)
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                elif self.path.startswith("/redirect"):
                    self.send_response(302)
                    self.send_header("location", self.path.split("?to=", 1)[1])
                    self.end_headers()
                elif self.path == "/big":
                    self.send_response(200)
                    self.end_headers()  # no length: the cap must apply while streaming
                    for _ in range(64):
                        self.wfile.write(b"x" * 65536)
                elif self.path == "/hang":
                    self.send_response(200)
                    self.send_header("content-length", "100")
                    self.end_headers()
                    time.sleep(3)
                else:
                    self.send_error(404)

        self.hits: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def site(monkeypatch):
    monkeypatch.setenv("TOOLSUITE_ALLOWED_HOSTS", "127.0.0.1")
    s = _Site()
    yield s
    s.server.shutdown()


def test_allow_listed_host_is_fetched(site):
    fetched = fetch_to_file(f"{site.base}/ok")
    try:
        assert fetched.path.read_bytes() == b"hello"
    finally:
        fetched.remove()


def test_redirect_to_a_private_address_is_refused(site):
    port = site.server.server_address[1]
    with pytest.raises(InputError, match="private"):
        fetch_to_file(f"{site.base}/redirect?to=http://127.0.0.2:{port}/ok")
    with pytest.raises(InputError, match="private"):
        fetch_to_file(f"{site.base}/redirect?to=http://169.254.169.254/latest/")
    assert site.hits == [f"/redirect?to=http://127.0.0.2:{port}/ok", "/redirect?to=http://169.254.169.254/latest/"]


def test_redirect_to_an_unsupported_scheme_is_refused(site):
    with pytest.raises(InputError, match="unsupported URL scheme"):
        fetch_to_file(f"{site.base}/redirect?to=file:///etc/passwd")


def test_size_cap_applies_while_streaming(site):
    with pytest.raises(InputError, match="cap"):
        fetch_to_file(f"{site.base}/big", FetchLimits(max_bytes=100_000))


def test_a_server_that_stops_sending_times_out(site):
    started = time.monotonic()
    with pytest.raises(TimedOut):
        fetch_to_file(f"{site.base}/hang", FetchLimits(read_timeout=0.5))
    assert time.monotonic() - started < 2.5


def test_http_errors_are_reported(site):
    with pytest.raises(RemoteError, match="HTTP 404"):
        fetch_to_file(f"{site.base}/missing")
