"""A hostile HTTP server on 127.0.0.1 for the attack suite: it trickles headers and bodies, never
stops sending, sends compression bombs and redirects, and records every connection and when the
client hung up, so tests can prove the fetcher let go."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
import zlib
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit


def gzip_bytes(data_size: int, layers: int = 1) -> bytes:
    """gzip of `data_size` zero bytes, compressed `layers` times (a bomb for small sizes on the wire)."""
    engine = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = bytes(1 << 20)
    parts = [engine.compress(block) for _ in range(data_size >> 20)]
    parts.append(engine.compress(bytes(data_size & ((1 << 20) - 1))))
    parts.append(engine.flush())
    body = b"".join(parts)
    for _ in range(layers - 1):
        body = zlib.compress(body, 9, wbits=zlib.MAX_WBITS | 16)
    return body


def deflate_bytes(data_size: int, raw: bool) -> bytes:
    engine = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
    block = bytes(1 << 20)
    return b"".join([engine.compress(block) for _ in range(data_size >> 20)] + [engine.flush()])


@dataclass
class Visit:
    path: str
    headers: dict[str, str]
    opened: float
    closed: float | None = None  # when a write failed or the client hung up


@dataclass
class HostileServer:
    """Routes: /ok, /redirect?to=URL, /trickle-headers, /trickle-body, /endless, /encoded?as=ENC
    (the body registered under that name, sent with that Content-Encoding), /hang."""

    bodies: dict[str, bytes] = field(default_factory=dict)
    visits: list[Visit] = field(default_factory=list)
    trickle_interval: float = 0.2
    trickle_for: float = 20.0

    def start(self, host: str = "127.0.0.1") -> HostileServer:
        owner = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                owner._serve(self.request)

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server_class = type("Server", (socketserver.ThreadingTCPServer,), {"address_family": family,
                                                                          "daemon_threads": True,
                                                                          "allow_reuse_address": True})
        self._server = server_class((host, 0), Handler)
        self.port = self._server.server_address[1]
        self.base = f"http://{host if family == socket.AF_INET else f'[{host}]'}:{self.port}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def visit(self, path_prefix: str) -> Visit:
        return next(v for v in self.visits if v.path.startswith(path_prefix))

    def _serve(self, sock: socket.socket) -> None:
        raw = b""
        sock.settimeout(10)
        while b"\r\n\r\n" not in raw:
            chunk = sock.recv(4096)
            if not chunk:
                return
            raw += chunk
        lines = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1]
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        visit = Visit(path=path, headers=headers, opened=time.monotonic())
        self.visits.append(visit)
        try:
            self._respond(sock, path)
        except OSError:
            pass
        finally:
            visit.closed = time.monotonic()
            sock.close()

    def _trickle(self, sock: socket.socket, byte: bytes) -> None:
        end = time.monotonic() + self.trickle_for
        while time.monotonic() < end:
            sock.sendall(byte)
            time.sleep(self.trickle_interval)

    def _respond(self, sock: socket.socket, path: str) -> None:
        route = urlsplit(path)
        query = parse_qs(route.query)
        if route.path == "/ok":
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
        elif route.path == "/redirect":
            location = query["to"][0].encode()
            sock.sendall(b"HTTP/1.1 302 Found\r\nLocation: " + location + b"\r\nContent-Length: 0\r\n\r\n")
        elif route.path == "/trickle-headers":
            sock.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            self._trickle(sock, b"a")
        elif route.path == "/trickle-body":
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
            self._trickle(sock, b"x")
        elif route.path == "/endless":
            sock.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
            block = b"x" * 65536
            end = time.monotonic() + self.trickle_for
            while time.monotonic() < end:
                sock.sendall(block)
        elif route.path == "/encoded":
            encoding = query["as"][0]
            body = self.bodies[query.get("body", [encoding])[0]]
            sock.sendall(f"HTTP/1.1 200 OK\r\nContent-Encoding: {encoding}\r\nContent-Length: {len(body)}\r\n"
                         "Connection: close\r\n\r\n".encode() + body)
        elif route.path == "/hang":
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
            time.sleep(self.trickle_for)
        else:
            sock.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
