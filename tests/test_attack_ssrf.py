"""Standing attack suite, SSRF: each test fails if the attack works. Never skipped on CI; the only
network is the servers these tests start on 127.0.0.1 (and ::1 when the host has it).

Covered: every spelling of loopback, DNS names that resolve to private addresses, a name with one
private address among public ones, redirects to private addresses and other schemes, and the
connection pinned to the checked address (a second DNS answer is never used).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.errors import InputError, RemoteError
from shared.fetch import FetchLimits, fetch_to_file
from tests.hostile_http import HostileServer

# ---- SSRF: every spelling of loopback, private DNS answers, redirects ------------------------------

@pytest.fixture
def witness() -> Iterator[list[HostileServer]]:
    """Servers on the loopback addresses that must never be contacted (IPv6 when the host has it)."""
    servers = [HostileServer().start("127.0.0.1")]
    with contextlib.suppress(OSError):  # no IPv6 loopback on this host
        servers.append(HostileServer().start("::1"))
    yield servers
    for server in servers:
        server.stop()


LOOPBACK_SPELLINGS = [
    "127.0.0.1", "127.1", "127.0.1", "0177.0.0.1", "0177.1", "017700000001", "0x7f.0.0.1", "0x7f.1",
    "0x7f000001", "2130706433", "127.000.000.001", "127.255.255.254", "0", "0.0.0.0", "0x0", "localhost",
    "LOCALHOST", "localhost.", "localhost.localdomain", "[::1]", "[0:0:0:0:0:0:0:1]", "[::]",
    "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[0:0:0:0:0:ffff:127.0.0.1]", "[::127.0.0.1]",
    "[2002:7f00:1::]", "[64:ff9b::127.0.0.1]",
]


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_every_spelling_of_loopback_is_refused_before_connecting(witness: list[HostileServer], host: str):
    for server in witness:
        with pytest.raises((InputError, RemoteError)) as caught:
            fetch_to_file(f"http://{host}:{server.port}/ok")
        assert "private, loopback" in str(caught.value) or "cannot resolve" in str(caught.value)
        assert server.visits == [], f"{host} reached the loopback server"


@pytest.mark.parametrize("address", ["10.1.2.3", "172.16.0.9", "192.168.0.1", "169.254.169.254", "100.64.0.1",
                                     "fd00::1", "fe80::1", "fec0::1", "::ffff:10.0.0.1", "198.18.0.1"])
def test_dns_names_resolving_to_private_addresses_are_refused(monkeypatch: pytest.MonkeyPatch, address: str):
    real = socket.getaddrinfo

    def fake(host, port, *args, **kwargs):
        if host == "intranet.example":
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            return [(family, socket.SOCK_STREAM, 6, "", (address, port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    with pytest.raises(InputError, match="private, loopback"):
        fetch_to_file("http://intranet.example/")


def test_a_name_with_one_private_address_among_public_ones_is_refused(monkeypatch: pytest.MonkeyPatch):
    def fake(host, port, *args, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    with pytest.raises(InputError, match=r"resolves to .*\(127\.0\.0\.1\)"):
        fetch_to_file("http://mixed.example/")


@pytest.fixture
def named_site(monkeypatch: pytest.MonkeyPatch) -> Iterator[HostileServer]:
    """The hostile server reachable only by the allow-listed name site.example, not by any address:
    DNS answers 127.0.0.1 the first time and an unroutable address afterwards (a rebinding attempt)."""
    server = HostileServer().start()
    real = socket.getaddrinfo
    answers = {"count": 0}

    def fake(host, port, *args, **kwargs):
        if host == "site.example":
            answers["count"] += 1
            address = "127.0.0.1" if answers["count"] == 1 else "10.255.255.1"
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    monkeypatch.setenv("TOOLSUITE_ALLOWED_HOSTS", "site.example")
    server.base = f"http://site.example:{server.port}"
    yield server
    server.stop()


def test_the_connection_is_pinned_to_the_checked_address(named_site: HostileServer, temp_dir: Path):
    fetched = fetch_to_file(f"{named_site.base}/ok", FetchLimits(connect_timeout=1))
    try:
        assert fetched.path.read_bytes() == b"hello"
    finally:
        fetched.remove()
    assert named_site.visit("/ok").headers["host"] == f"site.example:{named_site.port}"


@pytest.mark.parametrize("target", ["http://127.0.0.1:{port}/ok", "http://2130706433:{port}/ok",
                                    "http://0x7f.1:{port}/ok", "http://localhost:{port}/ok",
                                    "http://[::ffff:127.0.0.1]:{port}/ok", "http://[::1]:{port}/ok",
                                    "http://0:{port}/ok", "http://169.254.169.254/latest/meta-data/",
                                    "http://10.0.0.1/", "http://[fd00::1]/"])
def test_redirects_to_private_addresses_are_refused(named_site: HostileServer, target: str):
    location = target.format(port=named_site.port)
    with pytest.raises(InputError, match="private, loopback"):
        fetch_to_file(f"{named_site.base}/redirect?to={location}")
    assert [visit.path for visit in named_site.visits] == [f"/redirect?to={location}"]


@pytest.mark.parametrize("target", ["file:///etc/passwd", "gopher://127.0.0.1/", "ftp://example.org/x",
                                    "http://user:pw@site.example/ok"])
def test_redirects_to_other_schemes_or_credentials_are_refused(named_site: HostileServer, target: str):
    with pytest.raises(InputError, match=r"unsupported URL scheme|credentials"):
        fetch_to_file(f"{named_site.base}/redirect?to={target}")
