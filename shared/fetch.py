"""The safe URL fetcher every tool uses for http(s) input.

Guards, in order: offline switch; http(s) only; the host is resolved and every address must be
public (private, loopback, link-local, metadata, multicast and reserved ranges are refused unless
`TOOLSUITE_ALLOWED_HOSTS` lists them); the connection goes to the address that was checked (so a
DNS answer cannot change between check and use); redirects are followed by hand and each hop is
checked again; the body is streamed to a temporary file with a size cap on the raw and on the
decoded bytes (gzip/deflate are inflated in bounded pieces: `shared.fetch_decode`) and
connect/read timeouts plus one total deadline that every socket operation obeys, and that also ends
the fetch when its tool call is cancelled or times out (`shared.fetch_net`).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urljoin, urlsplit

from shared import scratch, settings
from shared.errors import InputError, RemoteError, TimedOut
from shared.fetch_decode import ACCEPT_ENCODING, Decoder

log = logging.getLogger("toolsuite.fetch")

_REDIRECT_CODES = {301, 302, 303, 307, 308}
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass
class FetchLimits:
    max_bytes: int = field(default_factory=lambda: int(settings.number("TOOLSUITE_MAX_DOWNLOAD_MB", 100) * 2**20))
    connect_timeout: float = field(
        default_factory=lambda: settings.number("TOOLSUITE_CONNECT_TIMEOUT", 10, minimum=0.1)
    )
    read_timeout: float = field(default_factory=lambda: settings.number("TOOLSUITE_READ_TIMEOUT", 30, minimum=0.1))
    total_timeout: float = 300.0
    max_redirects: int = field(default_factory=lambda: int(settings.number("TOOLSUITE_MAX_REDIRECTS", 5, minimum=0)))


@dataclass
class FetchedFile:
    url: str
    path: Path
    size: int
    content_type: str | None

    def remove(self) -> None:
        scratch.remove(self.path)


def _allow_list() -> tuple[set[str], list[ipaddress.IPv4Network | ipaddress.IPv6Network]]:
    names: set[str] = set()
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for entry in settings.text("TOOLSUITE_ALLOWED_HOSTS").split(","):
        entry = entry.strip().lower().rstrip(".")
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            names.add(entry)
    return names, networks


_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, NAT64, IPv4-compatible), if any:
    `::ffff:127.0.0.1`, `2002:7f00:1::` and `64:ff9b::7f00:1` all lead to 127.0.0.1."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in network for network in _NAT64) or (int(address) >> 32 == 0 and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _is_public(address: IpAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return _is_public(embedded)
        if address.is_site_local or address.is_reserved or address.teredo is not None:
            return False
    return address.is_global and not address.is_multicast


def check_host(host: str, port: int) -> IpAddress:
    """Resolve `host` and return the address to connect to, or refuse it."""
    names, networks = _allow_list()
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise RemoteError(f"cannot resolve host {host!r}: {exc.strerror}") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    if not addresses:
        raise RemoteError(f"host {host!r} has no address")
    host_allowed = host.lower().rstrip(".") in names
    for address in addresses:
        if host_allowed or any(address in net for net in networks):
            continue
        if not _is_public(address):
            raise InputError(
                f"refused URL host {host!r}: it resolves to a private, loopback, link-local or reserved "
                f"address ({address}); add it to TOOLSUITE_ALLOWED_HOSTS if this is intended"
            )
    return addresses[0]


def validate_url(url: str) -> tuple[str, str, int]:
    """Scheme and host checks that need no network: returns (scheme, host, port)."""
    if settings.offline():
        raise InputError("network access is disabled (TOOLSUITE_OFFLINE=1): use a local file instead")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in {"http", "https"}:
        raise InputError(f"unsupported URL scheme {parts.scheme!r}: only http and https can be fetched")
    if not parts.hostname:
        raise InputError("the URL has no host")
    if parts.username or parts.password:
        raise InputError("URLs with credentials are refused")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise InputError("the URL has an invalid port") from None
    return scheme, parts.hostname, port


_SAFE = "!$%&'()*+,/:;=?@[]~"


def _request_target(url: str) -> tuple[bytes, bytes]:
    """(Host header, request target) for `url`: the name as given (IDNA-encoded), never the address."""
    parts = urlsplit(url)
    host = (parts.hostname or "").encode("idna")
    if b":" in host:  # an IPv6 literal
        host = b"[" + host + b"]"
    if parts.port is not None:
        host += b":%d" % parts.port
    # Only what may not appear on the request line is escaped (spaces, controls, non-ASCII).
    target = quote(parts.path or "/", safe=_SAFE)
    if parts.query:
        target += "?" + quote(parts.query, safe=_SAFE)
    return host, target.encode("ascii")


def fetch_to_file(url: str, limits: FetchLimits | None = None, suffix: str = "") -> FetchedFile:
    """Download `url` under every guard into a temporary file that the caller removes."""
    import httpcore

    from shared.fetch_net import Deadline, PinnedBackend

    limits = limits or FetchLimits()
    deadline = Deadline(limits.total_timeout, f"the download of {url}")
    timeouts = {"connect": limits.connect_timeout, "read": limits.read_timeout, "write": limits.read_timeout,
                "pool": limits.connect_timeout}
    current = url
    for _hop in range(limits.max_redirects + 1):
        scheme, host, port = validate_url(current)
        address = check_host(host, port)
        deadline.check()
        host_header, target = _request_target(current)
        request_url = httpcore.URL(scheme=scheme.encode(), host=host.encode("idna"), port=port, target=target)
        headers = [(b"Host", host_header), (b"User-Agent", b"toolsuite/0.1"), (b"Accept", b"*/*"),
                   (b"Accept-Encoding", ACCEPT_ENCODING.encode()), (b"Connection", b"close")]
        pool = httpcore.ConnectionPool(ssl_context=_ssl_context(), network_backend=PinnedBackend(address, deadline),
                                       max_connections=1, retries=0)
        try:
            with pool, pool.stream("GET", request_url, headers=headers, extensions={"timeout": timeouts}) as response:
                status = response.status
                response_headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in response.headers}
                if status in _REDIRECT_CODES:
                    location = response_headers.get("location")
                    if not location:
                        raise RemoteError(f"{host} answered a redirect without a location")
                    current = urljoin(current, location)
                    continue
                if status >= 400:
                    raise RemoteError(f"{host} answered HTTP {status} for {url}")
                return _stream_body(current, response, response_headers, limits, suffix)
        except httpcore.TimeoutException:
            raise TimedOut(f"timed out fetching {host} (connect {limits.connect_timeout:g} s, read "
                           f"{limits.read_timeout:g} s)") from None
        except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as exc:
            raise RemoteError(f"could not fetch {host}: {type(exc).__name__}") from None
    raise RemoteError(f"too many redirects (more than {limits.max_redirects}) for {url}")


def _ssl_context() -> ssl.SSLContext:
    import httpcore

    return httpcore.default_ssl_context()


def _stream_body(url: str, response, headers: dict[str, str], limits: FetchLimits, suffix: str) -> FetchedFile:
    cap_mb = f"{limits.max_bytes / 2**20:.0f} MB"
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_bytes:
        raise InputError(f"the URL's body is {int(declared) / 2**20:.1f} MB, over the {cap_mb} cap "
                         "(TOOLSUITE_MAX_DOWNLOAD_MB)")
    decoder = Decoder(headers.get("content-encoding"))
    handle, name = scratch.new_file("toolsuite-fetch-", suffix)
    received = size = 0

    def write(pieces, out) -> None:
        nonlocal size
        for piece in pieces:
            size += len(piece)
            if size > limits.max_bytes:
                what = "decompresses to" if decoder.compressed else "exceeds"
                raise InputError(f"the URL's body {what} more than the {cap_mb} cap (TOOLSUITE_MAX_DOWNLOAD_MB)")
            out.write(piece)

    try:
        with os.fdopen(handle, "wb") as out:
            for raw in response.iter_stream():  # read through the guarded socket, under the deadline
                received += len(raw)
                if received > limits.max_bytes:
                    raise InputError(f"the URL's body exceeds the {cap_mb} cap (TOOLSUITE_MAX_DOWNLOAD_MB)")
                write(decoder.feed(raw), out)
            write(decoder.finish(), out)
    except BaseException:
        scratch.remove(name)
        raise
    return FetchedFile(url=url, path=Path(name), size=size, content_type=headers.get("content-type"))
