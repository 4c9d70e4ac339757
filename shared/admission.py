"""Load that holds: at most N tool calls run at once per server, at most Q wait, the rest are refused.

One `Gate` per server. Every `tools/call` passes it (an MCP middleware, so stdio and HTTP alike):
it runs at once if a slot is free, waits in a bounded FIFO queue (up to `TOOLSUITE_QUEUE_TIMEOUT`)
otherwise, and past the queue it is refused *before anything runs*, so nothing is lost or
half-written and memory stays bounded whatever the flood.

How a refusal reads:
- over stdio (and in the rare race below, over HTTP) the call's result is `isError: true` with a
  "busy, retry in about N s" message the model can act on; the session is untouched;
- over HTTP, when the gate is already full, the request is answered `503 Service Unavailable` with
  `Retry-After` and a JSON-RPC error body carrying the same message (`HttpBusyMiddleware`). That
  happens before the SDK parses a session or spawns a task, so a flood costs almost nothing, and a
  load balancer can see it: HAProxy's `retry-on 503` hands the call to another replica, so a client
  hears "busy" only when every replica is full. The SDK client surfaces that body as an error with
  the message, and the session survives.
The slot is held by the MCP middleware for exactly as long as the tool runs, not for the HTTP
request, so a client that hangs up cannot free a slot while its work still runs.
"""

from __future__ import annotations

import json
import logging
import math
import time
import weakref
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio

from shared import settings

log = logging.getLogger("toolsuite.admission")

# JSON-RPC "server error" range; MCP defines no code for an overloaded server.
BUSY_ERROR_CODE = -32000


class Busy(Exception):
    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Limits:
    concurrent: int
    queued: int
    queue_timeout: float

    @classmethod
    def from_settings(cls) -> Limits:
        return cls(
            concurrent=int(settings.number("TOOLSUITE_MAX_CONCURRENT_CALLS", 16, minimum=1)),
            queued=int(settings.number("TOOLSUITE_MAX_QUEUED_CALLS", 64, minimum=0)),
            queue_timeout=settings.number("TOOLSUITE_QUEUE_TIMEOUT", 60, minimum=0.1),
        )


class Gate:
    """A semaphore with a bounded, timed FIFO queue and a retry estimate. One event loop only."""

    def __init__(self, name: str, limits: Limits) -> None:
        self.name = name
        self.limits = limits
        self._slots = anyio.Semaphore(limits.concurrent)
        self.running = 0
        self.waiting = 0
        self.refused = 0
        self._mean_seconds = 1.0  # moving average of call durations, for Retry-After

    @property
    def full(self) -> bool:
        """No free slot and no room in the queue: the next call would be refused."""
        return self.running >= self.limits.concurrent and self.waiting >= self.limits.queued

    def retry_after(self) -> int:
        """Seconds until a retry is likely to find room: the queue ahead drains at `concurrent` per call time."""
        ahead = self.waiting + 1
        estimate = self._mean_seconds * ahead / self.limits.concurrent
        return max(1, min(60, math.ceil(estimate)))

    def _busy(self, why: str) -> Busy:
        self.refused += 1
        seconds = self.retry_after()
        return Busy(
            f"{self.name} is busy ({why}); this call was not started, nothing was done. "
            f"Retry in about {seconds} s. (Limits: TOOLSUITE_MAX_CONCURRENT_CALLS={self.limits.concurrent}, "
            f"TOOLSUITE_MAX_QUEUED_CALLS={self.limits.queued}.)",
            seconds,
        )

    def busy_now(self) -> Busy:
        return self._busy(f"{self.running} tool calls running and {self.waiting} waiting, the most it takes")

    @asynccontextmanager
    async def slot(self):
        if self.full:
            raise self.busy_now()
        self.waiting += 1
        try:
            with anyio.fail_after(self.limits.queue_timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise self._busy(f"no free slot within {self.limits.queue_timeout:g} s (TOOLSUITE_QUEUE_TIMEOUT)") \
                from None
        finally:
            self.waiting -= 1
        self.running += 1
        started = time.monotonic()
        try:
            yield
        finally:
            self.running -= 1
            self._slots.release()
            self._mean_seconds = 0.8 * self._mean_seconds + 0.2 * (time.monotonic() - started)


_GATES: weakref.WeakKeyDictionary[Any, Gate] = weakref.WeakKeyDictionary()


def install(server: Any, limits: Limits | None = None) -> Gate:
    """Put `server`'s tool calls behind a gate (once; later calls return the same gate)."""
    if server in _GATES:
        return _GATES[server]
    gate = Gate(server.name, limits or Limits.from_settings())
    _GATES[server] = gate

    async def admit_tool_calls(ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        if ctx.method != "tools/call" or ctx.request_id is None:
            return await call_next(ctx)
        try:
            async with gate.slot():
                return await call_next(ctx)
        except Busy as busy:
            from mcp_types import CallToolResult, TextContent

            log.warning("refused a tool call: %s", busy)
            return CallToolResult(content=[TextContent(type="text", text=str(busy))], is_error=True)

    server.middleware.append(admit_tool_calls)
    log.info("%s runs at most %d tool calls at once, %d more may wait up to %g s", server.name,
             gate.limits.concurrent, gate.limits.queued, gate.limits.queue_timeout)
    return gate


class HttpBusyMiddleware:
    """ASGI: when the gate is full, answer an authenticated `tools/call` POST with 503 at once.

    Sits inside the SDK's authentication middleware (so an unauthenticated caller still gets 401
    and learns nothing about load) and looks at a request only while the gate is full.
    """

    def __init__(self, app: Any, gate: Gate, path: str, auth_required: bool, security: Any = None) -> None:
        self.app = app
        self.gate = gate
        self.path = path
        self.auth_required = auth_required
        self.security = security

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (scope["type"] != "http" or scope.get("method") != "POST" or scope.get("path") != self.path
                or not self.gate.full or not await self._eligible(scope)):
            await self.app(scope, receive, send)
            return
        messages, body, complete = await _read_body(receive, limit=4 << 20)
        request_id, is_call = _peek(body) if complete else (None, False)
        if not is_call or not self.gate.full:
            await self.app(scope, _replay(messages, receive), send)
            return
        busy = self.gate.busy_now()
        log.warning("answered 503 to a tool call: %s", busy)
        payload = json.dumps({"jsonrpc": "2.0", "id": request_id,
                              "error": {"code": BUSY_ERROR_CODE, "message": str(busy),
                                        "data": {"retryAfter": busy.retry_after}}}).encode()
        await send({"type": "http.response.start", "status": 503,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode()),
                                (b"retry-after", str(busy.retry_after).encode())]})
        await send({"type": "http.response.body", "body": payload})

    async def _eligible(self, scope: Any) -> bool:
        if self.auth_required:
            from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser

            if not isinstance(scope.get("user"), AuthenticatedUser):
                return False  # the SDK answers 401
        if self.security is not None:
            from starlette.requests import Request

            # A request the SDK would refuse for its Host or Origin gets that refusal, not 503.
            if await self.security.validate_request(Request(scope), is_post=True) is not None:
                return False
        return True


async def _read_body(receive: Any, limit: int) -> tuple[list[Any], bytes, bool]:
    messages: list[Any] = []
    size = 0
    chunks: list[bytes] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, b"", False
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return messages, b"", False  # too big to peek at: let the SDK apply its own limit
        chunks.append(chunk)
        if not message.get("more_body", False):
            return messages, b"".join(chunks), True


def _replay(messages: list[Any], receive: Any) -> Callable[[], Awaitable[Any]]:
    pending = list(messages)

    async def replay() -> Any:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


def _peek(body: bytes) -> tuple[Any, bool]:
    """(JSON-RPC id, whether the body is a tools/call request)."""
    try:
        message = json.loads(body)
    except ValueError:
        return None, False
    if isinstance(message, dict) and message.get("method") == "tools/call" and "id" in message:
        request_id = message["id"]
        return (request_id if isinstance(request_id, str | int) else None), True
    return None, False
