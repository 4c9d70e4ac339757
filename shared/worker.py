"""One way to run an engine for a tool call: input opened, blocking work in a worker thread, a deadline.

`run_on_input` opens the input through the input policy (`shared.inputs.open_input`) inside the
worker thread, so a slow download never blocks the event loop and the input stays open exactly as
long as the engine works on it. The engine gets a `Job`: the progress callback and a stop flag that
carries the call's deadline; the flag is also the thread's current one (`shared.callscope`), so
shared code deep inside an engine (hashing, helper programs, downloads) is bounded by the same
deadline without being handed the flag.

When the call ends before the engine does (the client cancelled, or the tool's time limit passed),
the caller answers at once and the flag is set with the reason. Setting it frees at once what must
not outlive the call (helper processes are killed through their stop callbacks); the engine's next
`check` raises `Cancelled` or `TimedOut`; its thread unwinds and closes the input. Nothing waits on
anything unbounded meanwhile: the input was opened without blocking, temporary inputs were unlinked
when opened, and every wait inside is bounded by the deadline.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
import anyio.to_thread

from shared import callscope, shutdown
from shared.callscope import CANCELLED, TIME_LIMIT, StopFlag
from shared.errors import ToolFailure
from shared.inputs import LocalInput, open_input

__all__ = ["CANCELLED", "TIME_LIMIT", "Job", "ProgressFn", "StopFlag", "run", "run_on_input", "run_on_inputs"]

log = logging.getLogger("toolsuite.worker")
T = TypeVar("T")

ProgressFn = Callable[[float, float | None, str | None], None]
"""(done, total or None, message or None); engines call it from their worker thread."""

DOWNLOAD_SECONDS = 300.0  # a URL input's own limit, shortened to what is left of the call
DEADLINE_GRACE = 1.0


@dataclass(frozen=True)
class Job:
    """What an engine running for a call gets: where to report progress and when to stop."""

    progress: ProgressFn | None = None
    stop: StopFlag = field(default_factory=StopFlag)


def _deadline() -> float:
    """The current call's deadline as a `time.monotonic()` value (inf when it has none)."""
    deadline = anyio.current_effective_deadline()
    if math.isinf(deadline):
        return math.inf
    return time.monotonic() + (deadline - anyio.current_time())


async def run(work: Callable[[Job], T], *, progress: ProgressFn | None = None) -> T:
    """`work(job)` in a worker thread; if the call ends first, the job's stop flag is set with the reason."""
    job = Job(progress, StopFlag(_deadline()))

    def bounded() -> T:
        with callscope.active(job.stop), shutdown.work(job.stop):
            try:
                return work(job)
            except ToolFailure as exc:
                # Only the message is used. The chain and frames can hold what the engine opened (a PDF
                # that failed to open keeps its file open from the library's frame), and an idle pool
                # thread keeps its last exception until it runs again: let them go now.
                exc.__cause__ = exc.__context__ = None
                raise exc.with_traceback(None) from None

    try:
        return await anyio.to_thread.run_sync(bounded, abandon_on_cancel=True)
    except anyio.get_cancelled_exc_class():
        # The factory's time limit is the nearest deadline; any other cancellation comes from the client.
        reason = TIME_LIMIT if time.monotonic() >= job.stop.deadline else CANCELLED
        job.stop.stop(reason)
        log.info("engine work %s; it stops at its next check", reason)
        raise


async def run_on_inputs(sources: Sequence[str], work: Callable[[list[LocalInput], Job], T], *,
                        progress: ProgressFn | None = None) -> tuple[T, list[str]]:
    """Open every source, then `work(inputs, job)` in a worker thread: (its result, the inputs' labels)."""

    def opened(job: Job) -> tuple[T, list[str]]:
        from shared.fetch import FetchLimits

        # The download ends by itself soon after the call's deadline, even if nothing told it; the grace
        # lets the time limit answer first, with its own message.
        limits = FetchLimits(total_timeout=min(callscope.remaining(math.inf) + DEADLINE_GRACE, DOWNLOAD_SECONDS))
        with contextlib.ExitStack() as stack:
            items = [stack.enter_context(open_input(source, limits=limits)) for source in sources]
            job.stop.check("opening the input")
            try:
                return work(items, job), [item.label for item in items]
            except ToolFailure as exc:
                _name_inputs_by_label(exc, items)
                raise

    return await run(opened, progress=progress)


def _name_inputs_by_label(exc: ToolFailure, items: list[LocalInput]) -> None:
    """Engines' messages may quote the path they were given (`/proc/self/fd/N`); show the input's label."""
    message = str(exc)
    for item in items:
        message = re.sub(re.escape(str(item.path)) + r"(?!\d)", lambda _m, label=item.label: label, message)
    exc.args = (message,)


async def run_on_input(source: str, work: Callable[[LocalInput, Job], T], *,
                       progress: ProgressFn | None = None) -> tuple[T, str]:
    """Open `source`, then `work(input, job)` in a worker thread: (its result, the input's label)."""
    result, labels = await run_on_inputs([source], lambda items, job: work(items[0], job), progress=progress)
    return result, labels[0]
