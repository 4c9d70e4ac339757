"""tool-rag's index in one SQLite file under TOOLSUITE_CACHE_DIR/rag/<key>, with the vectors in flat
float32 files read through a memory map.

The SQLite file holds documents by content key (with their bodies, so a document is read from the
index), the table of positions (which document is at which place in the collection file), chunks,
and a contentless FTS5 table over pre-tokenized text: jieba words and English words, because FTS5's
own trigram tokenizer cannot match two-character Chinese words. BM25 comes from FTS5. Every batch
commits in one transaction together with the update's progress, an update becomes searchable in the
one transaction that rewrites the positions, and vector rows are counted in the database only after
they are written, so a crash loses at most one batch. Two file locks keep two processes from
updating the same index at once (`build.lock`) and from building its vectors at once
(`vector.lock`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from servers.rag import vector_rank
from servers.rag.numeric import numpy
from servers.rag.store import (
    BuilderStatus,
    DocumentEntry,
    IndexState,
    Publication,
    SourceMark,
    StoredChunk,
    StoredDocument,
    UpdateProgress,
)
from shared import cache
from shared.errors import Cancelled, TimedOut

VERSION = "rag-index-4"  # 4: documents kept by content key, positions apart, updated in place

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS docs (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, title TEXT, url TEXT,
                                 chunks INTEGER, chars INTEGER, cjk_chars INTEGER, sampled_chars INTEGER, body TEXT);
CREATE TABLE IF NOT EXISTS positions (position INTEGER PRIMARY KEY, doc_id INTEGER NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS chunks (id INTEGER PRIMARY KEY, doc_id INTEGER NOT NULL, chunk_index INTEGER, text TEXT);
CREATE INDEX IF NOT EXISTS chunks_by_doc ON chunks (doc_id, chunk_index);
CREATE VIRTUAL TABLE IF NOT EXISTS lexical USING fts5(tokens, content='', tokenize='unicode61 remove_diacritics 0');
CREATE VIRTUAL TABLE IF NOT EXISTS lexical_vocab USING fts5vocab(lexical, 'row');
"""

# Only chunks of documents that have a position are searchable: an update's new documents join the
# positions when it is published, and the documents it removes leave with their chunks.
_CHUNK_COLUMNS = ("SELECT c.id, p.position, c.chunk_index, d.title, c.text FROM chunks c "
                  "JOIN positions p ON p.doc_id = c.doc_id JOIN docs d ON d.id = c.doc_id")
_IN_BATCH = 500  # ids per `IN (...)` list, well under SQLite's variable limit


_VECTOR_FILE = "vectors.f32"  # row i = chunk i; its row count and dimension are the meta keys below
_ROWS_KEY, _DIM_KEY = "dense_rows", "dense_dim"
_BUILDER_KEYS = ("builder_pid", "builder_heartbeat", "builder_error", "builder_error_at")


def _marks(values: Sequence[Any]) -> str:
    return ",".join("?" * len(values))


def _held(path: Path) -> bool:
    """Whether another open file description holds an exclusive flock on `path`."""
    try:
        handle = open(path, "a+b")  # noqa: SIM115 - closed below
    except OSError:
        return False
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        handle.close()  # closing releases a lock this probe took
    return False


class SqliteStore:
    """An open index: one SQLite connection per thread, the vectors memory-mapped."""

    shared = False  # one machine: a call waits for another process's build (see indexing.update)

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.db_path = folder / "index.sqlite"
        self._local = threading.local()
        self._mapped: tuple[int, Any] | None = None  # (rows, the chunk vectors mapped)
        # What a ranking needs to skip rows of content that left the collection, per generation.
        self._live: tuple[tuple[int, int], Any] | None = None
        self._covered: dict[tuple[int, int], int] = {}
        self._cache_lock = threading.Lock()

    def db(self) -> sqlite3.Connection:
        connection = getattr(self._local, "db", None)
        if connection is None:
            # Switching to WAL and creating the schema do not wait on SQLite's busy timeout, so two
            # processes opening a new index at once take turns here.
            with cache.exclusive(self.folder / "open.lock"):
                connection = sqlite3.connect(self.db_path, timeout=60, check_same_thread=False,
                                             isolation_level=None)
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=NORMAL")
                connection.executescript(SCHEMA)
            self._local.db = connection
        return connection

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once: counters read inside it cannot race another writer."""
        connection = self.db()
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def _meta(self) -> dict[str, str]:
        return dict(self.db().execute("SELECT key, value FROM meta").fetchall())

    @staticmethod
    def _set_meta(connection: sqlite3.Connection, **values: Any) -> None:
        connection.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                               [(k, str(v)) for k, v in values.items() if v is not None])
        gone = [k for k, v in values.items() if v is None]
        if gone:
            connection.execute(f"DELETE FROM meta WHERE key IN ({_marks(gone)})", gone)

    # -- locks ------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self, name: str, wait: float, cancel: threading.Event | None, busy: str) -> Iterator[None]:
        handle = open(self.folder / name, "a+b")  # noqa: SIM115 - held for the block
        deadline = time.monotonic() + wait
        try:
            while True:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if cancel is not None and cancel.is_set():
                        raise Cancelled(f"the call was cancelled while {busy}") from None
                    if time.monotonic() >= deadline:
                        raise TimedOut(f"{busy}; try again shortly") from None
                    time.sleep(0.2)
            yield
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            handle.close()

    def build_lock(self, wait: float, cancel: threading.Event | None = None) -> AbstractContextManager[None]:
        return self._lock("build.lock", wait, cancel, "another process is building this collection's index")

    def vector_lock(self, wait: float, cancel: threading.Event | None = None) -> AbstractContextManager[None]:
        return self._lock("vector.lock", wait, cancel, "another process is building this collection's vectors")

    def builder_running(self) -> bool:
        return _held(self.folder / "vector.lock")

    def updating(self) -> bool:
        return _held(self.folder / "build.lock")

    # -- state ------------------------------------------------------------------------------------

    def _rows(self, meta: dict[str, str]) -> int:
        return int(meta.get(_ROWS_KEY) or 0)

    def _count_covered(self, generation: int, rows: int) -> int:
        """Searchable chunks that have a vector: counted once per (generation, rows)."""
        key = (generation, rows)
        with self._cache_lock:
            if key in self._covered:
                return self._covered[key]
        count = int(self.db().execute("SELECT COUNT(*) FROM chunks c JOIN positions p ON p.doc_id = c.doc_id "
                                      "WHERE c.id < ?", (rows,)).fetchone()[0])
        with self._cache_lock:
            self._covered = {key: count}
        return count

    def state(self) -> IndexState:
        meta = self._meta()
        generation = int(meta.get("generation") or 0)
        documents = int(self.db().execute("SELECT COUNT(*) FROM positions").fetchone()[0])
        chunks = int(meta.get("live_chunks") or 0)
        dense = self._count_covered(generation, self._rows(meta))
        published = meta.get("source") is not None
        updating = int(meta.get("update_new") or 0) if self.updating() else 0
        build = meta.get("build_seconds")
        return IndexState(documents=documents, chunks=chunks, lexical_complete=published,
                          pending_documents=updating, dense_vectors=dense,
                          dense_complete=published and dense >= chunks,
                          cjk_share=float(meta.get("cjk_share") or 0), build_seconds=float(build) if build else None,
                          updated_documents=int(meta.get("updated_documents") or 0))

    def source(self) -> SourceMark | None:
        return SourceMark.parse(self._meta().get("source"))

    # -- updating ---------------------------------------------------------------------------------

    def document_keys(self) -> set[str]:
        return {row[0] for row in self.db().execute("SELECT key FROM docs")}

    def add_documents(self, batch: Sequence[DocumentEntry], progress: UpdateProgress,
                      placed: Sequence[tuple[int, str]] = ()) -> None:
        with self._write() as connection:
            meta = dict(connection.execute("SELECT key, value FROM meta WHERE key IN ('next_doc', 'next_chunk')"))
            next_doc, next_chunk = int(meta.get("next_doc") or 0), int(meta.get("next_chunk") or 0)
            for document in batch:
                if connection.execute("SELECT 1 FROM docs WHERE key = ?", (document.key,)).fetchone():
                    continue  # taken in by an earlier, interrupted update
                connection.execute("INSERT INTO docs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                   (next_doc, document.key, document.title, document.url, len(document.chunks),
                                    len(document.body), document.cjk_chars, document.sampled_chars, document.body))
                for chunk in document.chunks:
                    connection.execute("INSERT INTO chunks VALUES (?, ?, ?, ?)",
                                       (next_chunk, next_doc, chunk.chunk_index, chunk.text))
                    connection.execute("INSERT INTO lexical (rowid, tokens) VALUES (?, ?)",
                                       (next_chunk, " ".join(chunk.terms)))
                    next_chunk += 1
                next_doc += 1
            self._set_meta(connection, next_doc=next_doc, next_chunk=next_chunk, update_read=progress.records_read,
                           update_new=progress.new_documents)

    def note_progress(self, progress: UpdateProgress) -> None:
        with self._write() as connection:
            self._set_meta(connection, update_read=progress.records_read, update_new=progress.new_documents)

    def documents_not_in(self, keys: Sequence[str]) -> list[StoredDocument]:
        wanted = set(keys)
        gone = [doc_id for doc_id, key in self.db().execute("SELECT id, key FROM docs") if key not in wanted]
        found: list[StoredDocument] = []
        for start in range(0, len(gone), _IN_BATCH):
            part = gone[start:start + _IN_BATCH]
            rows = self.db().execute(f"SELECT key, title, url, body FROM docs WHERE id IN ({_marks(part)})", part)
            found += [StoredDocument(-1, title or "", url, body or "", key) for key, title, url, body in rows]
        return found

    def publish(self, publication: Publication) -> None:
        with self._write() as connection:
            ids = dict(connection.execute("SELECT key, id FROM docs"))
            for document in publication.removed:
                doc_id = ids.pop(document.key, None)
                if doc_id is None:
                    continue
                terms = {chunk.chunk_index: chunk.terms for chunk in document.chunks}
                for chunk_id, chunk_index in connection.execute(
                        "SELECT id, chunk_index FROM chunks WHERE doc_id = ?", (doc_id,)).fetchall():
                    # A contentless FTS5 row is taken out by giving back the exact terms it was given.
                    if chunk_index in terms:
                        connection.execute("INSERT INTO lexical (lexical, rowid, tokens) VALUES ('delete', ?, ?)",
                                           (chunk_id, " ".join(terms[chunk_index])))
                connection.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))
                connection.execute("DELETE FROM docs WHERE id = ?", (doc_id,))
            missing = [key for key in publication.order if key not in ids]
            if missing:
                raise RuntimeError(f"{len(missing)} documents of the update were never added")
            connection.execute("DELETE FROM positions")
            connection.executemany("INSERT INTO positions VALUES (?, ?)",
                                   ((position, ids[key]) for position, key in enumerate(publication.order)))
            chunks, cjk, sampled = connection.execute(
                "SELECT COALESCE(SUM(d.chunks), 0), COALESCE(SUM(d.cjk_chars), 0), COALESCE(SUM(d.sampled_chars), 0) "
                "FROM docs d JOIN positions p ON p.doc_id = d.id").fetchone()
            generation = int((connection.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
                              or ("0",))[0])
            self._set_meta(connection, source=publication.source.text(), live_chunks=chunks,
                           cjk_share=round(cjk / sampled, 3) if sampled else 0.0,
                           build_seconds=round(publication.seconds, 3), updated_documents=publication.new_documents,
                           generation=generation + 1, update_read=None, update_new=None)

    def texts_to_embed(self, limit: int) -> list[tuple[int, str, str]]:
        done = self._rows(self._meta())
        query = ("SELECT c.id, d.title, c.text FROM chunks c JOIN docs d ON d.id = c.doc_id "
                 "WHERE c.id >= ? ORDER BY c.id LIMIT ?")
        return [(row, title or "", text) for row, title, text in self.db().execute(query, (done, limit)).fetchall()]

    def add_vectors(self, rows: Sequence[int], vectors: Any) -> None:
        np = numpy()
        meta = self._meta()
        done = self._rows(meta)
        array = np.asarray(vectors, dtype=np.float32)
        dim = int(array.shape[1])
        if done and int(meta.get(_DIM_KEY) or dim) != dim:
            raise RuntimeError(f"the embedder now returns {dim}-dimensional vectors where the index has "
                               f"{meta[_DIM_KEY]}")
        parts: list[bytes] = []
        expected = done
        for row, vector in zip(rows, array, strict=True):
            if row < expected:
                continue
            if row > expected:  # content that left before it was embedded: a zero row keeps the numbering
                parts.append(bytes((row - expected) * dim * 4))
            parts.append(vector.tobytes())
            expected = row + 1
        with open(self.folder / _VECTOR_FILE, "ab") as out:
            out.truncate(done * dim * 4)  # drop a batch a crash left half-written
            out.write(b"".join(parts))
            out.flush()
        with self._write() as connection:
            self._set_meta(connection, **{_ROWS_KEY: expected, _DIM_KEY: dim})

    def builder_status(self) -> BuilderStatus:
        meta = self._meta()

        def number(key: str) -> float | None:
            value = meta.get(key)
            return float(value) if value else None

        pid = meta.get("builder_pid")
        return BuilderStatus(pid=int(pid) if pid else None, heartbeat=number("builder_heartbeat"),
                             error=meta.get("builder_error"), error_at=number("builder_error_at"))

    def set_builder_status(self, status: BuilderStatus) -> None:
        with self._write() as connection:
            self._set_meta(connection, **dict(zip(_BUILDER_KEYS, (status.pid, status.heartbeat, status.error,
                                                                 status.error_at), strict=True)))

    # -- reading ----------------------------------------------------------------------------------

    def document(self, doc_index: int) -> StoredDocument | None:
        row = self.db().execute("SELECT d.title, d.url, d.body, d.key FROM positions p JOIN docs d ON d.id = p.doc_id "
                                "WHERE p.position = ?", (doc_index,)).fetchone()
        if row is None:
            return None
        return StoredDocument(doc_index=doc_index, title=row[0] or "", url=row[1], body=row[2] or "", key=row[3])

    def chunks(self, chunk_ids: Sequence[int]) -> list[StoredChunk]:
        found: list[StoredChunk] = []
        ids = list(chunk_ids)
        for start in range(0, len(ids), _IN_BATCH):
            part = ids[start:start + _IN_BATCH]
            rows = self.db().execute(f"{_CHUNK_COLUMNS} WHERE c.id IN ({_marks(part)})", part).fetchall()
            found += [StoredChunk(r[0], r[1], r[2], r[3] or "", r[4]) for r in rows]
        return found

    def chunks_of(self, doc_index: int, first: int, last: int) -> list[StoredChunk]:
        rows = self.db().execute(f"{_CHUNK_COLUMNS} WHERE p.position = ? AND c.chunk_index BETWEEN ? AND ? "
                                 "ORDER BY c.chunk_index", (doc_index, first, last)).fetchall()
        return [StoredChunk(r[0], r[1], r[2], r[3] or "", r[4]) for r in rows]

    def documents_of(self, chunk_ids: Sequence[int]) -> dict[int, int]:
        found: dict[int, int] = {}
        ids = list(chunk_ids)
        for start in range(0, len(ids), _IN_BATCH):
            part = ids[start:start + _IN_BATCH]
            found.update(self.db().execute(f"SELECT c.id, p.position FROM chunks c JOIN positions p "
                                           f"ON p.doc_id = c.doc_id WHERE c.id IN ({_marks(part)})", part).fetchall())
        return found

    def term_counts(self, terms: Sequence[str]) -> dict[str, int]:
        if not terms:
            return {}
        rows = self.db().execute(f"SELECT term, doc FROM lexical_vocab WHERE term IN ({_marks(terms)})",
                                 list(terms)).fetchall()
        return {term: count for term, count in rows if count}

    def lexical_ranking(self, terms: Sequence[str], limit: int) -> list[int]:
        if not terms:
            return []
        expression = " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)
        rows = self.db().execute("SELECT rowid FROM lexical WHERE lexical MATCH ? ORDER BY bm25(lexical) LIMIT ?",
                                 (expression, limit)).fetchall()
        return [row[0] for row in rows]

    def _vectors(self) -> Any:
        meta = self._meta()
        rows = self._rows(meta)
        if rows == 0:
            return None
        mapped = self._mapped
        if mapped is None or mapped[0] != rows:
            np = numpy()
            dim = int(meta[_DIM_KEY])
            mapped = (rows, np.memmap(self.folder / _VECTOR_FILE, dtype=np.float32, mode="r", shape=(rows, dim)))
            self._mapped = mapped
        return mapped[1]

    def _searchable(self, rows: int) -> Any:
        """The mask of chunk rows < `rows` whose content is searchable."""
        np = numpy()
        generation = int(self._meta().get("generation") or 0)
        with self._cache_lock:
            known = self._live
        if known is not None and known[0] == (generation, rows):
            return known[1]
        mask = np.zeros(rows, dtype=bool)
        ids = [r[0] for r in self.db().execute("SELECT c.id FROM chunks c JOIN positions p ON p.doc_id = c.doc_id "
                                               "WHERE c.id < ?", (rows,))]
        mask[np.asarray(ids, dtype=np.int64)] = True
        with self._cache_lock:
            self._live = ((generation, rows), mask)
        return mask

    def nearest(self, vector: Any, limit: int) -> list[int]:
        matrix = self._vectors()
        if matrix is None:
            return []
        return vector_rank.nearest_rows(matrix, self._searchable(matrix.shape[0]), vector, limit)

    def best_chunks(self, documents: Sequence[int], vector: Any | None) -> dict[int, int]:
        if not documents:
            return {}
        rows = self.db().execute(f"SELECT c.id, p.position FROM chunks c JOIN positions p ON p.doc_id = c.doc_id "
                                 f"WHERE p.position IN ({_marks(documents)}) ORDER BY c.id", list(documents)).fetchall()
        matrix = self._vectors() if vector is not None else None
        return vector_rank.best_chunks(rows, matrix, vector)


class SqliteBackend:
    """Indexes in the cache area `rag`, one folder per index key."""

    version = VERSION

    def open(self, key: str) -> SqliteStore:
        folder = cache.area("rag") / key
        folder.mkdir(parents=True, exist_ok=True)
        os.utime(folder)
        return SqliteStore(folder)

    def peek(self, key: str) -> SqliteStore | None:
        folder = cache.area("rag") / key
        return SqliteStore(folder) if (folder / "index.sqlite").is_file() else None

    def close(self) -> None:
        """Nothing to let go: each store holds its own SQLite connections."""
