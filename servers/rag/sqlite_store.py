"""tool-rag's index in one SQLite file under TOOLSUITE_CACHE_DIR/rag/<key>, with the vectors in flat
float32 files read through a memory map.

The SQLite file holds documents (with their bodies, so a document is read from the index), chunks,
and a contentless FTS5 table over pre-tokenized text: jieba words and English words, because FTS5's
own trigram tokenizer cannot match two-character Chinese words. BM25 comes from FTS5. Every batch
commits in one transaction together with the build's progress, and vector rows are counted in the
database only after they are written, so a crash loses at most one batch. An exclusive file lock
keeps two processes from building the same index at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servers.rag.numeric import numpy
from servers.rag.store import DocumentEntry, IndexState, LexicalProgress, StoredChunk, StoredDocument, VectorKind
from shared import cache
from shared.errors import Cancelled, TimedOut

VERSION = "rag-index-3"  # 3: documents keep their bodies

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS docs (doc_index INTEGER PRIMARY KEY, title TEXT, url TEXT, chunks INTEGER,
                                 chars INTEGER, body TEXT);
CREATE TABLE IF NOT EXISTS chunks (id INTEGER PRIMARY KEY, doc_index INTEGER, chunk_index INTEGER, text TEXT);
CREATE INDEX IF NOT EXISTS chunks_by_doc ON chunks (doc_index, chunk_index);
CREATE VIRTUAL TABLE IF NOT EXISTS lexical USING fts5(tokens, content='', tokenize='unicode61 remove_diacritics 0');
CREATE VIRTUAL TABLE IF NOT EXISTS lexical_vocab USING fts5vocab(lexical, 'row');
"""

_CHUNK_COLUMNS = "SELECT c.id, c.doc_index, c.chunk_index, d.title, c.text FROM chunks c JOIN docs d " \
                 "ON d.doc_index = c.doc_index"


@dataclass(frozen=True)
class _VectorFile:
    file: str
    complete_key: str
    rows_key: str
    dim_key: str


_VECTOR_FILES: dict[str, _VectorFile] = {
    "chunks": _VectorFile("vectors.f32", "dense", "dense_rows", "dense_dim"),
    "documents": _VectorFile("documents.f32", "doc_dense", "doc_rows", "doc_dim"),
}


def _marks(values: Sequence[Any]) -> str:
    return ",".join("?" * len(values))


class SqliteStore:
    """An open index: one SQLite connection per thread, the vectors memory-mapped."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.db_path = folder / "index.sqlite"
        self._local = threading.local()
        self._mapped: dict[str, tuple[int, Any]] = {}

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

    def _meta(self) -> dict[str, str]:
        return dict(self.db().execute("SELECT key, value FROM meta").fetchall())

    @staticmethod
    def _set_meta(connection: sqlite3.Connection, **values: Any) -> None:
        connection.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                               [(k, str(v)) for k, v in values.items()])

    # -- building ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def build_lock(self, wait: float, cancel: threading.Event | None = None) -> Iterator[None]:
        handle = open(self.folder / "build.lock", "a+b")  # noqa: SIM115 - held for the block
        deadline = time.monotonic() + wait
        try:
            while True:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if cancel is not None and cancel.is_set():
                        raise Cancelled("the call was cancelled while another process built this index") from None
                    if time.monotonic() > deadline:
                        raise TimedOut("another process is building this collection's index; try again shortly") \
                            from None
                    time.sleep(0.2)
            yield
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            handle.close()

    def state(self) -> IndexState:
        meta = self._meta()
        documents, chunks = self.db().execute("SELECT COUNT(*), COALESCE(SUM(chunks), 0) FROM docs").fetchone()
        build = meta.get("build_seconds")
        return IndexState(documents=documents, chunks=int(chunks), lexical_complete=meta.get("lexical") == "complete",
                          dense_vectors=int(meta.get("dense_rows") or 0),
                          dense_complete=meta.get("dense") == "complete",
                          document_vectors=int(meta.get("doc_rows") or 0),
                          document_index_complete=meta.get("doc_dense") == "complete",
                          cjk_share=float(meta.get("cjk_share") or 0), build_seconds=float(build) if build else None)

    def lexical_progress(self) -> LexicalProgress | None:
        meta = self._meta()
        if meta.get("lexical") == "complete":
            return None
        return LexicalProgress(documents_done=int(meta.get("docs_done") or 0),
                               cjk_chars=int(meta.get("cjk_chars") or 0), sampled_chars=int(meta.get("all_chars") or 0))

    def add_documents(self, batch: Sequence[DocumentEntry], progress: LexicalProgress) -> None:
        connection = self.db()
        next_chunk = connection.execute("SELECT COALESCE(MAX(id), -1) + 1 FROM chunks").fetchone()[0]
        with connection:
            for document in batch:
                connection.execute("INSERT OR REPLACE INTO docs VALUES (?, ?, ?, ?, ?, ?)",
                                   (document.doc_index, document.title, document.url, len(document.chunks),
                                    len(document.body), document.body))
                for chunk in document.chunks:
                    connection.execute("INSERT INTO chunks VALUES (?, ?, ?, ?)",
                                       (next_chunk, document.doc_index, chunk.chunk_index, chunk.text))
                    connection.execute("INSERT INTO lexical (rowid, tokens) VALUES (?, ?)",
                                       (next_chunk, " ".join(chunk.terms)))
                    next_chunk += 1
            self._set_meta(connection, docs_done=progress.documents_done, cjk_chars=progress.cjk_chars,
                           all_chars=progress.sampled_chars)

    def finish_lexical(self, cjk_share: float, build_seconds: float) -> None:
        with self.db() as connection:
            self._set_meta(connection, lexical="complete", cjk_share=cjk_share, build_seconds=build_seconds)

    def texts_to_embed(self, kind: VectorKind, limit: int) -> list[tuple[str, str]]:
        done = int(self._meta().get(_VECTOR_FILES[kind].rows_key) or 0)
        if kind == "chunks":
            query = ("SELECT d.title, c.text FROM chunks c JOIN docs d ON d.doc_index = c.doc_index "
                     "WHERE c.id >= ? ORDER BY c.id LIMIT ?")
            arguments = (done, limit)
        else:
            query = ("SELECT d.title, COALESCE(c.text, '') FROM docs d LEFT JOIN chunks c "
                     "ON c.doc_index = d.doc_index AND c.chunk_index = 0 ORDER BY d.doc_index LIMIT ? OFFSET ?")
            arguments = (limit, done)
        return [(title or "", text) for title, text in self.db().execute(query, arguments).fetchall()]

    def add_vectors(self, kind: VectorKind, vectors: Any) -> None:
        spec = _VECTOR_FILES[kind]
        rows = int(self._meta().get(spec.rows_key) or 0)
        array = vectors.astype("float32")
        dim = int(array.shape[1])
        with open(self.folder / spec.file, "ab") as out:
            out.truncate(rows * dim * 4)  # drop a batch a crash left half-written
            out.write(array.tobytes())
            out.flush()
        with self.db() as connection:
            self._set_meta(connection, **{spec.rows_key: rows + len(array), spec.dim_key: dim})

    def finish_vectors(self, kind: VectorKind) -> None:
        with self.db() as connection:
            self._set_meta(connection, **{_VECTOR_FILES[kind].complete_key: "complete"})

    # -- reading ----------------------------------------------------------------------------------

    def document(self, doc_index: int) -> StoredDocument | None:
        row = self.db().execute("SELECT title, url, body FROM docs WHERE doc_index = ?", (doc_index,)).fetchone()
        if row is None:
            return None
        return StoredDocument(doc_index=doc_index, title=row[0] or "", url=row[1], body=row[2] or "")

    def chunks(self, chunk_ids: Sequence[int]) -> list[StoredChunk]:
        if not chunk_ids:
            return []
        rows = self.db().execute(f"{_CHUNK_COLUMNS} WHERE c.id IN ({_marks(chunk_ids)})", list(chunk_ids)).fetchall()
        return [StoredChunk(r[0], r[1], r[2], r[3] or "", r[4]) for r in rows]

    def chunks_of(self, doc_index: int, first: int, last: int) -> list[StoredChunk]:
        rows = self.db().execute(f"{_CHUNK_COLUMNS} WHERE c.doc_index = ? AND c.chunk_index BETWEEN ? AND ? "
                                 "ORDER BY c.chunk_index", (doc_index, first, last)).fetchall()
        return [StoredChunk(r[0], r[1], r[2], r[3] or "", r[4]) for r in rows]

    def documents_of(self, chunk_ids: Sequence[int]) -> dict[int, int]:
        if not chunk_ids:
            return {}
        return dict(self.db().execute(f"SELECT id, doc_index FROM chunks WHERE id IN ({_marks(chunk_ids)})",
                                      list(chunk_ids)).fetchall())

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

    def _vectors(self, kind: VectorKind) -> Any:
        spec = _VECTOR_FILES[kind]
        meta = self._meta()
        rows = int(meta.get(spec.rows_key) or 0)
        if meta.get(spec.complete_key) != "complete" or rows == 0:
            return None
        mapped = self._mapped.get(kind)
        if mapped is None or mapped[0] != rows:
            np = numpy()
            dim = int(meta[spec.dim_key])
            mapped = (rows, np.memmap(self.folder / spec.file, dtype=np.float32, mode="r", shape=(rows, dim)))
            self._mapped[kind] = mapped
        return mapped[1]

    def nearest(self, kind: VectorKind, vector: Any, limit: int) -> list[int]:
        matrix = self._vectors(kind)
        if matrix is None:
            return []
        np = numpy()
        scores = matrix @ vector
        count = min(limit, scores.shape[0])
        top = np.argpartition(-scores, count - 1)[:count]
        return [int(i) for i in top[np.argsort(-scores[top])]]

    def best_chunks(self, documents: Sequence[int], vector: Any | None) -> dict[int, int]:
        if not documents:
            return {}
        rows = self.db().execute(f"SELECT id, doc_index FROM chunks WHERE doc_index IN ({_marks(documents)}) "
                                 "ORDER BY id", list(documents)).fetchall()
        matrix = self._vectors("chunks") if vector is not None else None
        best: dict[int, tuple[float, int]] = {}
        for chunk_id, doc in rows:
            score = float(matrix[chunk_id] @ vector) if matrix is not None else -float(chunk_id)
            if doc not in best or score > best[doc][0]:
                best[doc] = (score, chunk_id)
        return {doc: chunk_id for doc, (_score, chunk_id) in best.items()}


class SqliteBackend:
    """Indexes in the cache area `rag`, one folder per index key."""

    version = VERSION

    def open(self, key: str) -> SqliteStore:
        folder = cache.area("rag") / key
        folder.mkdir(parents=True, exist_ok=True)
        os.utime(folder)
        return SqliteStore(folder)
