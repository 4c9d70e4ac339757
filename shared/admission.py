"""Load that holds: at most N tool calls run at once per server, at most Q wait, the rest are refused.

One `Gate` per server. Every `tools/call` passes it (an MCP middleware, so stdio and HTTP alike):
it runs at once if a slot is free, waits in a bounded FIFO queue (up to `TOOLSUITE_QUEUE_TIMEOUT`)
otherwise, and past the queue it is refused *before anything runs*, so nothing is lost or
half-written and memory stays bounded whatever the flood.

How a refusal reads:
- over stdio (and over HTTP for a call that slipped past the HTTP check, e.g. while a hung-up
  client's call still runs) the call's result is `isError: true` with a
  "busy, retry in about N s" message the model can act on; the session is untouched;
- over HTTP, when the server has no room, the request is answered `503 Service Unavailable` with
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
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio

from shared import settings

log = logging.getLogger("toolsuite.admission")

# JSON-RPC "server error" range; MCP defines no code for an overloaded server.
BUSY_ERROR_CODE = -32000
# The SDK's own request body limit: a larger body is not peeked at, the SDK refuses it.
MAX_PEEK_BYTES = 4 << 20


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
    """Slots handed over in FIFO order to a bounded, timed queue of waiters. One event loop only.

    Counting is synchronous (no await between the check and the update), so a burst of calls that
    arrive in the same instant is split exactly into running, waiting and refused.
    """

    def __init__(self, name: str, limits: Limits) -> None:
        self.name = name
        self.limits = limits
        self.running = 0
        self.refused = 0
        self._queue: deque[anyio.Event] = deque()
        self._mean_seconds = 1.0  # moving average of call durations, for Retry-After
        self._logged_at = -math.inf
        self._logged_refused = 0

    @property
    def waiting(self) -> int:
        return len(self._queue)

    @property
    def full(self) -> bool:
        """No free slot and no room in the queue: the next call would be refused."""
        return self.running >= self.limits.concurrent and self.waiting >= self.limits.queued

    def retry_after(self, ahead: int | None = None) -> int:
        """Seconds until a retry is likely to find room: the calls ahead drain `concurrent` at a time."""
        ahead = self.waiting if ahead is None else ahead
        estimate = self._mean_seconds * (ahead + 1) / self.limits.concurrent
        return max(1, min(60, math.ceil(estimate)))

    def _note_refusal(self, message: str) -> None:
        # One line per refusal would let a flood fill the disk: the first, then a count every 10 s.
        self.refused += 1
        now = time.monotonic()
        if now - self._logged_at >= 10:
            log.warning("refused %d tool call(s) since the last report; latest: %s",
                        self.refused - self._logged_refused, message)
            self._logged_at = now
            self._logged_refused = self.refused

    def busy(self, why: str, ahead: int | None = None) -> Busy:
        seconds = self.retry_after(ahead)
        message = (
            f"{self.name} is busy ({why}); this call was not started, nothing was done. "
            f"Retry in about {seconds} s. (Limits: TOOLSUITE_MAX_CONCURRENT_CALLS={self.limits.concurrent}, "
            f"TOOLSUITE_MAX_QUEUED_CALLS={self.limits.queued}.)"
        )
        self._note_refusal(message)
        return Busy(message, seconds)

    def busy_now(self) -> Busy:
        return self.busy(f"{_calls(self.running)} running and {self.waiting} waiting, the most it takes")

    def _release(self) -> None:
        if self._queue:
            self._queue.popleft().set()  # the slot passes straight to the oldest waiter
        else:
            self.running -= 1

    async def _wait_for_slot(self) -> None:
        turn = anyio.Event()
        self._queue.append(turn)
        try:
            with anyio.fail_after(self.limits.queue_timeout):
                await turn.wait()
        except BaseException as exc:
            if turn.is_set():
                self._release()  # handed a slot in the same instant: pass it on, unused
            else:
                self._queue.remove(turn)
            if isinstance(exc, TimeoutError):
                raise self.busy(
                    f"no free slot within {self.limits.queue_timeout:g} s (TOOLSUITE_QUEUE_TIMEOUT)"
                ) from None
            raise  # cancelled by the client: leave quietly

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self.running < self.limits.concurrent and not self._queue:
            self.running += 1
        elif self.waiting >= self.limits.queued:
            raise self.busy_now()
        else:
            await self._wait_for_slot()  # on success the releaser has handed its slot over
        started = time.monotonic()
        try:
            yield
        finally:
            self._release()
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

            return CallToolResult(content=[TextContent(type="text", text=str(busy))], is_error=True)

    server.middleware.append(admit_tool_calls)
    log.info("%s runs at most %d tool calls at once, %d more may wait up to %g s", server.name,
             gate.limits.concurrent, gate.limits.queued, gate.limits.queue_timeout)
    return gate


class HttpBusyMiddleware:
    """ASGI: answer a `tools/call` POST with 503 at once when the server has no room for it.

    It counts the tool calls in progress over HTTP (running, queued, or still on their way to the
    gate), so a burst that arrives in one instant is split exactly: the first
    `concurrent + queued` go in, the rest get 503 before the SDK does any work for them. The gate
    stays the authority (calls over stdio or from clients that hung up still count there). Sits
    inside the SDK's authentication middleware, so an unauthenticated caller gets 401 and learns
    nothing about load.
    """

    def __init__(self, app: Any, gate: Gate, path: str, auth_required: bool, security: Any = None) -> None:
        self.app = app
        self.gate = gate
        self.path = path
        self.auth_required = auth_required
        self.security = security
        self.in_flight = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (scope["type"] != "http" or scope.get("method") != "POST" or scope.get("path") != self.path
                or not await self._eligible(scope)):
            await self.app(scope, receive, send)
            return
        messages, body, complete = await _read_body(receive, limit=MAX_PEEK_BYTES)
        request_id, is_call = _peek(body) if complete else (None, False)
        replay = _replay(messages, receive)
        if not is_call:
            await self.app(scope, replay, send)
            return
        capacity = self.gate.limits.concurrent + self.gate.limits.queued
        if self.gate.full or self.in_flight >= capacity:
            await self._refuse(send, request_id)
            return
        self.in_flight += 1
        try:
            await self.app(scope, replay, send)
        finally:
            self.in_flight -= 1

    async def _refuse(self, send: Any, request_id: Any) -> None:
        in_progress = max(self.in_flight, self.gate.running + self.gate.waiting)
        busy = self.gate.busy(f"{_calls(in_progress)} running or waiting, the most it takes",
                              ahead=in_progress - self.gate.limits.concurrent)
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


def _calls(count: int) -> str:
    return f"{count} tool call{'' if count == 1 else 's'}"


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
