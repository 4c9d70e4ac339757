"""tool-rag: search a document collection, in the reference's text layout, over a persistent index."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field

from servers.rag import search as searching
from servers.rag.index import CollectionIndex, IndexCache
from servers.rag.loader import iter_records
from shared import budget
from shared.errors import InputError
from shared.inputs import display_path, resolve_local_path
from shared.server import READ_ONLY_LOCAL, Progress, ToolResult, add_tool, create_server
from shared.transport import run_server

NAME = "tool-rag"
RULE = "=" * 60

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


class HitModel(BaseModel):
    citation: str
    relevance_score: float
    document_index: int
    chunk_index: int
    title: str
    content: str
    lexical_rank: int | None
    dense_rank: int | None


class SearchOutput(BaseModel):
    query: str
    source_file: str
    results: list[HitModel]
    index: dict[str, Any]
    notes: list[str]


class ContextOutput(BaseModel):
    query: str
    source_file: str
    context: str
    sources: list[HitModel]
    tokens: int
    index: dict[str, Any]
    notes: list[str]


class StatsOutput(BaseModel):
    source_file: str
    documents: int
    chunks: int
    lexical_complete: bool
    dense_vectors: int
    dense_complete: bool
    embedder: str
    document_vectors: int = Field(description="Documents whose lead is in the cross-lingual document index.")
    document_index_complete: bool
    document_embedder: str
    cjk_share: float
    build_seconds: float | None
    dense_error: str | None


class DocumentOutput(BaseModel):
    source_file: str
    document_index: int
    title: str
    url: str | None
    chunks: list[HitModel]
    text: str
    total_chars: int
    next_start_index: int | None


def citation(title: str, chunk_index: int) -> str:
    return f'[long_context: "{title[:50]}", chunk {chunk_index}]'


def _hit_model(hit: searching.Hit) -> HitModel:
    return HitModel(citation=citation(hit.title, hit.chunk_index), relevance_score=hit.score,
                    document_index=hit.doc_index, chunk_index=hit.chunk_index, title=hit.title, content=hit.text,
                    lexical_rank=hit.lexical_rank, dense_rank=hit.dense_rank)


def collection_path(raw: str) -> Path:
    text = raw.strip()
    if text.endswith(".chunks.db"):
        text = text[: -len(".chunks.db")]  # the reference's cache file: use the JSON beside it
    path = resolve_local_path(text, kind="collection")
    return path


def build(engines: IndexCache | None = None):
    indexes = engines or IndexCache()
    server = create_server(NAME, "Searches large document collections (JSON/JSONL) with stable citations; hybrid "
                                 "lexical + semantic retrieval for Chinese and English.")

    async def ready(json_path: str, ctx: Context | None) -> tuple[CollectionIndex, list[str], Path]:
        path = collection_path(json_path)
        progress = Progress(ctx).report_sync if ctx is not None else None
        stop = threading.Event()

        def work() -> CollectionIndex:
            index = indexes.get(path)
            index.build_lexical(progress=progress, stop=stop)
            index.start_dense()
            return index

        try:
            index = await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
        finally:
            stop.set()
        state = index.state()
        notes = []
        if index.embedder != "none" and not state.dense_complete:
            done = state.dense_vectors / state.chunks if state.chunks else 0
            notes.append(f"semantic indexing continues in the background ({done:.0%} of {state.chunks} chunks); these "
                         "results are lexical only")
        elif index.doc_embedder != "none" and not state.document_index_complete:
            done = state.document_vectors / state.documents if state.documents else 0
            notes.append(f"the cross-lingual document index is still being built ({done:.0%} of {state.documents} "
                         "documents); questions in another language than the documents may miss until it is done")
        if index.dense_error:
            notes.append(f"semantic indexing failed ({index.dense_error}); results are lexical only")
        return index, notes, path

    def index_info(index: CollectionIndex) -> dict[str, Any]:
        state = index.state()
        return {"documents": state.documents, "chunks": state.chunks, "embedder": state.embedder,
                "dense_complete": state.dense_complete}

    async def run_search(query: str, json_path: str, ctx: Context | None, **options: Any):
        index, notes, path = await ready(json_path, ctx)
        hits = await anyio.to_thread.run_sync(
            lambda: searching.search(index, query, **options), abandon_on_cancel=True)
        return index, notes, path, hits

    async def rag_search(query: Query, json_path: JsonPath, ctx: Context, top_k: TopK = 10, diverse: Diverse = True,
                         min_docs: MinDocs = 5, max_per_doc: MaxPerDoc = 2,
                         title_contains: TitleFilter = None) -> ToolResult:
        """Search a document collection and return the most relevant chunks with stable citations
        [long_context: "<title>", chunk N] (cite them as given).

        Hybrid retrieval: BM25 over Chinese words (jieba) and English words, plus semantic similarity, fused by
        reciprocal rank; English questions about Chinese collections lean on the semantic side. With diverse
        (default) results cover at least min_docs documents and at most max_per_doc chunks each. The first call
        on a collection builds a persistent index (progress is reported; about a minute for 12,000 documents);
        later calls, and other processes, reuse it. Document Index is the record's position in the file, Chunk
        Index its chunk number.
        """
        query = query.strip()
        if not query:
            raise InputError("the query is empty")
        index, notes, path, hits = await run_search(query, json_path, ctx, top_k=top_k, diverse=diverse,
                                                    min_docs=min_docs, max_per_doc=max_per_doc,
                                                    title_contains=title_contains)
        shown = display_path(path)
        lines = ["=== RAG Search Results ===", f"Query: {query!r}", f"Source File: {json_path}",
                 f"Results Found: {len(hits)}", ""]
        lines += [f"[note: {note}]" for note in notes]
        for number, hit in enumerate(hits, start=1):
            cite = citation(hit.title, hit.chunk_index)
            lines += ["", RULE, f"Result {number}", f"Citation: {cite}", RULE,
                      f"Relevance Score: {hit.score:.3f}", f"Document Index: {hit.doc_index}",
                      f"Chunk Index: {hit.chunk_index}", f"Title: {hit.title}", "", "--- Content ---",
                      f"(Cite as: {cite})", hit.text, ""]
        if not hits:
            lines.append("No chunk matches the query; try other words or the other language.")
        data = SearchOutput(query=query, source_file=shown, results=[_hit_model(h) for h in hits],
                            index=index_info(index), notes=notes)
        return ToolResult(text="\n".join(lines), data=data)

    async def rag_get_context(query: Query, json_path: JsonPath, ctx: Context, max_tokens: MaxTokens = 4000,
                              top_k: TopK = 10, diverse: Diverse = True, min_docs: MinDocs = 5,
                              max_per_doc: MaxPerDoc = 2) -> ToolResult:
        """Gather the passages most relevant to a query into one context block within a token budget (counted
        with a real tokenizer, Chinese included), for synthesis. Adjacent chunks of one document are merged;
        each source keeps its citation."""
        query = query.strip()
        if not query:
            raise InputError("the query is empty")
        index, notes, path, hits = await run_search(query, json_path, ctx, top_k=top_k, diverse=diverse,
                                                    min_docs=min_docs, max_per_doc=max_per_doc)
        merged: list[searching.Hit] = []
        for hit in sorted(hits, key=lambda h: (h.doc_index, h.chunk_index)):
            last = merged[-1] if merged else None
            if last and last.doc_index == hit.doc_index and hit.chunk_index == last.chunk_index + 1:
                last.text = f"{last.text}\n{hit.text}"
                last.score = max(last.score, hit.score)
                last.chunk_index = hit.chunk_index
                continue
            merged.append(searching.Hit(**hit.__dict__))
        merged.sort(key=lambda h: h.score, reverse=True)
        shown = display_path(path)
        header = ["=== RAG Context for Query ===", f"Query: {query!r}", f"Source File: {shown}"]
        blocks: list[str] = []
        used: list[searching.Hit] = []
        spent = budget.count_tokens("\n".join(header)) + 50
        for number, hit in enumerate(merged, start=1):
            block = "\n".join(["", "=" * 50, f"Source {number}", f"Citation: {citation(hit.title, hit.chunk_index)}",
                               f"Title: {hit.title}", f"Document Index: {hit.doc_index}",
                               f"Chunk Index: {hit.chunk_index}", f"Relevance Score: {hit.score:.3f}", "=" * 50, "",
                               hit.text])
            cost = budget.count_tokens(block)
            if spent + cost > max_tokens:
                room = max_tokens - spent
                if room > 80:
                    blocks.append(budget.prefix_within(block, room) + "\n[... cut to the token budget]")
                    used.append(hit)
                break
            blocks.append(block)
            used.append(hit)
            spent += cost
        text = "\n".join([*header, f"Documents Retrieved: {len(used)}", *[f"[note: {n}]" for n in notes], "",
                          "--- Retrieved Context with Sources ---", *blocks])
        data = ContextOutput(query=query, source_file=shown, context="\n".join(blocks),
                             sources=[_hit_model(h) for h in used], tokens=budget.count_tokens(text),
                             index=index_info(index), notes=notes)
        return ToolResult(text=text, data=data)

    async def rag_document_stats(json_path: JsonPath, ctx: Context) -> ToolResult:
        """Describe a collection and its index: documents, chunks, whether the lexical and semantic indexes are
        complete (semantic indexing runs in the background after the first call), the embedder, the share of
        Chinese text, and how long the build took. Builds the index if it does not exist yet."""
        index, notes, path = await ready(json_path, ctx)
        state = index.state()
        data = StatsOutput(source_file=display_path(path), documents=state.documents, chunks=state.chunks,
                           lexical_complete=state.lexical_complete, dense_vectors=state.dense_vectors,
                           dense_complete=state.dense_complete, embedder=state.embedder,
                           document_vectors=state.document_vectors,
                           document_index_complete=state.document_index_complete,
                           document_embedder=state.document_embedder, cjk_share=state.cjk_share,
                           build_seconds=state.build_seconds, dense_error=index.dense_error)
        lines = ["=== RAG Document Statistics ===", f"Source File: {data.source_file}",
                 f"Documents: {state.documents}", f"Chunks: {state.chunks}",
                 f"Average chunks per document: {state.chunks / state.documents:.1f}" if state.documents else "",
                 f"Lexical index: {'complete' if state.lexical_complete else 'building'}",
                 f"Semantic index ({state.embedder}): "
                 + ("complete" if state.dense_complete else "off" if state.embedder == "none" else
                    f"{state.dense_vectors}/{state.chunks} chunks"),
                 f"Document index ({state.document_embedder}): "
                 + ("complete" if state.document_index_complete else "off" if state.document_embedder == "none"
                    else f"{state.document_vectors}/{state.documents} documents"),
                 f"Chinese share of text: {state.cjk_share:.0%}",
                 f"Lexical build time: {state.build_seconds} s" if state.build_seconds else ""]
        lines += [f"[note: {note}]" for note in notes]
        return ToolResult(text="\n".join(line for line in lines if line), data=data)

    async def rag_get_document(
        json_path: JsonPath,
        document_index: Annotated[int, Field(description="The Document Index from a search result.", ge=0)],
        ctx: Context,
        start_index: Annotated[int, Field(description="First character to return.", ge=0)] = 0,
        max_chars: Annotated[int | None, Field(description="Most characters to return.", ge=100,
                                               le=200_000)] = None,
    ) -> ToolResult:
        """Read a whole document of the collection by its Document Index (from a citation), in pages."""
        index, _notes, path = await ready(json_path, ctx)

        def find() -> Any:
            return next((r for r in iter_records(path) if r.index == document_index), None)

        record = await anyio.to_thread.run_sync(find, abandon_on_cancel=True)
        if record is None:
            raise InputError(f"no document with index {document_index} (the collection has "
                             f"{index.state().documents} documents, numbered from 0)")
        page = budget.page_of(record.body, start_index, max_chars)
        footer = page.continuation_hint() or f"[end of document: {page.total_chars} characters]"
        url = f"URL: {record.url}\n" if record.url else ""
        text = f"Title: {record.title}\nDocument Index: {record.index}\n{url}\n{page.text}\n\n{footer}"
        data = DocumentOutput(source_file=display_path(path), document_index=record.index, title=record.title,
                              url=record.url, chunks=[], text=page.text, total_chars=page.total_chars,
                              next_start_index=page.end_index if page.has_more else None)
        return ToolResult(text=text, data=data)

    async def rag_get_neighbours(
        json_path: JsonPath,
        document_index: Annotated[int, Field(description="The Document Index from a citation.", ge=0)],
        chunk_index: Annotated[int, Field(description="The Chunk Index from a citation.", ge=0)],
        ctx: Context,
        around: Annotated[int, Field(description="How many chunks before and after (0-5).", ge=0, le=5)] = 1,
    ) -> ToolResult:
        """Read the chunks around a cited chunk (same document), each with its citation."""
        index, _notes, path = await ready(json_path, ctx)
        hits = searching.neighbours(index, document_index, chunk_index, around)
        if not hits:
            raise InputError(f"no chunk {chunk_index} in document {document_index}")
        parts = [f"{citation(h.title, h.chunk_index)}\n{h.text}" for h in hits]
        data = DocumentOutput(source_file=display_path(path), document_index=document_index, title=hits[0].title,
                              url=None, chunks=[_hit_model(h) for h in hits], text="\n\n".join(h.text for h in hits),
                              total_chars=sum(len(h.text) for h in hits), next_start_index=None)
        return ToolResult(text="\n\n".join(parts), data=data)

    for fn, title, output in ((rag_search, "Search a collection", SearchOutput),
                              (rag_get_context, "Context for a query", ContextOutput),
                              (rag_document_stats, "Collection statistics", StatsOutput),
                              (rag_get_document, "Read a whole document", DocumentOutput),
                              (rag_get_neighbours, "Chunks around a citation", DocumentOutput)):
        add_tool(server, fn, title=title, output=output, annotations=READ_ONLY_LOCAL)
    return server


def main() -> None:
    from servers.registry import entry

    run_server(NAME, entry(NAME).port, build)
