"""How a stdio server stops when it is asked to (SIGTERM), as agent hosts ask after every call.

Hosts such as MiroThinker's tool manager start a server process per call and send SIGTERM once the
call is answered, with the server's stdin still open. The default action ends the process wherever
it is; and a plain exit would not do either, because the SDK reads stdin in a thread that blocks in
`readline` and that no cancellation reaches, so the process would never finish exiting. So on
SIGTERM: `stopping` is set and every piece of work registered with `work()` gets its cancel flag
set (engines check it between batches, as they do for a cancelled call), the work in flight has a
short grace to reach its next commit, and the process exits with status 0. Nothing is left behind:
the temporary files of work still running (a download half written) are removed through their
registry (shared/scratch.py), the threads end with the process, and the only thing meant to outlive
it (tool-rag's detached vector builder) runs in a session of its own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator

from shared import scratch
from shared.callscope import StopFlag

log = logging.getLogger("toolsuite.shutdown")

STOPPING = "stopped: the server is shutting down"
GRACE = 2.0  # seconds the work in flight may take to reach its next commit
stopping = threading.Event()
_idle = threading.Condition()
_cancels: set[StopFlag] = set()


@contextlib.contextmanager
def work(cancel: StopFlag) -> Iterator[None]:
    """Blocking work that stops at its next batch when the process is asked to stop (its stop
    callbacks run too: helper programs are killed with it)."""
    with _idle:
        _cancels.add(cancel)
        if stopping.is_set():
            cancel.stop(STOPPING)
    try:
        yield
    finally:
        with _idle:
            _cancels.discard(cancel)
            _idle.notify_all()


def install(grace: float = GRACE) -> None:
    """Handle SIGTERM as described above (from the main thread, before serving)."""
    if threading.current_thread() is not threading.main_thread():
        return

    def on_sigterm(_signum: int, _frame: object) -> None:
        if stopping.is_set():
            return
        stopping.set()
        with _idle:
            for cancel in _cancels:
                cancel.stop(STOPPING)
        # Waiting here would hold the event loop, which the work may need to report its progress.
        threading.Thread(target=_exit_when_idle, args=(grace,), name="shutdown", daemon=True).start()

    signal.signal(signal.SIGTERM, on_sigterm)


def _exit_when_idle(grace: float) -> None:
    with _idle:
        finished = _idle.wait_for(lambda: not _cancels, timeout=grace)
    removed = scratch.remove_all()  # os._exit skips the finally blocks that would remove them
    log.info("SIGTERM: exiting%s%s", "" if finished else f" (work still running after {grace:.0f} s is dropped)",
             f"; removed {removed} temporary files of unfinished work" if removed else "")
    for stream in (sys.stderr, sys.stdout):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)
