"""Vectors built by a process of their own, so they finish whatever happens to the process that
asked for them.

Agent hosts start a new stdio server for every call and SIGTERM it afterwards, so a build thread
inside the server died with each call (after ten calls: 0 of 6 chunks embedded). Now the process
that finds vectors missing and no builder running starts one detached builder
(`python -m servers.rag.builder`): a session of its own, no stdio tied to the server, nice'd, one
per index (it holds the index's vector lock for its life), and at most TOOLSUITE_RAG_BUILDERS of
them embedding at once on the machine. It embeds in batches, each committed with the rows it
adds, so the next process reads how far it got from the store and a later builder resumes there.

It exits when every row has a vector; on SIGTERM (after the batch in hand); when its index is
gone; and when the collection file changes and no update is taking the change in: the next call
updates the index and starts a builder again, which keeps every vector already computed and embeds
only what is new. A failure (say, an unreachable embeddings endpoint) is recorded in the store for
the notes, and the next builder is started no sooner than RETRY_AFTER seconds later.

TOOLSUITE_RAG_BUILDER=thread builds in a thread of the server process instead, for hosts that keep
one server process and for tests that replace an embedder in the process.

With the PostgreSQL store the vector lock is an advisory lock of the shared database, so one
builder runs per index whichever machine started it, and a builder that dies lets go of it at once:
the next call on any replica starts another, which carries on from the last committed batch.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from servers.rag import embedders, indexing
from servers.rag.store import BuilderStatus, SourceMark, Store
from shared import cache, settings
from shared.errors import TimedOut, ToolFailure, leaf_exception, redact

if TYPE_CHECKING:
    from servers.rag.collection import Collection

log = logging.getLogger("toolsuite.rag.builder")

RETRY_AFTER = 60.0  # seconds after a failed build before another is started
SPAWN_INTERVAL = 5.0  # a process starts at most one builder per index in this time
NICE = 10  # searches on the same cores come first
LOG_LIMIT = 1 << 20  # a builder log above this size is started afresh
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def failure(exc: BaseException) -> str:
    """A build failure as the notes show it: the real cause (not the task group around a concurrent
    embedder's requests), without secrets."""
    cause = leaf_exception(exc)
    return redact(f"{type(cause).__name__}: {str(cause)[:200]}")


def mode() -> str:
    value = settings.text("TOOLSUITE_RAG_BUILDER", "detached").lower()
    return value if value in ("detached", "thread") else "detached"


def _slots() -> int:
    return int(settings.number("TOOLSUITE_RAG_BUILDERS", 1, minimum=1))


def _stop_reason(store: Store, source: Path, stopping: threading.Event) -> str | None:
    """Why the builder should stop now, or None to go on."""
    while True:
        if stopping.is_set():
            return "asked to stop"
        try:
            current = SourceMark.of(source)
        except OSError:
            return "the collection file is gone"
        if store.source() == current:
            return None
        if not store.updating():
            return "the collection changed and no update is taking the change in"
        # An update is taking the change in right now: go on with its rows once it is published.
        stopping.wait(0.5)


@contextlib.contextmanager
def _slot(store: Store, source: Path, stopping: threading.Event) -> Iterator[str | None]:
    """One of the machine's TOOLSUITE_RAG_BUILDERS builder slots (waited for), or the reason the wait
    ended without one."""
    folder = cache.area("rag-builders")
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        for number in range(_slots()):
            handle = open(folder / f"slot-{number}.lock", "a+b")  # noqa: SIM115 - held for the block
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            try:
                yield None
            finally:
                handle.close()
            return
        reason = _stop_reason(store, source, stopping)
        if reason:
            yield reason
            return
        stopping.wait(1.0)


def _pending(store: Store, embedder: str) -> bool:
    state = store.state()
    return state.lexical_complete and embedder != "none" and not state.dense_complete


def build_all(store: Store, source: Path, embedder: str, stopping: threading.Event) -> str:
    """Embed every chunk that has no vector; the caller holds the vector lock. Returns "done", or why
    it stopped."""
    pid = os.getpid()
    store.set_builder_status(BuilderStatus(pid=pid, heartbeat=time.time()))

    def stop() -> bool:
        reason = _stop_reason(store, source, stopping)
        if reason:
            log.info("vector build of %s stops: %s", source.name, reason)
        return reason is not None

    def beat(_rows: int) -> None:
        store.set_builder_status(BuilderStatus(pid=pid, heartbeat=time.time()))

    error = None
    outcome = "done"
    try:
        if not indexing.build_vectors(store, lambda: embedders.get(embedder), stop, beat):
            outcome = "stopped"
    except Exception as exc:  # kept for the notes; lexical search keeps serving
        error = failure(exc)
        log.warning("vectors of %s failed: %s", source.name, error)
    now = time.time()
    store.set_builder_status(BuilderStatus(pid=None, heartbeat=now, error=error, error_at=now if error else None))
    return "failed" if error else outcome


def serve(store: Store, source: Path, embedder: str, stopping: threading.Event) -> str:
    """Build until nothing is left, as the one builder of this index (returns at once when another
    process is it). Work an update adds while the lock is being let go is picked up here too."""
    while True:
        try:
            with store.vector_lock(wait=0), _slot(store, source, stopping) as refused:
                if refused:
                    return "stopped"
                outcome = build_all(store, source, embedder, stopping)
        except TimedOut:
            return "another builder"
        if outcome != "done" or not _pending(store, embedder):
            return outcome


class Launcher:
    """Starts a collection's vector builder when work is left and none is running."""

    def __init__(self, collection: Collection) -> None:
        self.collection = collection
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._spawned_at = 0.0

    def ensure(self) -> None:
        collection = self.collection
        store = collection.store
        if not collection.vectors_pending() or store.source() is None:
            return
        status = store.builder_status()
        if status.error and status.error_at and time.time() - status.error_at < RETRY_AFTER:
            return
        with self._lock:
            if mode() == "thread":
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._in_thread, name="rag-vectors", daemon=True)
                    self._thread.start()
                return
            recent = time.monotonic() - self._spawned_at < SPAWN_INTERVAL
            if (recent and self._process is not None and self._process.poll() is None) or store.builder_running():
                return
            self._process = spawn(collection.source, collection.key)
            self._spawned_at = time.monotonic()

    def _in_thread(self) -> None:
        from shared import shutdown

        c = self.collection
        serve(c.store, c.source, c.embedder, shutdown.stopping)

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)


def spawn(source: Path, key: str) -> subprocess.Popen[bytes]:
    """Start a detached builder: its own session (a host that signals the server's process group
    does not reach it), stdin and stdout on /dev/null (it never holds the host's pipes open), stderr
    to a log in the cache."""
    logs = cache.area("rag-builders")
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{key}.log"
    with contextlib.suppress(OSError):
        if log_path.stat().st_size > LOG_LIMIT:
            log_path.unlink()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p)
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "servers.rag.builder", "--source", str(source), "--key", key],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log_file,
                                   start_new_session=True, close_fds=True, cwd=PACKAGE_ROOT, env=env)
    # Reap it when it ends while this process lives (no zombie); if this process ends first, init does.
    threading.Thread(target=process.wait, name="rag-builder-reaper", daemon=True).start()
    log.info("started vector builder %d for %s", process.pid, source.name)
    return process


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m servers.rag.builder",
                                     description="Build one tool-rag index's vectors, then exit.")
    parser.add_argument("--source", required=True, help="the collection file (a resolved path)")
    parser.add_argument("--key", required=True, help="the index key the starting process computed")
    args = parser.parse_args(argv)
    with contextlib.suppress(OSError):
        os.nice(NICE)
    logging.basicConfig(level=settings.text("TOOLSUITE_LOG_LEVEL", "INFO").upper(), stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s builder[{os.getpid()}]: %(message)s")
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda *_: stopping.set())

    from servers.rag import backends
    from servers.rag.collection import index_key

    source = Path(args.source)
    backend = backends.backend()  # the store the starting process uses: same environment, same setting
    try:
        if index_key(source, backend) != args.key:
            log.warning("the settings changed since this builder was started for %s; nothing to do", source.name)
            return 0
        store = backend.peek(args.key)
        if store is None:
            return 0
        outcome = serve(store, source, embedders.choice(), stopping)
    except ToolFailure as exc:  # e.g. the database went away: the next call starts another builder
        log.warning("vector builder for %s stops: %s", source.name, exc)
        return 1
    finally:
        backend.close()
    log.info("vector builder for %s: %s", source.name, outcome)
    return 0


if __name__ == "__main__":
    sys.exit(main())
