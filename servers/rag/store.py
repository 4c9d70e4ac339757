"""What tool-rag's engine needs from the place a collection's index is kept.

`sqlite_store` implements it over one SQLite file and memory-mapped vector files (one machine);
`pg_store` over a schema of a PostgreSQL database with pgvector (tables, packed posting lists under
a B-tree, a vector column under an HNSW index, advisory locks), shared by replicas on any number of
machines. `backends` picks one from TOOLSUITE_RAG_STORE. The engine never writes SQL: it chunks and
tokenizes, hands the store whole batches, and asks it for rankings and rows; both stores rank with
the same BM25 over the same terms, so they return the same citations and text.

One index follows one collection file as it changes. Documents are kept by their content (a key
made from the record's title, url and body), not by their place in the file: an update adds the
records whose content is new, drops the ones that are gone and rewrites the table of positions
(the record's place in the file, which is what agents cite as its Document Index) in one step, so
unchanged records keep their chunks and their vectors. Chunk ids and document ids are handed out
once and never reused: row i of the chunk vectors is always chunk i, and rows of content that left
the collection are simply never returned again.

Resuming relies on two promises every store keeps: `add_documents` commits a batch together with
the progress it is given, and `add_vectors` records the rows it appended in the same step as the
rows themselves, so a crash loses at most the batch in flight.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class IndexState:
    """How far a collection's index is built, and what is still pending."""

    documents: int
    chunks: int
    lexical_complete: bool = field(
        metadata={"description": "Every record of the collection, as last read completely, is searchable."})
    pending_documents: int = field(
        metadata={"description": "New or changed records an update of the index is taking in right now (searchable "
                                 "when it finishes; until then the previous version is served)."})
    dense_vectors: int = field(metadata={"description": "Chunks that have a vector for semantic search."})
    dense_complete: bool
    cjk_share: float = field(metadata={"description": "Share of Chinese characters in the collection's text."})
    build_seconds: float | None = field(
        metadata={"description": "How long the last lexical build or update took, in seconds."})
    updated_documents: int = field(
        metadata={"description": "Records the last update took in (new or changed content); 0 for a first build."})


@dataclass(frozen=True)
class SourceMark:
    """A version of the collection file as `stat` sees it: any write changes one of these."""

    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    device: int

    @classmethod
    def of(cls, path: Path) -> SourceMark:
        info = os.stat(path)
        return cls(info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_dev)

    def text(self) -> str:
        return f"{self.size}:{self.mtime_ns}:{self.ctime_ns}:{self.inode}:{self.device}"

    @classmethod
    def parse(cls, text: str | None) -> SourceMark | None:
        try:
            size, mtime, ctime, inode, device = (int(part) for part in (text or "").split(":"))
        except ValueError:
            return None
        return cls(size, mtime, ctime, inode, device)


@dataclass(frozen=True)
class UpdateProgress:
    """Where a running update stands, for other processes to see."""

    records_read: int
    new_documents: int  # taken in so far (not searchable until the update is published)


@dataclass(frozen=True)
class Publication:
    """The collection as one complete read found it: what becomes searchable in one step."""

    order: Sequence[str]  # document keys by position in the file
    source: SourceMark
    removed: Sequence[DocumentEntry]  # held documents not in `order`, re-chunked so their terms can be taken out
    new_documents: int
    seconds: float


@dataclass(frozen=True)
class ChunkEntry:
    chunk_index: int
    text: str
    terms: list[str]  # what lexical search matches: the title's words and the chunk's own


@dataclass(frozen=True)
class DocumentEntry:
    key: str  # the content key: equal records get equal keys (numbered by occurrence)
    title: str
    url: str | None
    body: str
    chunks: list[ChunkEntry]
    cjk_chars: int  # Chinese characters in the sampled start of the body, for the collection's CJK share
    sampled_chars: int


@dataclass(frozen=True)
class StoredChunk:
    chunk_id: int  # handed out once, in build order: also its row among the chunk vectors
    doc_index: int  # the document's position in the collection file
    chunk_index: int
    title: str
    text: str


@dataclass(frozen=True)
class StoredDocument:
    doc_index: int
    title: str
    url: str | None
    body: str
    key: str = ""


@dataclass(frozen=True)
class BuilderStatus:
    """What the last background vector builder of an index left for the next process to read."""

    pid: int | None = None
    heartbeat: float | None = None  # time.time() of its last finished batch
    error: str | None = None  # why the last build failed, if it did
    error_at: float | None = None


class Store(Protocol):
    """One collection's index."""

    # Used by replicas on other machines too: a call that finds another process building does not
    # wait for it but answers from what is committed (`indexing.update`). False for the SQLite store.
    shared: bool

    # -- updating ---------------------------------------------------------------------------------

    def build_lock(self, wait: float, cancel: threading.Event | None = None) -> AbstractContextManager[None]:
        """Held while the lexical index is built or updated, so two processes never update it at
        once. Raises `TimedOut` after `wait` seconds and `Cancelled` as soon as `cancel` is set."""
        ...

    def vector_lock(self, wait: float, cancel: threading.Event | None = None) -> AbstractContextManager[None]:
        """Held by the one process that builds this index's vectors (separate from `build_lock`, so
        an update of the lexical index never waits for a long vector build)."""
        ...

    def builder_running(self) -> bool:
        """Whether some process holds `vector_lock` now."""
        ...

    def updating(self) -> bool:
        """Whether some process holds `build_lock` now (an update is taking a change in)."""
        ...

    def state(self) -> IndexState: ...

    def source(self) -> SourceMark | None:
        """The version of the collection file the searchable index was made from (None before the
        first build finished)."""
        ...

    def document_keys(self) -> set[str]:
        """Keys of every document the store holds, searchable or taken in by an unfinished update."""
        ...

    def add_documents(self, batch: Sequence[DocumentEntry], progress: UpdateProgress,
                      placed: Sequence[tuple[int, str]] = ()) -> None:
        """Documents, chunks and their terms; not searchable until `publish` puts them in place.
        `placed` ((position, key) of the records read since the last batch) comes only during a first
        build: a shared store may make those records searchable at once, in the same transaction, so
        other replicas answer from them while the build goes on; the SQLite store ignores it."""
        ...

    def note_progress(self, progress: UpdateProgress) -> None: ...

    def documents_not_in(self, keys: Sequence[str]) -> list[StoredDocument]:
        """Held documents whose key is not among `keys` (what a publication would remove)."""
        ...

    def publish(self, publication: Publication) -> None:
        """In one step: the positions become `publication.order`, removed documents go, and the
        index records the source version it now reflects."""
        ...

    def texts_to_embed(self, limit: int) -> list[tuple[int, str, str]]:
        """(chunk id, title, text) of the next chunks without a vector, in id order (row i of the chunk
        vectors is chunk i). Chunks of content that is gone are skipped."""
        ...

    def add_vectors(self, rows: Sequence[int], vectors: Any) -> None:
        """Append the vectors of `rows` (increasing, from `texts_to_embed`; a float32 array with one
        row each). Skipped rows are filled with zeros, which no ranking returns."""
        ...

    def builder_status(self) -> BuilderStatus: ...

    def set_builder_status(self, status: BuilderStatus) -> None: ...

    # -- reading ----------------------------------------------------------------------------------

    def document(self, doc_index: int) -> StoredDocument | None: ...

    def chunks(self, chunk_ids: Sequence[int]) -> list[StoredChunk]:
        """The searchable chunks with these ids, in any order; other ids are skipped."""
        ...

    def chunks_of(self, doc_index: int, first: int, last: int) -> list[StoredChunk]:
        """A document's chunks numbered first..last, in order."""
        ...

    def documents_of(self, chunk_ids: Sequence[int]) -> dict[int, int]:
        """chunk_id -> doc_index (position), for searchable chunks."""
        ...

    def term_counts(self, terms: Sequence[str]) -> dict[str, int]:
        """How many chunks contain each term (terms in no chunk are left out)."""
        ...

    def lexical_ranking(self, terms: Sequence[str], limit: int) -> list[int]:
        """Chunk ids matching any of the terms, best BM25 first."""
        ...

    def nearest(self, vector: Any, limit: int) -> list[int]:
        """Searchable chunk ids by cosine similarity to `vector`, best first,
        among those that have a vector (the caller decides whether enough of them do)."""
        ...

    def best_chunks(self, documents: Sequence[int], vector: Any | None) -> dict[int, int]:
        """doc_index -> the chunk_id closest to `vector` among the document's chunks that have a
        vector (its first chunk when none has, or when there is no vector)."""
        ...


class StoreBackend(Protocol):
    """Opens the store of one index key."""

    version: str  # part of every index key, so a store never reads an index laid out by another version

    def open(self, key: str) -> Store: ...

    def peek(self, key: str) -> Store | None:
        """The store of `key` if an index exists for it, without creating one."""
        ...

    def close(self) -> None:
        """Let go of what the backend holds for the whole process (database connections)."""
        ...
