"""Hybrid retrieval: BM25 (FTS5) and dense cosine rankings fused by weighted reciprocal rank, then
the reference's diversity rule. Lexical matching cannot bridge languages, so when the query has no
Chinese but the collection mostly does, the dense ranking carries the weight; otherwise lexical
leads and the (static, weaker) dense ranking refines. Scores are normalised to 0-1."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from servers.rag import embedders, tokens
from servers.rag.index import CollectionIndex

# numpy's OpenBLAS threads spin after each product and starve the e5 encoder's OpenMP threads on 2
# cores (measured: the e5 query went from 17 ms to 55 ms); the products here are small enough for one.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

RRF_K = 60
CANDIDATES = 200
_CJK = re.compile(r"[\u4e00-\u9fff]")


@dataclass
class Hit:
    chunk_id: int
    doc_index: int
    chunk_index: int
    title: str
    text: str
    score: float
    lexical_rank: int | None
    dense_rank: int | None


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


def query_terms(index: CollectionIndex, query: str) -> list[str]:
    """The query's tokens that occur in the collection, without the very common ones (in more than 5 %
    of chunks and more than 2,000 chunks) when rarer ones are there: BM25 gives common terms almost
    no weight, but scoring their long posting lists is what made OR queries take 55 ms on 77,000
    chunks (14 ms without them)."""
    terms = sorted(set(tokens.tokenize(query)))
    if not terms:
        return []
    marks = ",".join("?" * len(terms))
    frequency = dict(index.db().execute(f"SELECT term, doc FROM lexical_vocab WHERE term IN ({marks})",
                                        terms).fetchall())
    present = [t for t in terms if frequency.get(t)]
    total = index.state().chunks or 1
    rare = [t for t in present if frequency[t] <= max(COMMON_SHARE * total, COMMON_MINIMUM)]
    if rare:
        return rare
    return sorted(present, key=lambda t: frequency[t])[:3]


def lexical_ranking(index: CollectionIndex, query: str, limit: int = CANDIDATES) -> list[int]:
    terms = query_terms(index, query)
    if not terms:
        return []
    expression = " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)
    rows = index.db().execute("SELECT rowid FROM lexical WHERE lexical MATCH ? ORDER BY bm25(lexical) LIMIT ?",
                              (expression, limit)).fetchall()
    return [row[0] for row in rows]


def dense_ranking(index: CollectionIndex, query: str, limit: int = CANDIDATES) -> list[int]:
    import numpy as np

    vectors = index.vectors()
    model = embedders.get(index.embedder) if vectors is not None else None
    if vectors is None or model is None:
        return []
    query_vector = model.embed([query])[0]
    scores = vectors @ query_vector
    count = min(limit, scores.shape[0])
    top = np.argpartition(-scores, count - 1)[:count]
    return [int(i) for i in top[np.argsort(-scores[top])]]


def document_ranking(index: CollectionIndex, query: str, limit: int = 50) -> list[int]:
    import numpy as np

    vectors = index.document_vectors()
    if vectors is None:
        return []
    query_vector = embedders.document_embedder().embed_query(query)
    scores = vectors @ query_vector
    count = min(limit, scores.shape[0])
    top = np.argpartition(-scores, count - 1)[:count]
    return [int(i) for i in top[np.argsort(-scores[top])]]


def _best_chunks_of(index: CollectionIndex, documents: list[int], query: str) -> dict[int, int]:
    """For documents found only at document level: the chunk to show (the one closest to the query by
    the chunk embedder when there is one, else the first)."""

    if not documents:
        return {}
    marks = ",".join("?" * len(documents))
    rows = index.db().execute(f"SELECT id, doc_index FROM chunks WHERE doc_index IN ({marks}) ORDER BY id",
                              documents).fetchall()
    vectors = index.vectors()
    model = embedders.get(index.embedder) if vectors is not None else None
    query_vector = model.embed([query])[0] if model is not None else None
    best: dict[int, tuple[float, int]] = {}
    for chunk_id, doc in rows:
        score = float(vectors[chunk_id] @ query_vector) if query_vector is not None else -float(chunk_id)
        if doc not in best or score > best[doc][0]:
            best[doc] = (score, chunk_id)
    return {doc: chunk_id for doc, (_score, chunk_id) in best.items()}


def _load_hits(index: CollectionIndex, scored: list[tuple[int, float, int | None, int | None]]) -> list[Hit]:
    if not scored:
        return []
    ids = [chunk_id for chunk_id, *_ in scored]
    marks = ",".join("?" * len(ids))
    rows = index.db().execute(
        f"SELECT c.id, c.doc_index, c.chunk_index, d.title, c.text FROM chunks c JOIN docs d "
        f"ON d.doc_index = c.doc_index WHERE c.id IN ({marks})", ids).fetchall()
    by_id = {row[0]: row for row in rows}
    hits = []
    for chunk_id, score, lexical_rank, dense_rank in scored:
        row = by_id.get(chunk_id)
        if row:
            hits.append(Hit(chunk_id, row[1], row[2], row[3] or "", row[4], score, lexical_rank, dense_rank))
    return hits


def diversify(hits: list[Hit], top_k: int, min_docs: int, max_per_doc: int) -> list[Hit]:
    """The best chunk of at least `min_docs` documents first, then the next best chunks with at most
    `max_per_doc` per document; the result is sorted by score."""
    chosen: list[Hit] = []
    per_doc: dict[int, int] = {}
    for hit in hits:  # one per document until min_docs documents are in
        if len(per_doc) >= min(min_docs, top_k):
            break
        if hit.doc_index not in per_doc:
            chosen.append(hit)
            per_doc[hit.doc_index] = 1
    for hit in hits:
        if len(chosen) >= top_k:
            break
        if hit in chosen or per_doc.get(hit.doc_index, 0) >= max_per_doc:
            continue
        chosen.append(hit)
        per_doc[hit.doc_index] = per_doc.get(hit.doc_index, 0) + 1
    return sorted(chosen, key=lambda h: h.score, reverse=True)


def search(index: CollectionIndex, query: str, *, top_k: int, diverse: bool, min_docs: int, max_per_doc: int,
           title_contains: str | None = None) -> list[Hit]:
    state = index.state()
    lexical = lexical_ranking(index, query)
    dense = dense_ranking(index, query) if state.dense_complete else []
    documents = document_ranking(index, query) if state.document_index_complete else []
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
        chunk_docs = dict(index.db().execute(
            f"SELECT id, doc_index FROM chunks WHERE id IN ({','.join('?' * len(fused))})", list(fused)).fetchall()
        ) if fused else {}
        best_of_doc: dict[int, int] = {}
        for chunk_id, _values in sorted(fused.items(), key=lambda item: item[1][0], reverse=True):
            best_of_doc.setdefault(chunk_docs.get(chunk_id, -1), chunk_id)
        missing = [doc for doc in documents if doc not in best_of_doc]
        best_of_doc.update(_best_chunks_of(index, missing, query))
        for rank, doc in enumerate(documents):
            chunk_id = best_of_doc.get(doc)
            if chunk_id is not None:
                fused.setdefault(chunk_id, [0.0, None, None])
                fused[chunk_id][0] += w_doc / (RRF_K + rank + 1)
    best_possible = (w_lex + w_dense + w_doc) / (RRF_K + 1)
    ordered = sorted(fused.items(), key=lambda item: item[1][0], reverse=True)
    keep = max(top_k * 10, 100) if not title_contains else CANDIDATES * 2  # enough for diversity
    scored = [(cid, round(v[0] / best_possible, 4), v[1], v[2]) for cid, v in ordered[:keep]]
    hits = _load_hits(index, scored)
    if title_contains:
        needle = title_contains.lower()
        hits = [hit for hit in hits if needle in hit.title.lower()]
    if diverse:
        return diversify(hits, top_k, min_docs, max_per_doc)
    return hits[:top_k]


def neighbours(index: CollectionIndex, doc_index: int, chunk_index: int, around: int) -> list[Hit]:
    rows = index.db().execute(
        "SELECT c.id, c.doc_index, c.chunk_index, d.title, c.text FROM chunks c JOIN docs d "
        "ON d.doc_index = c.doc_index WHERE c.doc_index = ? AND c.chunk_index BETWEEN ? AND ? "
        "ORDER BY c.chunk_index", (doc_index, chunk_index - around, chunk_index + around)).fetchall()
    return [Hit(r[0], r[1], r[2], r[3] or "", r[4], 0.0, None, None) for r in rows]


def document(index: CollectionIndex, doc_index: int) -> tuple[str, str | None, list[str]]:
    row = index.db().execute("SELECT title, url FROM docs WHERE doc_index = ?", (doc_index,)).fetchone()
    if row is None:
        return "", None, []
    texts = [r[0] for r in index.db().execute(
        "SELECT text FROM chunks WHERE doc_index = ? ORDER BY chunk_index", (doc_index,)).fetchall()]
    return row[0] or "", row[1], texts
