"""How long the current tool call may still run, and whether it has ended, from anywhere in its engine.

`shared.worker` runs each engine with a `StopFlag` carrying the call's deadline and makes it the
current one for the worker thread, so code deep inside an engine (hashing a file, waiting for a
child process) can stop when the call ends without every function passing the flag along. Whatever
must not outlive the call (a child process) registers a callback that runs the moment the flag is
set, from the event loop's side: a call that times out or is cancelled frees it at once instead of
when the engine next looks.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator

from shared.errors import Cancelled, TimedOut

log = logging.getLogger("toolsuite.callscope")

CANCELLED = "cancelled by the client"
TIME_LIMIT = "stopped at the tool's time limit"


class StopFlag(threading.Event):
    """Set when nobody waits for the engine any more; `reason` says why. `deadline` (monotonic
    seconds) is when the call's time limit passes, so waits can be bounded before the flag is set."""

    reason: str = ""

    def __init__(self, deadline: float = math.inf) -> None:
        super().__init__()
        self.deadline = deadline
        self._on_stop: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def stop(self, reason: str) -> None:
        self.reason = reason
        self.set()
        with self._lock:
            callbacks, self._on_stop = self._on_stop, []
        for callback in callbacks:
            try:
                callback()
            except Exception:  # freeing one thing must not keep the others
                log.warning("a stop callback failed", exc_info=True)

    def on_stop(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Run `callback` when the flag is set (at once if it already is); returns a function that
        unregisters it, for when the resource was freed normally."""
        with self._lock:
            if not self.is_set():
                self._on_stop.append(callback)
                return lambda: self._forget(callback)
        callback()
        return lambda: None

    def _forget(self, callback: Callable[[], None]) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._on_stop.remove(callback)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def check(self, what: str) -> None:
        """Raise if the call has ended: `TimedOut` when its time limit passed, `Cancelled` otherwise."""
        if not self.is_set():
            if self.remaining() <= 0:
                raise TimedOut(f"{what} {TIME_LIMIT}")
            return
        if self.reason == TIME_LIMIT:
            raise TimedOut(f"{what} {TIME_LIMIT}")
        raise Cancelled(f"{what} {self.reason or CANCELLED}")


_current: contextvars.ContextVar[StopFlag | None] = contextvars.ContextVar("toolsuite_stop_flag", default=None)


@contextlib.contextmanager
def active(flag: StopFlag) -> Iterator[StopFlag]:
    """Make `flag` the current call's flag for the code run inside the block (in this thread)."""
    token = _current.set(flag)
    try:
        yield flag
    finally:
        _current.reset(token)


def current() -> StopFlag | None:
    """The flag of the call this thread works for, or None outside a tool call (tests, scripts)."""
    return _current.get()


def check(what: str) -> None:
    """`current().check(what)` when running for a call; nothing otherwise."""
    flag = _current.get()
    if flag is not None:
        flag.check(what)


def remaining(default: float) -> float:
    """Seconds left before the current call's deadline, at most `default` (which applies outside calls)."""
    flag = _current.get()
    return default if flag is None else max(min(default, flag.remaining()), 0.0)
