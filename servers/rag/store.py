"""What tool-rag's engine needs from the place a collection's index is kept.

`sqlite_store` implements it over one SQLite file and memory-mapped vector files; a PostgreSQL +
pgvector store can implement the same methods (tables, a tsvector column, vector columns, an
advisory lock). The engine never writes SQL: it chunks and tokenizes, hands the store whole
batches, and asks it for rankings and rows.

Resuming a build relies on two promises every store keeps: `add_documents` commits a batch
together with the progress it is given, and `add_vectors` records the rows it appended in the same
step as the rows themselves, so a crash loses at most the batch in flight.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

# Chunk vectors (row i = the chunk whose chunk_id is i) or document vectors (row i = document i's lead).
VectorKind = Literal["chunks", "documents"]


@dataclass(frozen=True)
class IndexState:
    """How far a collection's index is built."""

    documents: int
    chunks: int
    lexical_complete: bool
    dense_vectors: int = field(metadata={"description": "Chunks that have a vector for semantic search."})
    dense_complete: bool
    document_vectors: int = field(
        metadata={"description": "Documents whose lead is in the cross-lingual document index."})
    document_index_complete: bool
    cjk_share: float = field(metadata={"description": "Share of Chinese characters in the collection's text."})
    build_seconds: float | None = field(metadata={"description": "How long the lexical index took to build."})


@dataclass(frozen=True)
class LexicalProgress:
    """Where an unfinished lexical build stands: what the next batch starts from."""

    documents_done: int
    cjk_chars: int  # Chinese characters in the sampled text so far, for the collection's CJK share
    sampled_chars: int


@dataclass(frozen=True)
class ChunkEntry:
    chunk_index: int
    text: str
    terms: list[str]  # what lexical search matches: the title's words and the chunk's own


@dataclass(frozen=True)
class DocumentEntry:
    doc_index: int
    title: str
    url: str | None
    body: str
    chunks: list[ChunkEntry]


@dataclass(frozen=True)
class StoredChunk:
    chunk_id: int  # numbered densely from 0 in build order: also its row among the chunk vectors
    doc_index: int
    chunk_index: int
    title: str
    text: str


@dataclass(frozen=True)
class StoredDocument:
    doc_index: int
    title: str
    url: str | None
    body: str


class Store(Protocol):
    """One collection's index."""

    # -- building ---------------------------------------------------------------------------------

    def build_lock(self, wait: float, cancel: threading.Event | None = None) -> AbstractContextManager[None]:
        """Held while building, so two processes never build the same index at once. Raises
        `TimedOut` after `wait` seconds and `Cancelled` as soon as `cancel` is set."""
        ...

    def state(self) -> IndexState: ...

    def lexical_progress(self) -> LexicalProgress | None:
        """None once the lexical index is complete."""
        ...

    def add_documents(self, batch: Sequence[DocumentEntry], progress: LexicalProgress) -> None: ...

    def finish_lexical(self, cjk_share: float, build_seconds: float) -> None: ...

    def texts_to_embed(self, kind: VectorKind, limit: int) -> list[tuple[str, str]]:
        """(title, text) of the next rows without a vector, in row order: chunks with their text,
        documents with their first chunk's text."""
        ...

    def add_vectors(self, kind: VectorKind, vectors: Any) -> None:
        """Append rows (a float32 array, one row per text from `texts_to_embed`)."""
        ...

    def finish_vectors(self, kind: VectorKind) -> None: ...

    # -- reading ----------------------------------------------------------------------------------

    def document(self, doc_index: int) -> StoredDocument | None: ...

    def chunks(self, chunk_ids: Sequence[int]) -> list[StoredChunk]:
        """The chunks with these ids, in any order; unknown ids are skipped."""
        ...

    def chunks_of(self, doc_index: int, first: int, last: int) -> list[StoredChunk]:
        """A document's chunks numbered first..last, in order."""
        ...

    def documents_of(self, chunk_ids: Sequence[int]) -> dict[int, int]:
        """chunk_id -> doc_index."""
        ...

    def term_counts(self, terms: Sequence[str]) -> dict[str, int]:
        """How many chunks contain each term (terms in no chunk are left out)."""
        ...

    def lexical_ranking(self, terms: Sequence[str], limit: int) -> list[int]:
        """Chunk ids matching any of the terms, best BM25 first."""
        ...

    def nearest(self, kind: VectorKind, vector: Any, limit: int) -> list[int]:
        """Rows (chunk ids or document indexes) by cosine similarity to `vector`, best first; empty
        until that kind of vector is complete."""
        ...

    def best_chunks(self, documents: Sequence[int], vector: Any | None) -> dict[int, int]:
        """doc_index -> the chunk_id closest to `vector` among the document's chunks (its first chunk
        when there is no vector or the chunk vectors are not complete)."""
        ...


class StoreBackend(Protocol):
    """Opens the store of one index key."""

    version: str  # part of every index key, so a store never reads an index laid out by another version

    def open(self, key: str) -> Store: ...
