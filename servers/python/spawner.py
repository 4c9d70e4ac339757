"""Sandboxes are started from one thread that lives as long as the process.

bubblewrap's `--die-with-parent` (PR_SET_PDEATHSIG) fires when the *thread* that started it ends,
not the process. Started from a worker thread that later retires (anyio's idle workers, a service
connection that closes), a sandbox would be killed with SIGKILL at some later moment for no reason
the agent could see. Started from here, a sandbox ends only with its sandbox service.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

T = TypeVar("T")

_jobs: queue.SimpleQueue[tuple[Callable[[], object], Future]] = queue.SimpleQueue()
_started = threading.Lock()
_thread: threading.Thread | None = None


def _serve() -> None:
    while True:
        job, future = _jobs.get()
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(job())
            except BaseException as exc:  # handed to the caller, whatever it is
                future.set_exception(exc)


def run(job: Callable[[], T]) -> T:
    """`job()` run on the spawner thread; its result or exception, here."""
    global _thread
    with _started:
        if _thread is None:
            _thread = threading.Thread(target=_serve, name="sandbox-spawner", daemon=True)
            _thread.start()
    if threading.current_thread() is _thread:
        return job()
    future: Future = Future()
    _jobs.put((job, future))
    return future.result()
