"""tool-rag: search a document collection. Interface complete; engine pending."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from shared.server import READ_ONLY_LOCAL, PendingOutput, add_tool, create_server, pending_tool
from shared.transport import run_server

NAME = "tool-rag"

Query = Annotated[str, Field(description="What to look for: keywords or a question, Chinese or English.",
                             min_length=1, max_length=2000)]
JsonPath = Annotated[str, Field(
    description="Path of the collection: a JSON array of records, {\"documents\": [...]}, or JSON Lines; "
    "each record has content/page_body/text and optional title/url. A <json>.chunks.db path maps to its JSON.",
    min_length=1, max_length=4096)]
TopK = Annotated[int, Field(description="How many chunks to return (1-100).", ge=1, le=100)]
Diverse = Annotated[bool, Field(description="Spread results over documents (at least min_docs documents, "
                                "at most max_per_doc chunks each) instead of the plain top_k.")]
MinDocs = Annotated[int, Field(description="With diverse, the least number of distinct documents.", ge=1, le=100)]
MaxPerDoc = Annotated[int, Field(description="With diverse, the most chunks from one document.", ge=1, le=100)]
MaxTokens = Annotated[int, Field(description="Token budget of the returned context (100-20000).",
                                 ge=100, le=20000)]


def rag_search(query: Query, json_path: JsonPath, top_k: TopK = 10, diverse: Diverse = True,
               min_docs: MinDocs = 5, max_per_doc: MaxPerDoc = 2) -> None:
    """Search a document collection (hybrid lexical + semantic, Chinese and English) and return the most
    relevant chunks with stable citations [long_context: "<title>", chunk N]."""
    return pending_tool(NAME, "rag_search")


def rag_get_context(query: Query, json_path: JsonPath, max_tokens: MaxTokens = 4000, top_k: TopK = 10,
                    diverse: Diverse = True, min_docs: MinDocs = 5, max_per_doc: MaxPerDoc = 2) -> None:
    """Gather the passages most relevant to a query into one context block within a token budget, for
    synthesis; each passage keeps its citation."""
    return pending_tool(NAME, "rag_get_context")


def rag_document_stats(json_path: JsonPath) -> None:
    """Describe a collection: documents, chunks, index state and embedder."""
    return pending_tool(NAME, "rag_document_stats")


def build():
    server = create_server(NAME, "Searches large document collections (JSON/JSONL) with citations.")
    for fn, title in ((rag_search, "Search a collection"), (rag_get_context, "Context for a query"),
                      (rag_document_stats, "Collection statistics")):
        add_tool(server, fn, title=title, output=PendingOutput, annotations=READ_ONLY_LOCAL)
    return server


def main() -> None:
    from servers.registry import entry

    run_server(NAME, entry(NAME).port, build)
