"""tool-rag's engine: what the tools do, without MCP.

`RagService` opens a collection's index (building what is missing: the lexical index within the
call, vectors in the background), searches it, gathers a context within a token budget, reads a
document or the chunks around a citation, and says how ready the index is. Methods block: callers
run them in a worker thread, may pass a progress callback and a cancel flag, and get plain
dataclasses back. Where the index lives is a `store.StoreBackend` (SQLite unless told otherwise).
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from servers.rag import search as searching
from servers.rag.collection import Collection, OpenCollections
from servers.rag.indexing import ProgressFn
from servers.rag.search import Passage
from servers.rag.sqlite_store import SqliteBackend
from servers.rag.store import IndexState, StoreBackend
from shared import budget
from shared.errors import InputError
from shared.inputs import display_path

__all__ = ["CollectionStats", "ContextLayout", "ContextResult", "DocumentView", "IndexSummary", "Passage",
           "RagService", "Readiness", "SearchResult"]

CUT_NOTE = "\n[... cut to the token budget]"
MIN_CUT_TOKENS = 80  # of text: a source cut shorter than this says too little to be worth its citation
JOIN_SLACK = 4  # tokens that joining the parts into one text may add beyond their separate counts


@dataclass(frozen=True)
class IndexSummary:
    documents: int
    chunks: int
    embedder: str
    dense_complete: bool


@dataclass(frozen=True)
class CollectionStats(IndexState):
    source_file: str
    embedder: str
    document_embedder: str
    dense_error: str | None = field(metadata={"description": "Why semantic indexing failed, if it did."})


@dataclass(frozen=True)
class Readiness:
    stats: CollectionStats
    notes: list[str]  # what an agent should know about the answers: e.g. semantic side still building


@dataclass(frozen=True)
class SearchResult:
    query: str
    source_file: str
    results: list[Passage]
    index: IndexSummary
    notes: list[str]


@dataclass(frozen=True)
class ContextResult:
    query: str
    source_file: str
    context: str = field(metadata={"description": "The source blocks, as laid out in the text."})
    sources: list[Passage]
    tokens: int = field(metadata={"description": "Tokens of the whole text (cl100k): within max_tokens unless the "
                                                 "header and notes alone take more."})
    index: IndexSummary
    notes: list[str]


@dataclass(frozen=True)
class DocumentView:
    source_file: str
    document_index: int
    title: str
    url: str | None
    chunks: list[Passage]
    text: str
    total_chars: int
    next_start_index: int | None


class ContextLayout(Protocol):
    """How the caller shows a context; the token budget is measured on exactly that text."""

    def source(self, number: int, passage: Passage) -> str: ...

    def page(self, query: str, source_file: str, notes: list[str], sources: int, context: str) -> str:
        """The whole text: `context` is the source blocks joined by line breaks, `sources` how many."""
        ...


def _query(text: str) -> str:
    query = text.strip()
    if not query:
        raise InputError("the query is empty")
    return query


def merge_adjacent(passages: list[Passage]) -> list[Passage]:
    """Consecutive chunks of one document become one passage (cited by its last chunk), best first."""
    merged: list[Passage] = []
    for passage in sorted(passages, key=lambda p: (p.document_index, p.chunk_index)):
        last = merged[-1] if merged else None
        if last and last.document_index == passage.document_index and passage.chunk_index == last.chunk_index + 1:
            merged[-1] = dataclasses.replace(last, content=f"{last.content}\n{passage.content}",
                                             relevance_score=max(last.relevance_score, passage.relevance_score),
                                             chunk_index=passage.chunk_index)
        else:
            merged.append(passage)
    return sorted(merged, key=lambda p: p.relevance_score, reverse=True)


def _notes(collection: Collection, state: IndexState) -> list[str]:
    notes = []
    if collection.embedder != "none" and not state.dense_complete:
        done = state.dense_vectors / state.chunks if state.chunks else 0
        notes.append(f"semantic indexing continues in the background ({done:.0%} of {state.chunks} chunks); these "
                     "results are lexical only")
    elif collection.doc_embedder != "none" and not state.document_index_complete:
        done = state.document_vectors / state.documents if state.documents else 0
        notes.append(f"the cross-lingual document index is still being built ({done:.0%} of {state.documents} "
                     "documents); questions in another language than the documents may miss until it is done")
    if collection.vector_error:
        notes.append(f"semantic indexing failed ({collection.vector_error}); results are lexical only")
    return notes


class RagService:
    def __init__(self, backend: StoreBackend | None = None, capacity: int = 4) -> None:
        self.collections = OpenCollections(backend or SqliteBackend(), capacity)

    def _open(self, source: Path, progress: ProgressFn | None,
              cancel: threading.Event | None) -> tuple[Collection, Readiness]:
        collection = self.collections.get(source)
        collection.build(progress=progress, cancel=cancel)
        state = collection.state()
        stats = CollectionStats(**dataclasses.asdict(state), source_file=display_path(source),
                                embedder=collection.embedder, document_embedder=collection.doc_embedder,
                                dense_error=collection.vector_error)
        return collection, Readiness(stats, _notes(collection, state))

    @staticmethod
    def _summary(stats: CollectionStats) -> IndexSummary:
        return IndexSummary(documents=stats.documents, chunks=stats.chunks, embedder=stats.embedder,
                            dense_complete=stats.dense_complete)

    def ready(self, source: Path, *, progress: ProgressFn | None = None,
              cancel: threading.Event | None = None) -> Readiness:
        """Open the collection's index, building the lexical part if it is missing (the first call on
        a collection), and start the vectors in the background."""
        return self._open(source, progress, cancel)[1]

    def stats(self, source: Path, *, progress: ProgressFn | None = None,
              cancel: threading.Event | None = None) -> CollectionStats:
        return self.ready(source, progress=progress, cancel=cancel).stats

    def search(self, source: Path, query: str, *, top_k: int = 10, diverse: bool = True, min_docs: int = 5,
               max_per_doc: int = 2, title_contains: str | None = None, progress: ProgressFn | None = None,
               cancel: threading.Event | None = None) -> SearchResult:
        query = _query(query)
        collection, ready = self._open(source, progress, cancel)
        hits = searching.search(collection, query, top_k=top_k, diverse=diverse, min_docs=min_docs,
                                max_per_doc=max_per_doc, title_contains=title_contains)
        return SearchResult(query=query, source_file=ready.stats.source_file, results=hits,
                            index=self._summary(ready.stats), notes=ready.notes)

    def context(self, source: Path, query: str, layout: ContextLayout, *, max_tokens: int = 4000, top_k: int = 10,
                diverse: bool = True, min_docs: int = 5, max_per_doc: int = 2, progress: ProgressFn | None = None,
                cancel: threading.Event | None = None) -> ContextResult:
        """The best passages, adjacent chunks merged, laid out by `layout` within `max_tokens`: the
        last source that does not fit whole is cut when enough room is left for it to say something."""
        found = self.search(source, query, top_k=top_k, diverse=diverse, min_docs=min_docs,
                            max_per_doc=max_per_doc, progress=progress, cancel=cancel)
        frame = layout.page(found.query, found.source_file, found.notes, 0, "")
        spent = budget.count_tokens(frame) + JOIN_SLACK
        blocks: list[str] = []
        used: list[Passage] = []
        for number, passage in enumerate(merge_adjacent(found.results), start=1):
            block = layout.source(number, passage)
            cost = budget.count_tokens(block) + 1  # the line break before it
            if spent + cost > max_tokens:
                room = max_tokens - spent - 1 - budget.count_tokens(CUT_NOTE)
                heading = budget.count_tokens(layout.source(number, dataclasses.replace(passage, content="")))
                if room - heading >= MIN_CUT_TOKENS:
                    blocks.append(budget.prefix_within(block, room) + CUT_NOTE)
                    used.append(passage)
                break
            blocks.append(block)
            used.append(passage)
            spent += cost
        context = "\n".join(blocks)
        text = layout.page(found.query, found.source_file, found.notes, len(used), context)
        return ContextResult(query=found.query, source_file=found.source_file, context=context, sources=used,
                             tokens=budget.count_tokens(text), index=found.index, notes=found.notes)

    def document(self, source: Path, document_index: int, *, start_index: int = 0, max_chars: int | None = None,
                 progress: ProgressFn | None = None, cancel: threading.Event | None = None) -> DocumentView:
        """A document's text from the index, from `start_index`, at most `max_chars` characters and
        always within the output budget."""
        collection, ready = self._open(source, progress, cancel)
        document = collection.store.document(document_index)
        if document is None:
            raise InputError(f"no document with index {document_index} (the collection has "
                             f"{ready.stats.documents} documents, numbered from 0)")
        page = budget.page_of(document.body, start_index, max_chars)
        return DocumentView(source_file=ready.stats.source_file, document_index=document_index, title=document.title,
                            url=document.url, chunks=[], text=page.text, total_chars=page.total_chars,
                            next_start_index=page.end_index if page.has_more else None)

    def neighbours(self, source: Path, document_index: int, chunk_index: int, *, around: int = 1,
                   progress: ProgressFn | None = None, cancel: threading.Event | None = None) -> DocumentView:
        """The chunk and up to `around` chunks on each side, in order."""
        collection, ready = self._open(source, progress, cancel)
        chunks = collection.store.chunks_of(document_index, chunk_index - around, chunk_index + around)
        if not any(chunk.chunk_index == chunk_index for chunk in chunks):
            raise InputError(f"no chunk {chunk_index} in document {document_index}")
        document = collection.store.document(document_index)
        passages = [Passage.of(chunk) for chunk in chunks]
        return DocumentView(source_file=ready.stats.source_file, document_index=document_index,
                            title=passages[0].title, url=document.url if document else None, chunks=passages,
                            text="\n\n".join(p.content for p in passages),
                            total_chars=sum(len(p.content) for p in passages), next_start_index=None)
