"""Retrieval: BM25 over jieba words, with the Chinese headwords of an English question's words added
from CC-CEDICT, and the USE chunk vectors for questions in another language than the collection,
fused by weighted reciprocal rank at chunk level; then the reference's diversity rule.

The weights were chosen on the tuning third of bench/rag_questions.jsonl and hold on the other two
thirds (bench/rag_quality.py): a question in the collection's language is ranked by BM25 alone
(every vector weight tried made Chinese questions worse, so their query is not even embedded); a
question in another language (an English question about a mostly Chinese collection, or the
reverse) gets lexical 1 : vectors 2, because dictionary headwords reach many of its documents but
the vectors reach more. Scores are normalised to 0-1.

While the chunk vectors are being built, cross-lingual questions are answered by the lexical side
with dictionary translation alone (and say so): a vector ranking that knows only part of the
collection pushes every document it does not know down, which measured far worse than no vectors
(English R@10 .23 with a quarter of the vectors, against .93 without any). Once at most 1 % of the
chunks lack a vector (records appended since), the vectors rank, and each chunk without one takes
its lexical rank in the vector ranking, so new records are not pushed down.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from servers.rag import embedders, tokens, translation
from servers.rag.collection import Collection
from servers.rag.store import IndexState, Store, StoredChunk
from shared import cjk
from shared.errors import NotConfigured, leaf_exception, redact

log = logging.getLogger("toolsuite.rag.search")

RRF_K = 60
CANDIDATES = 200
CROSS_LINGUAL_DENSE_WEIGHT = 2.0  # against lexical 1.0; the best of 0-6 on the tuning split (bench/rag_quality.py)
CHINESE_COLLECTION = 0.3  # share of Chinese characters from which a collection counts as Chinese


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


@dataclass(frozen=True)
class Ranking:
    hits: list[Passage]
    notes: list[str]  # what the agent should know about how these were found


def cross_lingual(query: str, cjk_share: float) -> bool:
    """Whether the question is in another language than most of the collection."""
    return cjk.has_han(query) != (cjk_share >= CHINESE_COLLECTION)


COMMON_SHARE = 0.05
COMMON_MINIMUM = 2000  # small collections are fast anyway: keep every term


def query_terms(store: Store, terms: Sequence[str], chunks: int) -> list[str]:
    """The terms that occur in the collection, without the very common ones (in more than 5 % of
    chunks and more than 2,000 chunks) when rarer ones are there: BM25 gives common terms almost no
    weight, but scoring their long posting lists is what made OR queries take 55 ms on 77,000
    chunks (14 ms without them). Dictionary headwords go through the same filter."""
    unique = sorted(set(terms))
    frequency = store.term_counts(unique)
    present = [t for t in unique if frequency.get(t)]
    rare = [t for t in present if frequency[t] <= max(COMMON_SHARE * (chunks or 1), COMMON_MINIMUM)]
    if rare:
        return rare
    return sorted(present, key=lambda t: frequency[t])[:3]


def translated_terms(store: Store, query: str, cjk_share: float) -> list[str]:
    """The Chinese headwords of an English question's words that the collection contains (none for a
    question with Chinese in it, or a collection without Chinese). `NotConfigured` when the
    dictionary package is missing."""
    if cjk.has_han(query) or cjk_share <= 0:
        return []
    return translation.dictionary().translate(query, store.term_counts)


def lexical_ranking(store: Store, query: str, chunks: int, added: Sequence[str] = (),
                    limit: int = CANDIDATES) -> list[int]:
    """Chunk ids by BM25 of the query's words (and `added` terms) in one OR query, best first."""
    return store.lexical_ranking(query_terms(store, tokens.tokenize(query) + list(added), chunks), limit)


def first_unembedded(store: Store) -> int | None:
    """The first chunk id without a vector: vectors are added in chunk-id order, so every chunk from
    there on has none (None when all have one)."""
    rows = store.texts_to_embed(1)
    return rows[0][0] if rows else None


def with_unembedded(dense: list[int], lexical: list[int], first_missing: int | None) -> list[int]:
    """The vector ranking with each lexical candidate that has no vector at its lexical rank, so a
    record appended since the vectors were built is not pushed down for lack of one."""
    if first_missing is None:
        return dense
    return at_lexical_rank(dense, lexical, lambda chunk_id: chunk_id < first_missing)


def at_lexical_rank(dense: list[int], lexical: list[int], has_vector: Callable[[int], bool]) -> list[int]:
    """`dense` (chunks that have a vector) with every lexical candidate that has none inserted at its
    lexical rank."""
    missing = [(rank, chunk_id) for rank, chunk_id in enumerate(lexical) if not has_vector(chunk_id)]
    merged: list[int] = []
    ranked = iter(dense)
    waiting = 0
    while True:
        if waiting < len(missing) and missing[waiting][0] <= len(merged):
            merged.append(missing[waiting][1])
            waiting += 1
            continue
        following = next(ranked, None)
        if following is None:
            merged += [chunk_id for _rank, chunk_id in missing[waiting:]]
            return merged
        merged.append(following)


def semantic_off_note(reason: str) -> str:
    return (f"semantic search is off ({reason}): a question in another language than the collection is matched "
            "by dictionary translation only")


def vectors_building_note(state: IndexState) -> str:
    done = state.dense_vectors / state.chunks if state.chunks else 0.0
    return (f"the semantic vectors are still being built in the background ({done:.0%} of {state.chunks:,} "
            "chunks); until they are complete, a question in another language than the collection is matched "
            "by dictionary translation only and may miss documents")


def unembedded_note(state: IndexState) -> str:
    return (f"{state.chunks - state.dense_vectors} of {state.chunks} chunks (new or changed records) have no vector "
            "yet: they take their lexical rank among the vector matches until the background build reaches them")


def query_vector(collection: Collection, query: str) -> Any:
    model = embedders.get(collection.embedder)
    if model is None:
        raise NotConfigured("no embedder is configured")
    return model.embed([query])[0]


def dense_ranking(collection: Collection, query: str, limit: int = CANDIDATES) -> list[int]:
    """Chunk ids by cosine similarity of their vectors to the query's, among chunks that have one."""
    return collection.store.nearest(query_vector(collection, query), limit)


def fuse(rankings: Sequence[tuple[list[int], float]], k: int = RRF_K) -> dict[int, float]:
    """Weighted reciprocal-rank fusion: chunk id -> sum of weight / (k + rank)."""
    scores: dict[int, float] = {}
    for ranking, weight in rankings:
        if weight:
            for rank, chunk_id in enumerate(ranking, start=1):
                scores[chunk_id] = scores.get(chunk_id, 0.0) + weight / (k + rank)
    return scores


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


def _failure(exc: BaseException) -> str:
    cause = leaf_exception(exc)
    return redact(f"{type(cause).__name__}: {str(cause)[:200]}")


@dataclass(frozen=True)
class Fused:
    scores: dict[int, float]  # chunk id -> fused score
    lexical: list[int]  # chunk ids, best first
    dense: list[int]
    best_possible: float  # the score of a chunk first in every ranking that counted
    notes: list[str]


def rank(collection: Collection, query: str) -> Fused:
    store = collection.store
    state = collection.state()
    notes: list[str] = []
    across = cross_lingual(query, state.cjk_share)
    added: list[str] = []
    try:
        added = translated_terms(store, query, state.cjk_share)
    except NotConfigured as exc:
        if across:
            notes.append(f"dictionary translation is off ({exc}): English words cannot match Chinese text "
                         "lexically, so English questions about Chinese documents rely on the semantic vectors")
    lexical = lexical_ranking(store, query, state.chunks, added)
    dense: list[int] = []
    weight = CROSS_LINGUAL_DENSE_WEIGHT if across else 0.0
    if weight and collection.embedder == "none":
        reason = embedders.unavailable()
        if reason:
            notes.append(semantic_off_note(reason))
    elif weight and not collection.dense_ready(state):
        notes.append(vectors_building_note(state))
    elif weight:
        try:
            dense = dense_ranking(collection, query)
        except Exception as exc:  # an endpoint down or a model that fails to load: lexical still answers
            log.warning("query embedding failed: %s", _failure(exc))
            notes.append(f"the question could not be embedded ({_failure(exc)}); these results are lexical only")
        else:
            # Read again: the builder may have added vectors since `state` was read (a small collection
            # completes within the call), and the note must count what this ranking used.
            first_missing = None if state.dense_complete else first_unembedded(store)
            if first_missing is not None:
                dense = with_unembedded(dense, lexical, first_missing)
                notes.append(unembedded_note(collection.state()))
    return Fused(scores=fuse([(lexical, 1.0), (dense, weight)]), lexical=lexical, dense=dense,
                 best_possible=(1.0 + (weight if dense else 0.0)) / (RRF_K + 1), notes=notes)


def search(collection: Collection, query: str, *, top_k: int, diverse: bool, min_docs: int, max_per_doc: int,
           title_contains: str | None = None) -> Ranking:
    fused = rank(collection, query)
    lexical_ranks = {chunk_id: r for r, chunk_id in enumerate(fused.lexical, start=1)}
    dense_ranks = {chunk_id: r for r, chunk_id in enumerate(fused.dense, start=1)}
    ordered = sorted(fused.scores.items(), key=lambda item: item[1], reverse=True)
    keep = max(top_k * 10, 100) if not title_contains else CANDIDATES * 2  # enough for diversity
    scored = ordered[:keep]
    by_id = {chunk.chunk_id: chunk for chunk in collection.store.chunks([chunk_id for chunk_id, _s in scored])}
    hits = [Passage.of(by_id[chunk_id], round(score / fused.best_possible, 4), lexical_ranks.get(chunk_id),
                       dense_ranks.get(chunk_id))
            for chunk_id, score in scored if chunk_id in by_id]
    if title_contains:
        needle = title_contains.lower()
        hits = [hit for hit in hits if needle in hit.title.lower()]
    chosen = diversify(hits, top_k, min_docs, max_per_doc) if diverse else hits[:top_k]
    return Ranking(chosen, fused.notes)
