"""A fake OpenAI-compatible HTTP server on 127.0.0.1 for wire-format tests.

It answers chat completions, embeddings and transcriptions, records every request, and plays a
script of injected behaviours first (an HTTP status with a body, a delay, garbage), so tests can
check retries, timeouts and error messages. It checks our wire format, not model quality.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any

from tests.local_http import QuietHandler, send


@dataclass
class Scripted:
    status: int = 200
    body: Any = None  # dict -> JSON, str -> raw text
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class FakeOpenAI:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.script: deque[Scripted] = deque()
        self.chat_reply = "fake answer"
        # Optional: a function of the chat request's JSON returning the reply text (for replies that
        # depend on the request, e.g. its temperature, when requests arrive concurrently).
        self.chat_responder: Any = None
        self.embedding_dim = 8
        owner = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = self.rfile.read(length)
                owner.requests.append(Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                scripted = owner.script.popleft() if owner.script else None
                if scripted is not None:
                    if scripted.delay:
                        time.sleep(scripted.delay)
                    if scripted.body is not None or scripted.status != 200:
                        body_out = scripted.body if scripted.body is not None else {}
                        self._send(scripted.status, body_out, scripted.headers)
                        return
                self._send(200, owner.default_response(self.path, body, self.headers.get("content-type", "")))

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up
                    send(self, status, raw, "application/json", headers)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def default_response(self, path: str, body: bytes, content_type: str) -> dict[str, Any]:
        if path.endswith("/chat/completions"):
            request = json.loads(body)
            reply = self.chat_responder(request) if self.chat_responder else self.chat_reply
            return {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": request.get("model", "fake"),
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": reply}}],
                "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18,
                          "completion_tokens_details": {"reasoning_tokens": 3}},
            }
        if path.endswith("/embeddings"):
            request = json.loads(body)
            inputs = request["input"] if isinstance(request["input"], list) else [request["input"]]
            data = [{"object": "embedding", "index": i,
                     "embedding": [float((len(text) + i + d) % 7) / 7 for d in range(self.embedding_dim)]}
                    for i, text in enumerate(inputs)]
            return {"object": "list", "data": data, "model": request.get("model"),
                    "usage": {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}}
        if path.endswith("/audio/transcriptions"):
            return {"text": "hello from the fake transcriber", "language": "english", "duration": 1.5,
                    "segments": [{"id": 0, "start": 0.0, "end": 1.5, "text": "hello from the fake transcriber"}]}
        return {"error": {"message": f"unknown path {path}"}}


def main() -> None:
    """Run the fake server on its own (used by bench/inspector_check.sh): prints its base URL."""
    import sys

    server = FakeOpenAI().start()
    sys.stdout.write(server.base_url + "\n")
    sys.stdout.flush()
    try:
        sys.stdin.read()  # serve until stdin closes
    finally:
        server.stop()


if __name__ == "__main__":
    main()
