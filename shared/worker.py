"""One way to run an engine for a tool call: input opened, blocking work in a worker thread, a stop flag.

`run_on_input` opens the input through the input policy (`shared.inputs.open_input`) inside the
worker thread, so a slow download never blocks the event loop and the input stays open exactly as
long as the engine works on it. The engine gets a `Job`: the progress callback and a stop flag to
check between steps. When the call ends before the engine does, the caller answers at once and the
worker is left to stop by itself: the flag says why (the client cancelled, or the tool's time limit
passed), the engine's next `check` raises `Cancelled` or `TimedOut` accordingly, and the input is
closed (temporary files removed) as the worker unwinds.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
import anyio.to_thread

from shared.errors import Cancelled, TimedOut
from shared.inputs import LocalInput, open_input

log = logging.getLogger("toolsuite.worker")
T = TypeVar("T")

ProgressFn = Callable[[float, float | None, str | None], None]
"""(done, total or None, message or None); engines call it from their worker thread."""

CANCELLED = "cancelled by the client"
TIME_LIMIT = "stopped at the tool's time limit"


class StopFlag(threading.Event):
    """Set when nobody waits for the engine any more; `reason` says why."""

    reason: str = ""

    def stop(self, reason: str) -> None:
        self.reason = reason
        self.set()

    def check(self, what: str) -> None:
        """Raise if the call has ended: `TimedOut` when its time limit passed, `Cancelled` otherwise."""
        if not self.is_set():
            return
        if self.reason == TIME_LIMIT:
            raise TimedOut(f"{what} {TIME_LIMIT}")
        raise Cancelled(f"{what} {self.reason or CANCELLED}")


@dataclass(frozen=True)
class Job:
    """What an engine running for a call gets: where to report progress and when to stop."""

    progress: ProgressFn | None = None
    stop: StopFlag = field(default_factory=StopFlag)


async def run(work: Callable[[Job], T], *, progress: ProgressFn | None = None) -> T:
    """`work(job)` in a worker thread; if the call ends first, the job's stop flag is set with the reason."""
    job = Job(progress)
    deadline = anyio.current_effective_deadline()
    try:
        return await anyio.to_thread.run_sync(work, job, abandon_on_cancel=True)
    except anyio.get_cancelled_exc_class():
        # The factory's time limit is the nearest deadline; any other cancellation comes from the client.
        reason = TIME_LIMIT if anyio.current_time() >= deadline else CANCELLED
        job.stop.stop(reason)
        log.info("engine work %s; it stops at its next check", reason)
        raise


async def run_on_inputs(sources: Sequence[str], work: Callable[[list[LocalInput], Job], T], *,
                        progress: ProgressFn | None = None) -> tuple[T, list[str]]:
    """Open every source, then `work(inputs, job)` in a worker thread: (its result, the inputs' labels)."""

    def opened(job: Job) -> tuple[T, list[str]]:
        with contextlib.ExitStack() as stack:
            items = [stack.enter_context(open_input(source)) for source in sources]
            job.stop.check("opening the input")
            return work(items, job), [item.label for item in items]

    return await run(opened, progress=progress)


async def run_on_input(source: str, work: Callable[[LocalInput, Job], T], *,
                       progress: ProgressFn | None = None) -> tuple[T, str]:
    """Open `source`, then `work(input, job)` in a worker thread: (its result, the input's label)."""
    result, labels = await run_on_inputs([source], lambda items, job: work(items[0], job), progress=progress)
    return result, labels[0]
