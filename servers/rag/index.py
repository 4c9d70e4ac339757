"""The persistent index of one collection, under TOOLSUITE_CACHE_DIR/rag.

Keyed by the collection's SHA-256 + chunker, tokenizer and embedder versions, so a changed file is
never served from a stale index. One SQLite file holds documents, chunks and a contentless FTS5
table over pre-tokenized text (jieba words and English words; FTS5's own trigram tokenizer cannot
match two-character Chinese words); dense vectors live in a flat float32 file read through a
memory map. Building is incremental: every batch of documents commits in one transaction together
with the count of documents done, so a crash or timeout loses at most one batch and the next call
resumes. An exclusive file lock keeps two processes from building the same index at once.
Lexical indexing happens in the call; dense vectors are then built in a background thread while
searches are answered lexically (and say so).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servers.rag import chunker, embedders, tokens
from servers.rag.loader import iter_records
from shared import cache
from shared.errors import InputError, TimedOut

log = logging.getLogger("toolsuite.rag")

VERSION = "rag-index-2"
BATCH_DOCS = 200
ProgressFn = Callable[[float, float | None, str | None], None]

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS docs (doc_index INTEGER PRIMARY KEY, title TEXT, url TEXT, chunks INTEGER,
                                 chars INTEGER);
CREATE TABLE IF NOT EXISTS chunks (id INTEGER PRIMARY KEY, doc_index INTEGER, chunk_index INTEGER, text TEXT);
CREATE INDEX IF NOT EXISTS chunks_by_doc ON chunks (doc_index, chunk_index);
CREATE VIRTUAL TABLE IF NOT EXISTS lexical USING fts5(tokens, content='', tokenize='unicode61 remove_diacritics 0');
CREATE VIRTUAL TABLE IF NOT EXISTS lexical_vocab USING fts5vocab(lexical, 'row');
"""


@dataclass
class IndexState:
    documents: int
    chunks: int
    lexical_complete: bool
    dense_vectors: int
    dense_complete: bool
    embedder: str
    document_vectors: int
    document_index_complete: bool
    document_embedder: str
    cjk_share: float
    build_seconds: float | None


class CollectionIndex:
    """An open index: one SQLite connection per thread, the vectors memory-mapped."""

    def __init__(self, folder: Path, source: Path, embedder: str, doc_embedder: str = "none") -> None:
        self.folder = folder
        self.source = source
        self.embedder = embedder
        self.doc_embedder = doc_embedder
        self.db_path = folder / "index.sqlite"
        self.vectors_path = folder / "vectors.f32"
        self.doc_vectors_path = folder / "documents.f32"
        self._doc_vectors: Any = None
        self._doc_vectors_rows = -1
        self._final_state: IndexState | None = None
        self._local = threading.local()
        self._vectors: Any = None
        self._vectors_rows = -1
        self.dense_thread: threading.Thread | None = None
        self.dense_error: str | None = None

    # -- storage ----------------------------------------------------------------------------------

    def db(self) -> sqlite3.Connection:
        connection = getattr(self._local, "db", None)
        if connection is None:
            # Switching to WAL and creating the schema do not wait on SQLite's busy timeout, so two
            # processes opening a new index at once take turns here.
            with cache.exclusive(self.folder / "open.lock"):
                connection = sqlite3.connect(self.db_path, timeout=60, check_same_thread=False)
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=NORMAL")
                connection.executescript(SCHEMA)
            self._local.db = connection
        return connection

    def meta(self, key: str, default: str | None = None) -> str | None:
        row = self.db().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def _set_meta(self, connection: sqlite3.Connection, **values: Any) -> None:
        connection.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                               [(k, str(v)) for k, v in values.items()])

    def state(self) -> IndexState:
        if self._final_state is not None:  # a finished index no longer changes
            return self._final_state
        row = self.db().execute("SELECT COUNT(*), COALESCE(SUM(chunks), 0) FROM docs").fetchone()
        dense_rows = int(self.meta("dense_rows", "0") or 0)
        build = self.meta("build_seconds")
        state = IndexState(documents=row[0], chunks=int(row[1]), lexical_complete=self.meta("lexical") == "complete",
                           dense_vectors=dense_rows, dense_complete=self.meta("dense") == "complete",
                           embedder=self.embedder, document_vectors=int(self.meta("doc_rows", "0") or 0),
                           document_index_complete=self.meta("doc_dense") == "complete",
                           document_embedder=self.doc_embedder, cjk_share=float(self.meta("cjk_share", "0") or 0),
                           build_seconds=float(build) if build else None)
        finished = state.lexical_complete and (state.dense_complete or self.embedder == "none") and \
            (state.document_index_complete or self.doc_embedder == "none")
        if finished:
            self._final_state = state
        return state

    @contextlib.contextmanager
    def _exclusive(self, wait: float) -> Any:
        handle = open(self.folder / "build.lock", "a+b")  # noqa: SIM115 - held for the block
        deadline = time.monotonic() + wait
        try:
            while True:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise TimedOut("another process is building this collection's index; try again shortly") \
                            from None
                    time.sleep(0.2)
            yield
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            handle.close()

    # -- building ---------------------------------------------------------------------------------

    def build_lexical(self, progress: ProgressFn | None = None, stop: threading.Event | None = None,
                      wait: float = 600) -> None:
        if self.meta("lexical") == "complete":
            return
        with self._exclusive(wait):
            if self.meta("lexical") == "complete":
                return
            started = time.perf_counter()
            connection = self.db()
            done = int(self.meta("docs_done", "0") or 0)
            next_chunk = connection.execute("SELECT COALESCE(MAX(id), -1) + 1 FROM chunks").fetchone()[0]
            cjk = int(self.meta("cjk_chars", "0") or 0)
            chars = int(self.meta("all_chars", "0") or 0)
            batch: list[tuple[Any, ...]] = []
            total_hint = int(self.meta("doc_count_hint", "0") or 0) or None

            def flush(last_index: int) -> None:
                nonlocal batch, next_chunk
                with connection:
                    for record, pieces in batch:
                        connection.execute("INSERT OR REPLACE INTO docs VALUES (?, ?, ?, ?, ?)",
                                           (record.index, record.title, record.url, len(pieces), len(record.body)))
                        title_tokens = " ".join(tokens.tokenize(record.title))  # in every chunk's indexed text
                        for piece in pieces:
                            connection.execute("INSERT INTO chunks VALUES (?, ?, ?, ?)",
                                               (next_chunk, piece.doc_index, piece.chunk_index, piece.text))
                            connection.execute("INSERT INTO lexical (rowid, tokens) VALUES (?, ?)",
                                               (next_chunk, f"{title_tokens} {' '.join(tokens.tokenize(piece.text))}"))
                            next_chunk += 1
                    self._set_meta(connection, docs_done=last_index + 1, cjk_chars=cjk, all_chars=chars)
                batch = []

            last = done - 1
            for record in iter_records(self.source):
                if record.index < done:
                    continue
                if stop is not None and stop.is_set():
                    raise TimedOut("indexing was cancelled; the next call resumes where it stopped")
                pieces = chunker.chunk_document(record.index, record.body)
                sample = record.body[:2000]
                cjk += sum(1 for ch in sample if "\u4e00" <= ch <= "\u9fff")
                chars += len(sample)
                batch.append((record, pieces))
                last = record.index
                if len(batch) >= BATCH_DOCS:
                    flush(last)
                    if progress is not None:
                        progress(last + 1, total_hint, f"indexed {last + 1} documents")
            if batch:
                flush(last)
            if last < 0 and done == 0:
                raise InputError("the collection has no records")
            with connection:
                self._set_meta(connection, lexical="complete", doc_count_hint=last + 1,
                               cjk_share=round(cjk / chars, 3) if chars else 0.0,
                               build_seconds=round(time.perf_counter() - started, 2))

    def start_dense(self) -> None:
        """Build chunk vectors, then document vectors, in a background thread (once per process and index)."""
        chunks_done = self.embedder == "none" or self.meta("dense") == "complete"
        docs_done = self.doc_embedder == "none" or self.meta("doc_dense") == "complete"
        if chunks_done and docs_done:
            return
        if self.dense_thread is not None and self.dense_thread.is_alive():
            return

        def work() -> None:
            self._build_dense()
            self._build_document_vectors()

        self.dense_thread = threading.Thread(target=work, name="rag-dense", daemon=True)
        self.dense_thread.start()

    def _build_document_vectors(self) -> None:
        """Document-level vectors of each document's lead (title and opening), for cross-lingual search."""
        if self.doc_embedder == "none":
            return
        try:
            with self._exclusive(wait=3600):
                if self.meta("doc_dense") == "complete":
                    return
                model = embedders.document_embedder()
                connection = self.db()
                done = int(self.meta("doc_rows", "0") or 0)
                with open(self.doc_vectors_path, "ab") as out:
                    out.truncate(done * model.dim * 4)  # drop a half-written batch
                    while True:
                        rows = connection.execute(
                            "SELECT d.doc_index, d.title, COALESCE(c.text, '') FROM docs d LEFT JOIN chunks c "
                            "ON c.doc_index = d.doc_index AND c.chunk_index = 0 ORDER BY d.doc_index "
                            "LIMIT 32 OFFSET ?", (done,)).fetchall()
                        if not rows:
                            break
                        vectors = model.embed([lead(title, text) for _doc, title, text in rows])
                        out.write(vectors.astype("float32").tobytes())
                        out.flush()
                        done += len(rows)
                        with connection:
                            self._set_meta(connection, doc_rows=done)
                with connection:
                    self._set_meta(connection, doc_dense="complete")
        except Exception as exc:  # lexical and chunk vectors keep serving
            self.dense_error = f"document index: {type(exc).__name__}: {str(exc)[:200]}"
            log.warning("document vectors failed: %s", self.dense_error)

    def _build_dense(self) -> None:
        try:
            with self._exclusive(wait=3600):
                if self.meta("dense") == "complete":
                    return
                model = embedders.get(self.embedder)
                if model is None:
                    return
                connection = self.db()
                done = int(self.meta("dense_rows", "0") or 0)
                row_bytes = None
                with open(self.vectors_path, "ab") as out:
                    if done and out.tell():
                        row_bytes = out.tell() // max(done, 1)
                        out.truncate(done * row_bytes)  # drop a half-written batch
                    while True:
                        rows = connection.execute(
                            "SELECT c.id, d.title, c.text FROM chunks c JOIN docs d ON d.doc_index = c.doc_index "
                            "WHERE c.id >= ? ORDER BY c.id LIMIT 512", (done,)).fetchall()
                        if not rows:
                            break
                        vectors = model.embed([f"{title}\n{text}" for _id, title, text in rows])
                        out.write(vectors.astype("float32").tobytes())
                        out.flush()
                        done += len(rows)
                        with connection:
                            self._set_meta(connection, dense_rows=done, dense_dim=vectors.shape[1])
                with connection:
                    self._set_meta(connection, dense="complete")
        except Exception as exc:  # the lexical index keeps serving; the state reports the failure
            self.dense_error = f"{type(exc).__name__}: {str(exc)[:200]}"
            log.warning("dense indexing failed: %s", self.dense_error)

    # -- reading ----------------------------------------------------------------------------------

    def document_vectors(self) -> Any:
        """Row i is document i's lead (documents are numbered densely from 0 in the index)."""
        import numpy as np

        rows = int(self.meta("doc_rows", "0") or 0)
        if self.meta("doc_dense") != "complete" or rows == 0:
            return None
        if self._doc_vectors is None or self._doc_vectors_rows != rows:
            self._doc_vectors = np.memmap(self.doc_vectors_path, dtype=np.float32, mode="r", shape=(rows, 384))
            self._doc_vectors_rows = rows
        return self._doc_vectors

    def vectors(self) -> Any:
        import numpy as np

        rows = int(self.meta("dense_rows", "0") or 0)
        if self.meta("dense") != "complete" or rows == 0:
            return None
        if self._vectors is None or self._vectors_rows != rows:
            dim = int(self.meta("dense_dim", "0") or 0)
            self._vectors = np.memmap(self.vectors_path, dtype=np.float32, mode="r", shape=(rows, dim))
            self._vectors_rows = rows
        return self._vectors


def lead(title: str, opening: str, chars: int = 120) -> str:
    """A document's lead as the document-level embedder sees it (measured: title plus the first 120
    characters find English-described Chinese documents far better than titles alone)."""
    return f"{title}。{opening[:chars]}" if title else opening[:chars]


class IndexCache:
    """Open indexes of this process (bounded), so every call reuses the memory-mapped index."""

    def __init__(self, capacity: int = 4) -> None:
        self.capacity = capacity
        self._open: dict[str, CollectionIndex] = {}
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

    def get(self, source: Path) -> CollectionIndex:
        embedder = embedders.choice()
        doc_embedder = embedders.document_choice()
        digest = self._digest(source)
        key = cache.cache_key(digest, VERSION, chunker.VERSION, "jieba-0.42", embedders.model_id(embedder),
                              doc_embedder)
        with self._lock:
            if key in self._open:
                index = self._open.pop(key)
                self._open[key] = index  # most recently used last
                return index
            folder = cache.area("rag") / key
            folder.mkdir(parents=True, exist_ok=True)
            index = CollectionIndex(folder, source, embedder, doc_embedder)
            self._open[key] = index
            while len(self._open) > self.capacity:
                oldest = next(iter(self._open))
                self._open.pop(oldest)
            os.utime(folder)
            return index
