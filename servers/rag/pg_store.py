"""tool-rag's index in PostgreSQL with pgvector, shared by every replica that points at the same
database (TOOLSUITE_RAG_STORE=postgresql://...).

It keeps the promises of `store.Store` the way the SQLite store does, so both give the same
citations and the same text: documents by content key, a table of positions, chunks with the same
lexical terms, BM25 computed exactly as FTS5 computes it (`lexemes`), vectors by row. What differs
is how processes on several machines take turns: the build lock and the vector lock are PostgreSQL
session advisory locks (released when the holder's session ends, however it ends), every batch is
committed together with the `build_state` row that says how far the build got, and a process that
finds another building answers from what is committed (`shared`: see `indexing.update`).

- Lexical: an inverted index of the pre-tokenized terms (no parser, no stemming): per lexeme, packed
  postings (chunk, count, length) under a B-tree; a query reads the postings of its few terms and
  `lexemes.rank` computes BM25 as FTS5 does.
- Chunk vectors: a pgvector column with an HNSW index (inner product), the dimension taken from
  the first vectors the embedder returns (512 for USE). Up to TOOLSUITE_RAG_PG_EXACT_ROWS vectors
  each process ranks a copy of them exactly (fetched once, then only new rows), above it the HNSW
  index does.
  Rankings skip rows of content that is no longer searchable.
- PostgreSQL text cannot hold NUL characters: a NUL in a record is stored as U+FFFD (the SQLite
  store keeps it), the one way the two can differ in what they return.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from servers.rag import lexemes, pg_schema, vector_rank
from servers.rag.numeric import numpy
from servers.rag.pg_database import HNSW_EF_SEARCH, Database, Vector, lock_key
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
from shared import settings

log = logging.getLogger("toolsuite.rag.postgres")

HNSW_SLACK = 50  # extra HNSW candidates for rows that are not searchable (an update's, not yet published)
STATE_TTL = 1.0  # seconds a read of the build-state row answers later questions about the state


def exact_rows() -> int:
    """Up to this many chunk vectors, each process ranks a copy of them exactly (as the SQLite
    store ranks its memory-mapped files: the same order to the last bit, and about 1 ms where the
    database's own scan took 7 ms of its CPU and the HNSW index as long, with recall 0.87, on the
    bench's 12,851 chunks); above, the HNSW index in the database answers."""
    return int(settings.number("TOOLSUITE_RAG_PG_EXACT_ROWS", 100000, minimum=0))


def _text(value: str) -> str:
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


class PostgresStore:
    """One index: a schema of the shared database."""

    shared = True  # replicas on other machines use it too: a call that finds a build running answers at once

    def __init__(self, database: Database, key: str) -> None:
        self.database = database
        self.key = key
        self.schema = pg_schema.schema_name(key)
        self._build_key = lock_key(key, "build")
        self._vector_key = lock_key(key, "vectors")
        self._covered: dict[tuple[int, int, int], int] = {}
        self._row: tuple[float, dict[str, Any]] | None = None
        self._cache_lock = threading.Lock()
        self._copy: tuple[Any, ...] | None = None  # (mask key, matrix, mask) of the local copy
        self._copy_lock = threading.Lock()

    # -- the build-state row ----------------------------------------------------------------------

    def _state_row(self, fresh: bool = False) -> dict[str, Any]:
        """The build-state row. A search asks for the index's state several times; within STATE_TTL
        the row read last answers (`source()` always reads it afresh, and this process's own writes
        drop it), so a search costs one round trip for all of it, and another replica's progress
        shows here at most STATE_TTL later."""
        from psycopg.rows import dict_row

        now = time.monotonic()
        with self._cache_lock:
            cached = self._row
        if not fresh and cached is not None and now - cached[0] < STATE_TTL:
            return cached[1]

        def read(connection: Any) -> dict[str, Any]:
            with connection.cursor(row_factory=dict_row) as cursor:
                return cursor.execute(f"SELECT * FROM {self.schema}.build_state").fetchone()

        row = self.database.read(read)
        with self._cache_lock:
            self._row = (now, row)
        return row

    def _write(self, work: Callable[[Any], Any]) -> None:
        try:
            self.database.write(work)
        finally:
            with self._cache_lock:
                self._row = None

    # -- locks ------------------------------------------------------------------------------------

    def build_lock(self, wait: float, cancel: threading.Event | None = None) -> AbstractContextManager[None]:
        return self.database.session_lock(self._build_key, wait, cancel,
                                          "another process is building this collection's index")

    def vector_lock(self, wait: float, cancel: threading.Event | None = None) -> AbstractContextManager[None]:
        return self.database.session_lock(self._vector_key, wait, cancel,
                                          "another process is building this collection's vectors")

    def builder_running(self) -> bool:
        return self.database.lock_held(self._vector_key)

    def updating(self) -> bool:
        return self.database.lock_held(self._build_key)

    # -- state ------------------------------------------------------------------------------------

    def _count_covered(self, row: dict[str, Any]) -> int:
        """Searchable chunks that have a vector: counted once per (generation, rows, documents)."""
        rows = int(row["chunk_vector_rows"])
        key = (int(row["generation"]), rows, int(row["documents"]))
        with self._cache_lock:
            if key in self._covered:
                return self._covered[key]
        if rows == 0:
            count = 0
        else:
            s = self.schema
            query = f"SELECT count(*) FROM {s}.chunks c JOIN {s}.positions p ON p.doc_id = c.doc_id WHERE c.id < %s"
            count = int(self.database.read(lambda c: c.execute(query, (rows,)).fetchone()[0]))
        with self._cache_lock:
            self._covered = {key: count}
        return count

    def state(self) -> IndexState:
        row = self._state_row()
        documents = int(row["documents"])
        chunks = int(row["live_chunks"])
        dense = self._count_covered(row)
        published = row["source"] is not None
        updating = int(row["update_new"] or 0) if row["update_new"] and self.updating() else 0
        build = row["build_seconds"]
        return IndexState(documents=documents, chunks=chunks, lexical_complete=published,
                          pending_documents=updating, dense_vectors=dense,
                          dense_complete=published and dense >= chunks,
                          cjk_share=float(row["cjk_share"] or 0), build_seconds=float(build) if build else None,
                          updated_documents=int(row["updated_documents"] or 0))

    def source(self) -> SourceMark | None:
        return SourceMark.parse(self._state_row(fresh=True)["source"])

    # -- updating ---------------------------------------------------------------------------------

    def document_keys(self) -> set[str]:
        return self.database.read(lambda c: {r[0] for r in c.execute(f"SELECT key FROM {self.schema}.docs")})

    def add_documents(self, batch: Sequence[DocumentEntry], progress: UpdateProgress,
                      placed: Sequence[tuple[int, str]] = ()) -> None:
        s = self.schema

        def write(connection: Any) -> None:
            next_doc, next_chunk, source = connection.execute(
                f"SELECT next_doc, next_chunk, source FROM {s}.build_state FOR UPDATE").fetchone()
            held = {r[0] for r in connection.execute(f"SELECT key FROM {s}.docs WHERE key = ANY(%s)",
                                                     ([d.key for d in batch],))}
            documents: list[tuple[Any, ...]] = []
            chunks: list[tuple[Any, ...]] = []
            words: list[tuple[int, list[str]]] = []
            for document in batch:
                if document.key in held:
                    continue  # taken in by an earlier, interrupted update
                held.add(document.key)
                documents.append((next_doc, document.key, _text(document.title), _text(document.url)
                                  if document.url else None, len(document.chunks), len(document.body),
                                  document.cjk_chars, document.sampled_chars, _text(document.body)))
                for chunk in document.chunks:
                    lexical = lexemes.pieces(chunk.terms)
                    chunks.append((next_chunk, next_doc, chunk.chunk_index, _text(chunk.text), len(lexical)))
                    words.append((next_chunk, lexical))
                    next_chunk += 1
                next_doc += 1
            packed = lexemes.postings(words)
            with connection.cursor() as cursor:
                for table, columns, rows in (
                        ("docs", "id, key, title, url, chunks, chars, cjk_chars, sampled_chars, body", documents),
                        ("chunks", "id, doc_id, chunk_index, text, length", chunks),
                        ("postings", "term, entries", packed.items())):
                    if rows:
                        with cursor.copy(f"COPY {s}.{table} ({columns}) FROM STDIN") as copy:
                            for values in rows:
                                copy.write_row(values)
            placed_count = self._place(connection, placed) if placed and source is None else None
            connection.execute(
                f"UPDATE {s}.build_state SET next_doc = %s, next_chunk = %s, lexical_rows = lexical_rows + %s, "
                "lexical_tokens = lexical_tokens + %s, update_read = %s, update_new = %s, "
                "documents = COALESCE(%s, documents)",
                (next_doc, next_chunk, len(chunks), sum(row[4] for row in chunks), progress.records_read,
                 progress.new_documents, placed_count))

        self._write(write)

    def _place(self, connection: Any, placed: Sequence[tuple[int, str]]) -> int:
        """During a first build: records read so far become searchable at their positions, so other
        replicas answer from them while the build goes on (the publication rewrites every position)."""
        s = self.schema
        ids = dict(connection.execute(f"SELECT key, id FROM {s}.docs WHERE key = ANY(%s)",
                                      ([key for _position, key in placed],)).fetchall())
        pairs = [(position, ids[key]) for position, key in placed if key in ids]
        positions = [p for p, _d in pairs]
        doc_ids = [d for _p, d in pairs]
        connection.execute(f"DELETE FROM {s}.positions WHERE position = ANY(%s) OR doc_id = ANY(%s)",
                           (positions, doc_ids))
        connection.execute(f"INSERT INTO {s}.positions (position, doc_id) SELECT * FROM unnest(%s::integer[], "
                           "%s::integer[])", (positions, doc_ids))
        return int(connection.execute(f"SELECT count(*) FROM {s}.positions").fetchone()[0])

    def note_progress(self, progress: UpdateProgress) -> None:
        self._write(lambda c: c.execute(
            f"UPDATE {self.schema}.build_state SET update_read = %s, update_new = %s",
            (progress.records_read, progress.new_documents)))

    def documents_not_in(self, keys: Sequence[str]) -> list[StoredDocument]:
        wanted = set(keys)
        s = self.schema

        def read(connection: Any) -> list[StoredDocument]:
            gone = [doc_id for doc_id, key in connection.execute(f"SELECT id, key FROM {s}.docs") if key not in wanted]
            if not gone:
                return []
            rows = connection.execute(f"SELECT key, title, url, body FROM {s}.docs WHERE id = ANY(%s)", (gone,))
            return [StoredDocument(-1, title or "", url, body or "", key) for key, title, url, body in rows]

        return self.database.read(read)

    def publish(self, publication: Publication) -> None:
        s = self.schema

        def write(connection: Any) -> None:
            connection.execute(f"SELECT 1 FROM {s}.build_state FOR UPDATE")
            ids = dict(connection.execute(f"SELECT key, id FROM {s}.docs").fetchall())
            removed = [(ids.pop(document.key), document) for document in publication.removed if document.key in ids]
            rows = tokens = 0
            if removed:
                rows, tokens = self._take_out(connection, removed)
            missing = [key for key in publication.order if key not in ids]
            if missing:
                raise RuntimeError(f"{len(missing)} documents of the update were never added")
            connection.execute(f"DELETE FROM {s}.positions")
            connection.execute(f"INSERT INTO {s}.positions (position, doc_id) SELECT * FROM unnest(%s::integer[], "
                               "%s::integer[])", (list(range(len(publication.order))),
                                                  [ids[key] for key in publication.order]))
            chunks, cjk, sampled = connection.execute(
                f"SELECT COALESCE(SUM(d.chunks), 0), COALESCE(SUM(d.cjk_chars), 0), COALESCE(SUM(d.sampled_chars), 0) "
                f"FROM {s}.docs d JOIN {s}.positions p ON p.doc_id = d.id").fetchone()
            connection.execute(
                f"UPDATE {s}.build_state SET source = %s, documents = %s, live_chunks = %s, cjk_share = %s, "
                "build_seconds = %s, updated_documents = %s, generation = generation + 1, update_read = NULL, "
                "update_new = NULL, lexical_rows = lexical_rows - %s, lexical_tokens = lexical_tokens - %s",
                (publication.source.text(), len(publication.order), int(chunks),
                 round(int(cjk) / int(sampled), 3) if sampled else 0.0, round(publication.seconds, 3),
                 publication.new_documents, rows, tokens))

        self._write(write)
        self._tidy()

    def _take_out(self, connection: Any, removed: list[tuple[int, DocumentEntry]]) -> tuple[int, int]:
        """Documents whose content left the collection: their chunks, postings, term counts and vectors
        (the rows stay counted: row i is always chunk i). Their lexemes come from the
        re-chunked documents, as FTS5's deletes do. Returns (chunks, lexemes) taken out."""
        s = self.schema
        doc_ids = [doc_id for doc_id, _document in removed]
        chunk_ids = dict(((doc, index), chunk) for chunk, doc, index in connection.execute(
            f"SELECT id, doc_id, chunk_index FROM {s}.chunks WHERE doc_id = ANY(%s)", (doc_ids,)).fetchall())
        gone_chunks = list(chunk_ids.values())
        held: set[str] = set()
        rows = tokens = 0
        for doc_id, document in removed:
            for chunk in document.chunks:
                if (doc_id, chunk.chunk_index) in chunk_ids:
                    words = lexemes.pieces(chunk.terms)
                    held.update(words)
                    rows += 1
                    tokens += len(words)
        if held:
            fragments = connection.execute(f"SELECT ctid, entries FROM {s}.postings WHERE term = ANY(%s)",
                                           (list(held),)).fetchall()
            for ctid, entries in fragments:
                kept = lexemes.without(entries, gone_chunks)
                if len(kept) != len(entries):
                    if kept:
                        connection.execute(f"UPDATE {s}.postings SET entries = %s WHERE ctid = %s::tid", (kept, ctid))
                    else:
                        connection.execute(f"DELETE FROM {s}.postings WHERE ctid = %s::tid", (ctid,))
        if self._has_vectors(connection):
            connection.execute(f"DELETE FROM {pg_schema.vector_table(s)} WHERE id = ANY(%s)", (gone_chunks,))
        connection.execute(f"DELETE FROM {s}.chunks WHERE doc_id = ANY(%s)", (doc_ids,))
        connection.execute(f"DELETE FROM {s}.docs WHERE id = ANY(%s)", (doc_ids,))
        return rows, tokens

    def _tidy(self) -> None:
        """Fresh planner statistics after a publication (best effort: the index is correct without)."""
        s = self.schema

        def work(connection: Any) -> None:
            for table in ("docs", "positions", "chunks", "postings"):
                connection.execute(f"ANALYZE {s}.{table}")

        try:
            self.database.read(work)
        except Exception as exc:  # the publication stands; the next one tidies again
            log.info("could not tidy %s after publishing: %s", s, exc)

    def _has_vectors(self, connection: Any) -> bool:
        return connection.execute(f"SELECT chunk_vector_dim IS NOT NULL FROM {self.schema}.build_state").fetchone()[0]

    def texts_to_embed(self, limit: int) -> list[tuple[int, str, str]]:
        s = self.schema
        query = (f"SELECT c.id, d.title, c.text FROM {s}.chunks c JOIN {s}.docs d ON d.id = c.doc_id "
                 f"WHERE c.id >= (SELECT chunk_vector_rows FROM {s}.build_state) ORDER BY c.id LIMIT %s")
        return self.database.read(lambda c: [(row, title or "", text) for row, title, text in
                                             c.execute(query, (limit,)).fetchall()])

    def add_vectors(self, rows: Sequence[int], vectors: Any) -> None:
        np = numpy()
        array = np.asarray(vectors, dtype=np.float32)
        dim = int(array.shape[1])
        s = self.schema

        def write(connection: Any) -> None:
            done, have = connection.execute(
                f"SELECT chunk_vector_rows, chunk_vector_dim FROM {s}.build_state FOR UPDATE").fetchone()
            if have is not None and have != dim:
                raise RuntimeError(f"the embedder now returns {dim}-dimensional vectors where the index has {have}")
            if have is None:
                for statement in pg_schema.vector_tables(s, dim):
                    connection.execute(statement)
            fresh = [(row, vector) for row, vector in zip(rows, array, strict=True) if row >= done]
            table = pg_schema.vector_table(s)
            if fresh:
                documents = dict(connection.execute(f"SELECT id, doc_id FROM {s}.chunks WHERE id = ANY(%s)",
                                                    ([row for row, _vector in fresh],)).fetchall())
                with connection.cursor() as cursor:  # chunks gone since they were read are skipped
                    cursor.executemany(f"INSERT INTO {table} (id, doc_id, embedding) VALUES (%s, %s, %s) "
                                       "ON CONFLICT (id) DO NOTHING",
                                       [(row, documents[row], Vector(v)) for row, v in fresh if row in documents])
            last = max([done] + [row + 1 for row, _vector in fresh])
            connection.execute(f"UPDATE {s}.build_state SET chunk_vector_rows = %s, chunk_vector_dim = %s", (last, dim))

        self._write(write)

    def builder_status(self) -> BuilderStatus:
        row = self._state_row()
        return BuilderStatus(pid=row["builder_pid"], heartbeat=row["builder_heartbeat"], error=row["builder_error"],
                             error_at=row["builder_error_at"])

    def set_builder_status(self, status: BuilderStatus) -> None:
        self._write(lambda c: c.execute(
            f"UPDATE {self.schema}.build_state SET builder_pid = %s, builder_heartbeat = %s, builder_error = %s, "
            "builder_error_at = %s", (status.pid, status.heartbeat, status.error, status.error_at)))

    # -- reading ----------------------------------------------------------------------------------

    def _chunk_query(self) -> str:
        s = self.schema
        return (f"SELECT c.id, p.position, c.chunk_index, d.title, c.text FROM {s}.chunks c "
                f"JOIN {s}.positions p ON p.doc_id = c.doc_id JOIN {s}.docs d ON d.id = c.doc_id")

    def document(self, doc_index: int) -> StoredDocument | None:
        s = self.schema
        row = self.database.read(lambda c: c.execute(
            f"SELECT d.title, d.url, d.body, d.key FROM {s}.positions p JOIN {s}.docs d ON d.id = p.doc_id "
            "WHERE p.position = %s", (doc_index,)).fetchone())
        if row is None:
            return None
        return StoredDocument(doc_index=doc_index, title=row[0] or "", url=row[1], body=row[2] or "", key=row[3])

    def chunks(self, chunk_ids: Sequence[int]) -> list[StoredChunk]:
        if not chunk_ids:
            return []
        rows = self.database.read(lambda c: c.execute(f"{self._chunk_query()} WHERE c.id = ANY(%s)",
                                                      (list(chunk_ids),)).fetchall())
        return [StoredChunk(r[0], r[1], r[2], r[3] or "", r[4]) for r in rows]

    def chunks_of(self, doc_index: int, first: int, last: int) -> list[StoredChunk]:
        rows = self.database.read(lambda c: c.execute(
            f"{self._chunk_query()} WHERE p.position = %s AND c.chunk_index BETWEEN %s AND %s ORDER BY c.chunk_index",
            (doc_index, first, last)).fetchall())
        return [StoredChunk(r[0], r[1], r[2], r[3] or "", r[4]) for r in rows]

    def documents_of(self, chunk_ids: Sequence[int]) -> dict[int, int]:
        if not chunk_ids:
            return {}
        s = self.schema
        return dict(self.database.read(lambda c: c.execute(
            f"SELECT c.id, p.position FROM {s}.chunks c JOIN {s}.positions p ON p.doc_id = c.doc_id "
            "WHERE c.id = ANY(%s)", (list(chunk_ids),)).fetchall()))

    def term_counts(self, terms: Sequence[str]) -> dict[str, int]:
        if not terms:
            return {}
        # A fragment's size says how many chunks it lists (12 bytes an entry), without reading it.
        return {term: int(n) for term, n in self.database.read(lambda c: c.execute(
            f"SELECT term, sum(octet_length(entries)) / 12 FROM {self.schema}.postings WHERE term = ANY(%s) "
            "GROUP BY term", (list(terms),)).fetchall()) if n}

    def lexical_ranking(self, terms: Sequence[str], limit: int) -> list[int]:
        if not terms:
            return []
        s = self.schema
        words = list(dict.fromkeys(terms))

        def read(connection: Any) -> tuple[int, int, dict[str, list[bytes]]]:
            # The statistics and the postings in one statement: one round trip, one snapshot.
            fragments: dict[str, list[bytes]] = {}
            found = connection.execute(
                f"SELECT b.lexical_rows, b.lexical_tokens, p.term, p.entries FROM {s}.build_state b "
                f"LEFT JOIN {s}.postings p ON p.term = ANY(%s)", (words,)).fetchall()
            for _rows, _tokens, term, entries in found:
                if term is not None:
                    fragments.setdefault(term, []).append(entries)
            return int(found[0][0]), int(found[0][1]), fragments

        rows, tokens, fragments = self.database.read(read)
        entries = {term: lexemes.unpack(blobs) for term, blobs in fragments.items()}
        return lexemes.rank(words, entries, rows, tokens, limit)

    def _local(self) -> tuple[Any, Any] | None:
        """(matrix, mask of searchable rows) of the chunk vectors copied into this process, row i =
        chunk i as in the SQLite store's vector file; None above exact_rows() vectors, or when there
        are none. New rows are fetched as they appear, the mask again when the positions change."""
        np = numpy()
        row = self._state_row()
        rows, dim = int(row["chunk_vector_rows"]), row["chunk_vector_dim"]
        if dim is None or rows == 0 or rows > exact_rows():
            return None
        mask_key = (int(row["generation"]), rows, int(row["documents"]))
        cached = self._copy
        if cached is not None and cached[0] == mask_key:
            return cached[1], cached[2]
        s = self.schema
        with self._copy_lock:
            cached = self._copy
            matrix = cached[1] if cached is not None and cached[1].shape[1] == dim else np.zeros((0, dim), np.float32)
            if matrix.shape[0] < rows:
                start = matrix.shape[0]
                entry = np.dtype([("head", ">i4"), ("values", ">f4", (dim,))])

                def fetch(connection: Any) -> list[tuple[int, bytes]]:
                    with connection.cursor(binary=True) as cursor:  # pgvector's binary form: no text round trip
                        return cursor.execute(f"SELECT id, embedding FROM {pg_schema.vector_table(s)} "
                                              "WHERE id >= %s AND id < %s", (start, rows)).fetchall()

                found = self.database.read(fetch)
                grown = np.zeros((rows, dim), np.float32)
                grown[:start] = matrix
                if found:
                    ids = np.fromiter((i for i, _blob in found), dtype=np.int64, count=len(found))
                    values = np.frombuffer(b"".join(blob for _i, blob in found), dtype=entry)["values"]
                    grown[ids] = values.astype(np.float32)
                matrix = grown
            mask = np.zeros(rows, dtype=bool)
            searchable = self.database.read(lambda c: [r[0] for r in c.execute(
                f"SELECT c.id FROM {s}.chunks c JOIN {s}.positions p ON p.doc_id = c.doc_id WHERE c.id < %s",
                (rows,))])
            mask[np.asarray(searchable, dtype=np.int64)] = True
            self._copy = (mask_key, matrix, mask)
        return matrix, mask

    def nearest(self, vector: Any, limit: int) -> list[int]:
        row = self._state_row()
        if limit <= 0 or row["chunk_vector_dim"] is None:
            return []
        local = self._local()
        if local is not None:
            return vector_rank.nearest_rows(local[0], local[1], vector, limit)
        s = self.schema
        table = pg_schema.vector_table(s)
        query = Vector(numpy().asarray(vector, dtype=numpy().float32))
        candidates = limit + HNSW_SLACK
        approximate = candidates <= HNSW_EF_SEARCH

        exact = "(embedding <#> %(q)s) + 0"  # `+ 0` keeps the planner off the index: every distance computed

        def ranked(order: str, bound: str) -> str:
            # Ties (equal vectors) go to the lower row; the HNSW index orders by distance alone.
            tie = "" if order != exact else ", id"
            return (f"SELECT v.id FROM (SELECT id, doc_id, {order} AS distance FROM {table} "
                    f"ORDER BY {order}{tie} {bound}) v JOIN {s}.positions p ON p.doc_id = v.doc_id "
                    "ORDER BY v.distance, v.id LIMIT %(n)s")

        # Above exact_rows() vectors: the best candidates from the HNSW index, then the rows that are
        # not searchable (an update's, not yet published) dropped; if that left too few, every row is
        # ranked by an exact scan in the database.
        attempts = [ranked("embedding <#> %(q)s" if approximate else exact, "LIMIT %(k)s"), ranked(exact, "")]

        def read(connection: Any) -> list[int]:
            found: list[Any] = []
            for statement in attempts:
                found = connection.execute(statement, {"q": query, "k": candidates, "n": limit}).fetchall()
                if len(found) == limit:
                    break
            return [r[0] for r in found]

        return self.database.read(read)

    def best_chunks(self, documents: Sequence[int], vector: Any | None) -> dict[int, int]:
        if not documents:
            return {}
        s = self.schema
        table = pg_schema.vector_table(s)

        has_vectors = self._state_row()["chunk_vector_dim"] is not None
        local = self._local() if vector is not None and has_vectors else None
        if local is not None or vector is None:
            rows = self.database.read(lambda c: c.execute(
                f"SELECT c.id, p.position FROM {s}.chunks c JOIN {s}.positions p ON p.doc_id = c.doc_id "
                "WHERE p.position = ANY(%s) ORDER BY c.id", (list(documents),)).fetchall())
            return vector_rank.best_chunks(rows, local[0] if local is not None else None, vector)

        def read(connection: Any) -> dict[int, int]:
            if vector is None or not has_vectors:
                rows = connection.execute(
                    f"SELECT DISTINCT ON (p.position) p.position, c.id FROM {s}.positions p "
                    f"JOIN {s}.chunks c ON c.doc_id = p.doc_id WHERE p.position = ANY(%s) ORDER BY p.position, c.id",
                    (list(documents),)).fetchall()
            else:
                # Chunks with a vector first, by similarity; otherwise the document's earliest chunk.
                rows = connection.execute(
                    f"SELECT DISTINCT ON (p.position) p.position, c.id FROM {s}.positions p "
                    f"JOIN {s}.chunks c ON c.doc_id = p.doc_id LEFT JOIN {table} v ON v.id = c.id "
                    "WHERE p.position = ANY(%s) ORDER BY p.position, (v.id IS NULL), v.embedding <#> %s, c.id",
                    (list(documents), Vector(numpy().asarray(vector, dtype=numpy().float32)))).fetchall()
            return {int(position): int(chunk_id) for position, chunk_id in rows}

        return self.database.read(read)


class PostgresBackend:
    """Indexes in one PostgreSQL database, a schema per index key."""

    version = pg_schema.VERSION

    def __init__(self, url: str) -> None:
        self.database = Database(url)
        self._ready: set[str] = set()
        self._lock = threading.Lock()

    def open(self, key: str) -> PostgresStore:
        if key not in self._ready:
            schema = pg_schema.schema_name(key)

            def create(connection: Any) -> None:
                # Two replicas opening a new index at once take turns: CREATE ... IF NOT EXISTS alone races.
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(key, "schema"),))
                for statement in pg_schema.tables(schema):
                    connection.execute(statement)

            self.database.write(create)
            with self._lock:
                self._ready.add(key)
        return PostgresStore(self.database, key)

    def peek(self, key: str) -> PostgresStore | None:
        schema = pg_schema.schema_name(key)
        exists = self.database.read(lambda c: c.execute("SELECT to_regclass(%s) IS NOT NULL",
                                                        (f"{schema}.build_state",)).fetchone()[0])
        return PostgresStore(self.database, key) if exists else None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.database.close()
