"""Small HTTP servers on a loopback address for tests and benches: a handler that keeps quiet, one way
to send a whole answer, and a site that answers every GET the same way and records what was asked."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that does not log every request to stderr (pytest would show them all)."""

    def log_message(self, *_args: object) -> None:
        pass


def send(handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str | None = None,
         headers: dict[str, str] | None = None) -> None:
    """A whole answer from `handler`: status, content type (when given), length, `headers`, body."""
    handler.send_response(status)
    if content_type:
        handler.send_header("content-type", content_type)
    handler.send_header("content-length", str(len(body)))
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.end_headers()
    handler.wfile.write(body)


class Site:
    """Answers every GET with `body`, or with a redirect to `redirect`; `requests` lists the paths asked
    for, in order. Serves from a thread until `close()`."""

    def __init__(self, body: bytes = b"", *, content_type: str | None = None, redirect: str | None = None,
                 host: str = "127.0.0.1") -> None:
        self.requests: list[str] = []
        owner = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                owner.requests.append(self.path)
                if redirect:
                    send(self, 302, b"", headers={"location": redirect})
                else:
                    send(self, 200, body, content_type)

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self.port = self._server.server_address[1]
        self.url = f"http://{host}:{self.port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def hits(self) -> int:
        return len(self.requests)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextlib.contextmanager
def serving(body: bytes, *, content_type: str | None = None) -> Iterator[Site]:
    """A `Site` on 127.0.0.1 for the length of the block."""
    site = Site(body, content_type=content_type)
    try:
        yield site
    finally:
        site.close()
