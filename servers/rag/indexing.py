"""Building a collection's index into a store: the lexical part within the call (searchable as soon
as it is done), vectors afterwards. Both resume where an interrupted build stopped."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from servers.rag import chunker, tokens
from servers.rag.embedders import Embedder
from servers.rag.loader import Record, iter_records
from servers.rag.store import ChunkEntry, DocumentEntry, LexicalProgress, Store, VectorKind
from shared.errors import Cancelled, InputError

ProgressFn = Callable[[float, float | None, str | None], None]

BATCH_DOCS = 200
# e5 embeds about 12 leads a second: small batches keep the resumable step short.
VECTOR_BATCH: dict[VectorKind, int] = {"chunks": 512, "documents": 32}
SAMPLE_CHARS = 2000  # of each body, for the collection's share of Chinese text


def lead(title: str, opening: str, chars: int = 120) -> str:
    """A document's lead as the document-level embedder sees it (measured: title plus the first 120
    characters find English-described Chinese documents far better than titles alone)."""
    return f"{title}。{opening[:chars]}" if title else opening[:chars]


def _entry(record: Record) -> DocumentEntry:
    title_terms = tokens.tokenize(record.title)  # in every chunk's indexed text, never a chunk of its own
    chunks = [ChunkEntry(chunk.chunk_index, chunk.text, title_terms + tokens.tokenize(chunk.text))
              for chunk in chunker.chunk_document(record.index, record.body)]
    return DocumentEntry(record.index, record.title, record.url, record.body, chunks)


def build_lexical(store: Store, source: Path, *, progress: ProgressFn | None = None,
                  cancel: threading.Event | None = None, wait: float = 600) -> None:
    """Documents, chunks and the lexical index, in batches of BATCH_DOCS documents."""
    if store.lexical_progress() is None:
        return
    with store.build_lock(wait, cancel):
        done = store.lexical_progress()
        if done is None:  # another process finished it while this one waited
            return
        started = time.perf_counter()
        cjk, sampled = done.cjk_chars, done.sampled_chars
        batch: list[DocumentEntry] = []
        last = done.documents_done - 1
        for record in iter_records(source):
            if record.index < done.documents_done:
                continue
            if cancel is not None and cancel.is_set():
                raise Cancelled("indexing was cancelled; the next call resumes where it stopped")
            batch.append(_entry(record))
            sample = record.body[:SAMPLE_CHARS]
            cjk += sum(1 for ch in sample if "\u4e00" <= ch <= "\u9fff")
            sampled += len(sample)
            last = record.index
            if len(batch) >= BATCH_DOCS:
                store.add_documents(batch, LexicalProgress(last + 1, cjk, sampled))
                batch = []
                if progress is not None:
                    progress(last + 1, None, f"indexed {last + 1} documents")
        if batch:
            store.add_documents(batch, LexicalProgress(last + 1, cjk, sampled))
        if last < 0:
            raise InputError("the collection has no records")
        store.finish_lexical(cjk_share=round(cjk / sampled, 3) if sampled else 0.0,
                             build_seconds=round(time.perf_counter() - started, 2))


def build_vectors(store: Store, kind: VectorKind, load: Callable[[], Embedder | None], wait: float = 3600) -> None:
    """Chunk vectors (title and text) or document vectors (leads). The embedder is loaded only when
    there is work left, so a process that finds the vectors complete never loads a model."""
    with store.build_lock(wait):
        state = store.state()
        if state.dense_complete if kind == "chunks" else state.document_index_complete:
            return
        model = load()
        if model is None:
            return
        while rows := store.texts_to_embed(kind, VECTOR_BATCH[kind]):
            if kind == "chunks":
                texts = [f"{title}\n{text}" for title, text in rows]
            else:
                texts = [lead(title, text) for title, text in rows]
            store.add_vectors(kind, model.embed(texts))
        store.finish_vectors(kind)
