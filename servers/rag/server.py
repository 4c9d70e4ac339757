"""tool-rag: the MCP face of `servers.rag.service`, in the reference's text layout."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

from mcp.server.mcpserver import Context
from pydantic import Field

from servers import registry
from servers.rag.loader import collection_path
from servers.rag.service import (
    CollectionList,
    CollectionStats,
    ContextResult,
    DocumentView,
    Passage,
    RagService,
    Readiness,
    SearchResult,
)
from shared import worker
from shared.budget import Page
from shared.errors import InputError
from shared.inputs import resolve_local_path
from shared.outputs import output_model
from shared.server import READ_ONLY_LOCAL, Progress, ToolResult, add_tool, create_server
from shared.worker import Job

RULE = "=" * 60
SOURCE_RULE = "=" * 50

Query = Annotated[str, Field(description="What to look for: keywords or a question, Chinese or English.",
                             min_length=1, max_length=2000)]
JsonPath = Annotated[str, Field(
    description="Path of the collection: a JSON array of records, {\"documents\": [...]}, or JSON Lines; each record "
    "has content/page_body/text and optional title/url. A <json>.chunks.db path maps to its JSON.",
    min_length=1, max_length=4096)]
TopK = Annotated[int, Field(description="How many chunks to return (1-100).", ge=1, le=100)]
Diverse = Annotated[bool, Field(description="Spread results over documents (at least min_docs documents, at most "
                                "max_per_doc chunks each) instead of the plain top_k.")]
MinDocs = Annotated[int, Field(description="With diverse, the least number of distinct documents.", ge=1, le=100)]
MaxPerDoc = Annotated[int, Field(description="With diverse, the most chunks from one document.", ge=1, le=100)]
MaxTokens = Annotated[int, Field(description="Token budget of the returned context (100-20000).", ge=100, le=20000)]
TitleFilter = Annotated[str | None, Field(description="Only documents whose title contains this text.",
                                          max_length=200)]

SearchOutput = output_model(SearchResult, "SearchOutput")
ContextOutput = output_model(ContextResult, "ContextOutput")
StatsOutput = output_model(CollectionStats, "StatsOutput")
DocumentOutput = output_model(DocumentView, "DocumentOutput")
CollectionsOutput = output_model(CollectionList, "CollectionsOutput")

T = TypeVar("T")


async def in_worker(ctx: Context | None, work: Callable[[Job], T]) -> T:
    """Run an engine call in a worker thread with progress (`shared.worker`, which sets the job's stop
    flag when the call is cancelled, runs out of time or the process gets SIGTERM: indexing stops at
    its next batch)."""
    return await worker.run(work, progress=Progress(ctx))


def notes_lines(notes: list[str]) -> list[str]:
    return [f"[note: {note}]" for note in notes]


def search_text(result: SearchResult, source_as_given: str) -> str:
    """The reference layout; `Source File` is the path as the agent passed it, as the reference showed it."""
    lines = ["=== RAG Search Results ===", f"Query: {result.query!r}", f"Source File: {source_as_given}",
             f"Results Found: {len(result.results)}", "", *notes_lines(result.notes)]
    for number, hit in enumerate(result.results, start=1):
        lines += ["", RULE, f"Result {number}", f"Citation: {hit.citation}", RULE,
                  f"Relevance Score: {hit.relevance_score:.3f}", f"Document Index: {hit.document_index}",
                  f"Chunk Index: {hit.chunk_index}", f"Title: {hit.title}", "", "--- Content ---",
                  f"(Cite as: {hit.citation})", hit.content, ""]
    if not result.results:
        lines.append("No chunk matches the query; try other words or the other language.")
    return "\n".join(lines)


class ReferenceContextLayout:
    """The reference's `rag_get_context` text: a header, then one block per source."""

    def source(self, number: int, passage: Passage) -> str:
        return "\n".join(["", SOURCE_RULE, f"Source {number}", f"Citation: {passage.citation}",
                          f"Title: {passage.title}", f"Document Index: {passage.document_index}",
                          f"Chunk Index: {passage.chunk_index}", f"Relevance Score: {passage.relevance_score:.3f}",
                          SOURCE_RULE, "", passage.content])

    def page(self, query: str, source_file: str, notes: list[str], sources: int, context: str) -> str:
        return "\n".join(["=== RAG Context for Query ===", f"Query: {query!r}", f"Source File: {source_file}",
                          f"Documents Retrieved: {sources}", *notes_lines(notes), "",
                          "--- Retrieved Context with Sources ---", *([context] if context else [])])


def stats_text(ready: Readiness) -> str:
    stats = ready.stats
    semantic = "off" if stats.embedder == "none" else "complete" if stats.dense_complete else \
        f"{stats.dense_vectors}/{stats.chunks} chunks"
    lexical = "complete" if stats.lexical_complete else "building"
    if stats.pending_documents:
        lexical += f" ({stats.pending_documents} new or changed records being added)"
    timing = ""
    if stats.build_seconds is not None:
        timing = f"Last lexical update: {stats.updated_documents} records in {stats.build_seconds} s" \
            if stats.updated_documents else f"Lexical build time: {stats.build_seconds} s"
    lines = ["=== RAG Document Statistics ===", f"Source File: {stats.source_file}",
             f"Documents: {stats.documents}", f"Chunks: {stats.chunks}",
             f"Average chunks per document: {stats.chunks / stats.documents:.1f}" if stats.documents else "",
             f"Lexical index: {lexical}",
             f"Semantic index ({stats.embedder}): {semantic}",
             f"Dictionary translation: {stats.dictionary}",
             f"Vector builder: {stats.vector_builder}",
             f"Chinese share of text: {stats.cjk_share:.0%}", timing,
             *notes_lines(ready.notes)]
    return "\n".join(line for line in lines if line)


def collections_text(listing: CollectionList) -> str:
    lines = ["=== RAG Collections ===", f"Folder: {listing.folder}", f"Collections Found: {len(listing.collections)}",
             "", *notes_lines(listing.notes)]
    for number, entry in enumerate(listing.collections, start=1):
        documents = f"{entry.documents:,}" if entry.documents is not None else "unknown until indexed"
        lines += ["", SOURCE_RULE, f"Collection {number}", f"JSON Path: {entry.json_path}", SOURCE_RULE,
                  f"Format: {entry.format}", f"Documents: {documents}",
                  f"Size: {entry.size_bytes / 2**20:.1f} MB, modified {entry.modified}", f"Index: {entry.index}"]
    if not listing.collections:
        lines.append("No JSON or JSON Lines collection found; give another folder inside the allowed roots.")
    return "\n".join(lines)


def document_text(view: DocumentView, start_index: int) -> str:
    if view.next_start_index is None:
        footer = f"[end of document: {view.total_chars} characters]"
    else:
        footer = Page(view.text, start_index, view.next_start_index, view.total_chars).continuation_hint()
    url = f"URL: {view.url}\n" if view.url else ""
    return f"Title: {view.title}\nDocument Index: {view.document_index}\n{url}\n{view.text}\n\n{footer}"


def neighbours_text(view: DocumentView) -> str:
    return "\n\n".join(f"{passage.citation}\n{passage.content}" for passage in view.chunks)


def build(service: RagService | None = None):
    rag = service or RagService()
    server = create_server(registry.name_of(__name__),
                           "Searches large document collections (JSON/JSONL) with stable citations; lexical retrieval "
                           "with English -> Chinese dictionary translation, plus semantic vectors across languages.")

    async def rag_search(query: Query, json_path: JsonPath, ctx: Context, top_k: TopK = 10, diverse: Diverse = True,
                         min_docs: MinDocs = 5, max_per_doc: MaxPerDoc = 2,
                         title_contains: TitleFilter = None) -> ToolResult:
        """Search a document collection and return the most relevant chunks with stable citations
        [long_context: "<title>", chunk N] (cite them as given).

        BM25 over Chinese words (jieba) and English words; an English question also matches the Chinese words
        a dictionary (CC-CEDICT) gives for its words, and a question in another language than the collection is
        fused with multilingual semantic vectors (built in the background after the first call). With diverse
        (default) results cover at least min_docs documents and at most max_per_doc chunks each. The first call
        on a collection builds a persistent index (progress is reported; about a minute for 12,000 documents);
        later calls, and other processes, reuse it, and a changed file costs only its new or changed records.
        Document Index is the record's position in the file, Chunk Index its chunk number. Use
        rag_list_collections to find collections.
        """
        source = collection_path(json_path)
        result = await in_worker(ctx, lambda job: rag.search(
            source, query, top_k=top_k, diverse=diverse, min_docs=min_docs, max_per_doc=max_per_doc,
            title_contains=title_contains, progress=job.progress, cancel=job.stop))
        return ToolResult(text=search_text(result, json_path),
                          data=SearchOutput.model_validate(result, from_attributes=True))

    async def rag_get_context(query: Query, json_path: JsonPath, ctx: Context, max_tokens: MaxTokens = 4000,
                              top_k: TopK = 10, diverse: Diverse = True, min_docs: MinDocs = 5,
                              max_per_doc: MaxPerDoc = 2) -> ToolResult:
        """Gather the passages most relevant to a query into one context block within a token budget (counted
        with a real tokenizer, Chinese included), for synthesis. Adjacent chunks of one document are merged;
        each source keeps its citation."""
        source = collection_path(json_path)
        layout = ReferenceContextLayout()
        result = await in_worker(ctx, lambda job: rag.context(
            source, query, layout, max_tokens=max_tokens, top_k=top_k, diverse=diverse, min_docs=min_docs,
            max_per_doc=max_per_doc, progress=job.progress, cancel=job.stop))
        text = layout.page(result.query, result.source_file, result.notes, len(result.sources), result.context)
        return ToolResult(text=text, data=ContextOutput.model_validate(result, from_attributes=True))

    async def rag_document_stats(json_path: JsonPath, ctx: Context) -> ToolResult:
        """Describe a collection and its index: documents, chunks, whether the lexical and semantic indexes are
        complete (semantic indexing runs in a background process after the first call and survives it), what is
        still pending, the embedder, the share of Chinese text, and how long the last build or update took.
        Builds or updates the index if it is missing or the file changed."""
        source = collection_path(json_path)
        ready = await in_worker(ctx, lambda job: rag.ready(source, progress=job.progress, cancel=job.stop))
        return ToolResult(text=stats_text(ready), data=StatsOutput.model_validate(ready.stats, from_attributes=True))

    async def rag_get_document(
        json_path: JsonPath,
        document_index: Annotated[int, Field(description="The Document Index from a search result.", ge=0)],
        ctx: Context,
        start_index: Annotated[int, Field(description="First character to return.", ge=0)] = 0,
        max_chars: Annotated[int | None, Field(description="Most characters to return.", ge=100,
                                               le=200_000)] = None,
    ) -> ToolResult:
        """Read a whole document of the collection by its Document Index (from a citation), in pages."""
        source = collection_path(json_path)
        view = await in_worker(ctx, lambda job: rag.document(
            source, document_index, start_index=start_index, max_chars=max_chars, progress=job.progress,
            cancel=job.stop))
        return ToolResult(text=document_text(view, start_index),
                          data=DocumentOutput.model_validate(view, from_attributes=True))

    async def rag_get_neighbours(
        json_path: JsonPath,
        document_index: Annotated[int, Field(description="The Document Index from a citation.", ge=0)],
        chunk_index: Annotated[int, Field(description="The Chunk Index from a citation.", ge=0)],
        ctx: Context,
        around: Annotated[int, Field(description="How many chunks before and after (0-5).", ge=0, le=5)] = 1,
    ) -> ToolResult:
        """Read the chunks around a cited chunk (same document), each with its citation."""
        source = collection_path(json_path)
        view = await in_worker(ctx, lambda job: rag.neighbours(
            source, document_index, chunk_index, around=around, progress=job.progress, cancel=job.stop))
        return ToolResult(text=neighbours_text(view), data=DocumentOutput.model_validate(view, from_attributes=True))

    async def rag_list_collections(
        ctx: Context,
        folder: Annotated[str | None, Field(description="A folder inside the allowed roots to look in (default: "
                                                        "every allowed root).", max_length=4096)] = None,
    ) -> ToolResult:
        """List the document collections (JSON arrays, {"documents": [...]} files and JSON Lines files whose
        records have content/page_body/text or title) under the allowed roots or one folder, with each one's
        json_path to pass to the other tools, its format, size, number of documents, and index state (not
        indexed, lexical ready, semantic x%, complete, out of date). Use it before rag_search when the
        collection's path is not known. Reads only; bounded: at most 6 folders deep, 20,000 entries, 3 s,
        200 collections (a note says when a bound was hit)."""
        start = resolve_local_path(folder, kind="directory") if folder else None
        if start is not None and not start.is_dir():
            raise InputError(f"{folder!r} is a file, not a folder")
        listing = await in_worker(ctx, lambda _job: rag.collections_under(start))
        return ToolResult(text=collections_text(listing),
                          data=CollectionsOutput.model_validate(listing, from_attributes=True))

    for fn, title, output in ((rag_search, "Search a collection", SearchOutput),
                              (rag_get_context, "Context for a query", ContextOutput),
                              (rag_document_stats, "Collection statistics", StatsOutput),
                              (rag_get_document, "Read a whole document", DocumentOutput),
                              (rag_get_neighbours, "Chunks around a citation", DocumentOutput),
                              (rag_list_collections, "List collections", CollectionsOutput)):
        add_tool(server, fn, title=title, output=output, annotations=READ_ONLY_LOCAL)
    return server

