"""Content-Encoding decoding for the URL fetcher, in bounded pieces.

A compressed body is a bomb waiting to happen: 100 KB of gzip can inflate to 100 MB, and gzip
inside gzip to far more. HTTP client libraries inflate each network chunk (and each layer) in one
call, so one 64 KB chunk can become gigabytes in memory before any size cap is checked. Here every
layer inflates at most `PIECE` bytes per step, so the fetcher counts decoded bytes against its cap
as they appear and memory stays bounded whatever the ratio. Only what we ask for is decoded
(gzip and deflate); any other encoding is refused rather than passed on as if it were the body.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

from shared.errors import InputError, RemoteError

PIECE = 64 * 1024
ACCEPT_ENCODING = "gzip, deflate"
MAX_LAYERS = 2  # "gzip, gzip" is legal; deeper stacks only serve to hide bombs


class _Inflater:
    """One gzip or deflate layer. `deflate` comes both zlib-wrapped and raw in practice, so its
    first two bytes decide which."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self._head = b""
        self._done = False
        self._engine: zlib._Decompress | None = None
        if encoding == "gzip":
            self._engine = zlib.decompressobj(zlib.MAX_WBITS | 16)

    def _start_deflate(self, head: bytes) -> None:
        wrapped = len(head) >= 2 and head[0] & 0x0F == 8 and ((head[0] << 8) | head[1]) % 31 == 0
        self._engine = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self._done:
            return  # bytes after the end of the compressed stream are ignored, as browsers do
        if self._engine is None:
            self._head += data
            if len(self._head) < 2:
                return
            data, self._head = self._head, b""
            self._start_deflate(data)
        yield from self._inflate(data)

    def _inflate(self, data: bytes) -> Iterator[bytes]:
        engine = self._engine
        assert engine is not None
        while True:
            try:
                out = engine.decompress(data, PIECE)
            except zlib.error:
                raise RemoteError(f"the server's {self.encoding}-compressed body is damaged") from None
            if out:
                yield out
            data = engine.unconsumed_tail
            if engine.eof:
                rest = engine.unused_data
                if self.encoding == "gzip" and rest.startswith(b"\x1f\x8b"):
                    engine = self._engine = zlib.decompressobj(zlib.MAX_WBITS | 16)  # multi-member gzip
                    data = rest
                    continue
                self._done = True
                return
            if not data and len(out) < PIECE:
                return

    def finish(self) -> Iterator[bytes]:
        if self._engine is None and self._head:
            self._start_deflate(self._head)
            yield from self._inflate(self._head)
        if self._engine is not None and not self._done:
            # Drain what the engine still holds, in pieces (flush() would return it all at once).
            yield from self._inflate(b"")


class Decoder:
    """Turns the raw body into the decoded body, layer by layer, in pieces of at most `PIECE` bytes."""

    def __init__(self, content_encoding: str | None) -> None:
        layers = [part.strip().lower() for part in (content_encoding or "").split(",")]
        layers = [layer for layer in layers if layer and layer != "identity"]
        if len(layers) > MAX_LAYERS:
            raise RemoteError(f"the server stacked {len(layers)} content encodings ({content_encoding!r}); "
                              f"at most {MAX_LAYERS} are decoded")
        for layer in layers:
            if layer not in ("gzip", "x-gzip", "deflate"):
                raise InputError(f"the server sent the body with Content-Encoding {layer!r}, which is not "
                                 f"decoded here (only {ACCEPT_ENCODING} were asked for)")
        # Encodings are listed in the order they were applied, so they are undone from the last.
        self._layers = [_Inflater("gzip" if layer == "x-gzip" else layer) for layer in reversed(layers)]

    @property
    def compressed(self) -> bool:
        return bool(self._layers)

    def feed(self, data: bytes) -> Iterator[bytes]:
        yield from self._through(data, 0)

    def _through(self, data: bytes, index: int) -> Iterator[bytes]:
        if index == len(self._layers):
            if data:
                yield data
            return
        for piece in self._layers[index].feed(data):
            yield from self._through(piece, index + 1)

    def finish(self) -> Iterator[bytes]:
        for index, layer in enumerate(self._layers):
            for piece in layer.finish():
                yield from self._through(piece, index + 1)
