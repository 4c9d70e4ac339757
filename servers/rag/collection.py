"""Collections opened for searching: a store, the embedder its index is built with, and the bounded
set of them a process keeps open.

A collection's index is keyed by the file's path (after symlinks) and the versions of everything
that shapes it, not by the file's bytes: a changed file is brought up to date in place
(`indexing.update`), so appending or editing records costs only those records.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from servers.rag import backends, builder, chunker, embedders, indexing, tokens
from servers.rag.indexing import SourceIncomplete
from servers.rag.store import IndexState, Store, StoreBackend
from shared import cache

log = logging.getLogger("toolsuite.rag")

# Chunk vectors that miss at most this share of the collection still rank (each chunk without one
# takes its lexical rank among them, see search.py): after 100 records are appended to 12,000,
# dropping the whole semantic side for the minutes the new vectors take would hurt far more than the
# gap. Vectors that are only partly built hurt fusion badly, so below this share they are not used.
READY_SHARE = 0.99


def index_key(source: Path, backend: StoreBackend) -> str:
    """The index of this file under the current settings: another chunker, tokenizer, embedder or
    store layout means another index; another version of the file does not."""
    return cache.cache_key(f"path:{source}", backend.version, chunker.VERSION, tokens.VERSION,
                           embedders.model_id(embedders.choice()))


class Collection:
    """One collection's index, reused by every call of the process."""

    def __init__(self, source: Path, store: Store, embedder: str, key: str) -> None:
        self.source = source
        self.store = store
        self.embedder = embedder
        self.key = key
        self.builds = builder.Launcher(self)

    def state(self) -> IndexState:
        return self.store.state()

    @property
    def vector_error(self) -> str | None:
        """Why the last background vector build failed, as the builder recorded it in the store."""
        return self.store.builder_status().error

    def build(self, progress: indexing.ProgressFn | None = None,
              cancel: threading.Event | None = None) -> str | None:
        """Bring the lexical index up to the file's current version now and make sure the vectors are
        being built. Returns a warning when the file cannot be read whole (the last complete version
        is served); with no complete version yet, that is an error."""
        warning = None
        try:
            indexing.update(self.store, self.source, progress=progress, cancel=cancel)
        except SourceIncomplete as exc:
            if self.store.source() is None:
                raise
            warning = str(exc)
            log.info("serving the last complete version of %s: %s", self.source.name, warning)
        self.builds.ensure()
        return warning

    def vectors_pending(self, state: IndexState | None = None) -> bool:
        state = state or self.state()
        return self.embedder != "none" and not state.dense_complete

    def dense_ready(self, state: IndexState | None = None) -> bool:
        """Whether the chunk vectors cover enough of the collection to rank (see READY_SHARE), in
        `state` when the caller has read it."""
        state = state or self.state()
        return state.dense_complete or (state.chunks > 0 and state.dense_vectors >= READY_SHARE * state.chunks)

    def wait_for_vectors(self, timeout: float | None = None) -> None:
        """For benchmarks and tests: block until the vectors are complete or their build failed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while deadline is None or time.monotonic() < deadline:
            if not self.vectors_pending():
                return
            if self.store.builder_status().error and not self.store.builder_running():
                return
            self.builds.ensure()
            time.sleep(0.1)


class OpenCollections:
    """The collections this process has open (bounded), so every call reuses the open index."""

    def __init__(self, backend: StoreBackend | None = None, capacity: int = 4) -> None:
        self._backend = backend
        self.capacity = capacity
        self._open: dict[str, Collection] = {}
        self._lock = threading.Lock()

    @property
    def backend(self) -> StoreBackend:
        """The given backend, else the one TOOLSUITE_RAG_STORE names, resolved at the first call that
        needs an index: a bad setting is that call's error, never a server that does not start."""
        if self._backend is None:
            self._backend = backends.backend()
        return self._backend

    def get(self, source: Path) -> Collection:
        key = index_key(source, self.backend)
        with self._lock:
            if key in self._open:
                collection = self._open.pop(key)
                self._open[key] = collection  # most recently used last
                return collection
            collection = Collection(source, self.backend.open(key), embedders.choice(), key)
            self._open[key] = collection
            while len(self._open) > self.capacity:
                self._open.pop(next(iter(self._open)))
            return collection

    def peek(self, source: Path) -> tuple[Store | None, str]:
        """The index of `source` if one exists (nothing is created), with the embedder it uses."""
        return self.backend.peek(index_key(source, self.backend)), embedders.choice()
