"""The wire between the server, the sandbox's supervisor and its interpreter: framing, caps, schema.

Standard library only: it is imported by the server and bound read-only into the sandbox, where the
supervisor (`kernel.py`) imports it too. Every reply is JSON on one line. Whoever reads a line
reads at most `cap` bytes of it (a writer cannot grow the reader's memory), and a reply is rebuilt
field by field from what `clean_*_reply` accepts (types checked, strings cut, unknown keys
dropped), so a forged or broken reply can never inject a field the server would trust.
"""

from __future__ import annotations

import json
import os
import selectors
import time

MAX_IMAGES = 10
IMAGE_CHARS = 4 * 2**20  # base64 characters per figure (~3 MB of PNG)
TEXT_SLACK = 4096  # room for a truncation note after a capped field


def reply_cap(output_limit: int) -> int:
    """Most bytes one reply line may take: every text field at its cap with JSON escapes (\\uXXXX is 6
    bytes per character), the figures, and room for the frame."""
    return 6 * (5 * output_limit + 2 * TEXT_SLACK) + MAX_IMAGES * (IMAGE_CHARS + 16) + 65536


class LineTooLong(Exception):
    """The peer sent more than the cap allows without ending its line."""


class LineReader:
    """Reads newline-ended lines from a non-blocking pipe, never holding more than `cap` bytes."""

    def __init__(self, fd: int, cap: int) -> None:
        self.fd = fd
        self.cap = cap
        self.buffer = bytearray()
        os.set_blocking(fd, False)

    def drain(self) -> None:
        """Throw away whatever is waiting (stale output written between requests)."""
        self.buffer.clear()
        while True:
            try:
                chunk = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return
            if not chunk:
                return

    def read(self, deadline: float, watch: tuple[int, ...] = ()) -> bytes | int | None:
        """The next line (without its newline); None at end of file; a watched fd number when that fd
        became readable first. Raises TimeoutError past `deadline` and LineTooLong past the cap."""
        with selectors.DefaultSelector() as selector:
            selector.register(self.fd, selectors.EVENT_READ)
            for extra in watch:
                selector.register(extra, selectors.EVENT_READ)
            while True:
                end = self.buffer.find(b"\n")
                if end >= 0:
                    line = bytes(self.buffer[:end])
                    del self.buffer[:end + 1]
                    return line
                if len(self.buffer) > self.cap:
                    self.buffer.clear()
                    raise LineTooLong
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                events = selector.select(min(remaining, 1.0))
                ready = {key.fd for key, _ in events}
                if self.fd in ready:
                    try:
                        chunk = os.read(self.fd, min(1 << 20, self.cap + 1 - len(self.buffer)) or 1)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        return None
                    self.buffer.extend(chunk)
                    continue
                for extra in watch:
                    if extra in ready:
                        return extra


def read_reply(reader: LineReader, deadline: float, expected: str | None, key: str = "id",
               watch: tuple[int, ...] = ()) -> dict | int | None:
    """The next JSON object whose `key` equals `expected`; lines with another id (stale replies to a
    request given up on, or lines forged by whoever else can write the pipe) and lines that are not
    JSON objects are skipped. None at end of file; a watched fd number when that fd became readable."""
    while True:
        line = reader.read(deadline, watch)
        if not isinstance(line, bytes):
            return line
        reply = decode(line)
        if isinstance(reply, dict) and reply.get(key) == expected:
            return reply


def decode(line: bytes) -> object:
    """JSON from a line, or None when it is not valid (deep nesting, bad bytes: anything)."""
    try:
        return json.loads(line)
    except (ValueError, RecursionError, MemoryError):
        return None


def _text(value: object, limit: int) -> str:
    if not isinstance(value, str):
        return ""
    return value if len(value) <= limit else value[:limit] + f"... [{len(value) - limit} more characters]"


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**62 else 0


def _seconds(value: object) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 10**7:
        return round(float(value), 3)
    return 0.0


def clean_code_reply(raw: object, limit: int) -> dict:
    """A run_code reply rebuilt from `raw` with every field typed and capped."""
    raw = raw if isinstance(raw, dict) else {}
    error = raw.get("error")
    if isinstance(error, dict):
        error = {"name": _text(error.get("name"), 200) or "Error", "value": _text(error.get("value"), 2000),
                 "traceback": _text(error.get("traceback"), limit)}
    else:
        error = None
    images = raw.get("images") if isinstance(raw.get("images"), list) else []
    valid = [image for image in images if isinstance(image, str) and 0 < len(image) <= IMAGE_CHARS
             and image.isascii()]
    result = raw.get("result")
    return {
        "stdout": _text(raw.get("stdout"), limit),
        "stderr": _text(raw.get("stderr"), limit),
        "stdout_dropped": _count(raw.get("stdout_dropped")),
        "stderr_dropped": _count(raw.get("stderr_dropped")),
        "result": _text(result, limit) if isinstance(result, str) else None,
        "error": error,
        "images": valid[:MAX_IMAGES],
        "images_made": max(len(images), _count(raw.get("images_made"))),
        "images_refused": len(images) - len(valid),
        "seconds": _seconds(raw.get("seconds")),
    }


def clean_command_reply(raw: object, limit: int) -> dict:
    raw = raw if isinstance(raw, dict) else {}
    code = raw.get("exit_code")
    return {
        "exit_code": code if isinstance(code, int) and not isinstance(code, bool) and -256 < code < 256 else None,
        "stdout": _text(raw.get("stdout"), limit),
        "stderr": _text(raw.get("stderr"), limit),
        "stdout_dropped": _count(raw.get("stdout_dropped")),
        "stderr_dropped": _count(raw.get("stderr_dropped")),
        "timed_out": raw.get("timed_out") is True,
        "seconds": _seconds(raw.get("seconds")),
    }
