"""Collections opened for searching: a store, the embedders its index is built with, and the
background build of its vectors; and the bounded set of them a process keeps open."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from servers.rag import chunker, embedders, indexing, tokens
from servers.rag.store import IndexState, Store, StoreBackend
from shared import cache
from shared.errors import leaf_exception, redact

log = logging.getLogger("toolsuite.rag")


def failure(exc: BaseException) -> str:
    """A background failure as the notes show it: the real cause (not the task group around a
    concurrent embedder's requests), without secrets."""
    cause = leaf_exception(exc)
    return redact(f"{type(cause).__name__}: {str(cause)[:200]}")


class Collection:
    """One collection's index, reused by every call of the process."""

    def __init__(self, source: Path, store: Store, embedder: str, doc_embedder: str) -> None:
        self.source = source
        self.store = store
        self.embedder = embedder
        self.doc_embedder = doc_embedder
        self.vector_error: str | None = None
        self._vectors_thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._final_state: IndexState | None = None

    def state(self) -> IndexState:
        if self._final_state is not None:  # a finished index no longer changes
            return self._final_state
        state = self.store.state()
        if state.lexical_complete and (state.dense_complete or self.embedder == "none") and \
                (state.document_index_complete or self.doc_embedder == "none"):
            self._final_state = state
        return state

    def build(self, progress: indexing.ProgressFn | None = None, cancel: threading.Event | None = None) -> None:
        """The lexical index now; chunk vectors, then document vectors, in a background thread."""
        indexing.build_lexical(self.store, self.source, progress=progress, cancel=cancel)
        self._start_vectors()

    def _start_vectors(self) -> None:
        state = self.state()
        chunks_done = self.embedder == "none" or state.dense_complete
        documents_done = self.doc_embedder == "none" or state.document_index_complete
        if chunks_done and documents_done:
            return
        with self._start_lock:  # once per process and index
            if self._vectors_thread is not None and self._vectors_thread.is_alive():
                return
            self._vectors_thread = threading.Thread(target=self._build_vectors, name="rag-dense", daemon=True)
            self._vectors_thread.start()

    def _build_vectors(self) -> None:
        # A failure is kept for the notes and the statistics; lexical search keeps serving.
        if self.embedder != "none":
            try:
                indexing.build_vectors(self.store, "chunks", lambda: embedders.get(self.embedder))
            except Exception as exc:
                self.vector_error = failure(exc)
                log.warning("dense indexing failed: %s", self.vector_error)
        if self.doc_embedder != "none":
            try:
                indexing.build_vectors(self.store, "documents", embedders.document_embedder)
            except Exception as exc:
                self.vector_error = f"document index: {failure(exc)}"
                log.warning("document vectors failed: %s", self.vector_error)

    def wait_for_vectors(self, timeout: float | None = None) -> None:
        """For benchmarks and tests: block until the background build has finished."""
        thread = self._vectors_thread
        if thread is not None:
            thread.join(timeout)


class OpenCollections:
    """The collections this process has open (bounded), so every call reuses the open index."""

    def __init__(self, backend: StoreBackend, capacity: int = 4) -> None:
        self.backend = backend
        self.capacity = capacity
        self._open: dict[str, Collection] = {}
        self._digests: dict[str, tuple[tuple[int, int, int, int], str]] = {}
        self._lock = threading.Lock()

    def _digest(self, source: Path) -> str:
        """The file's SHA-256, recomputed only when its size, mtime, inode or device changed (hashing a
        77 MB collection on every call would cost more than the search)."""
        info = source.stat()
        signature = (info.st_size, info.st_mtime_ns, info.st_ino, info.st_dev)
        known = self._digests.get(str(source))
        if known is not None and known[0] == signature:
            return known[1]
        digest = cache.file_digest(source)
        self._digests[str(source)] = (signature, digest)
        return digest

    def get(self, source: Path) -> Collection:
        embedder = embedders.choice()
        doc_embedder = embedders.document_choice()
        # A changed file, chunker, tokenizer, embedder or store layout means another index.
        key = cache.cache_key(self._digest(source), self.backend.version, chunker.VERSION, tokens.VERSION,
                              embedders.model_id(embedder), doc_embedder)
        with self._lock:
            if key in self._open:
                collection = self._open.pop(key)
                self._open[key] = collection  # most recently used last
                return collection
            collection = Collection(source, self.backend.open(key), embedder, doc_embedder)
            self._open[key] = collection
            while len(self._open) > self.capacity:
                self._open.pop(next(iter(self._open)))
            return collection
