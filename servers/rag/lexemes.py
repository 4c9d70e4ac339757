"""BM25 over pre-tokenized terms, computed the way SQLite's FTS5 computes it, for a store that keeps
its own inverted index (the PostgreSQL store): the same words and the same arithmetic give the
same ranking, to the last bit, as the SQLite store.

Words. FTS5 (`unicode61` over the space-joined terms) splits a term again where it holds a
character that is not a letter or a digit: `don't` is indexed as `don` and `t`. `pieces` does the
same, so lexemes, chunk lengths and term statistics agree with the SQLite store.

Postings. Each batch of chunks adds, per lexeme, one packed array of (chunk id, count in the
chunk, chunk length in lexemes) entries: little-endian int32 triples, read straight into numpy.

Scoring follows FTS5's `bm25()` (fts5_aux.c): k1 = 1.2, b = 0.75,
idf = ln((N - n + 0.5) / (n + 0.5)), floored at 1e-6, and per query term
idf * (tf * (k1 + 1)) / (tf + k1 * (1 - b + b * dl / avgdl)), added to the chunk's score in query-term
order, where N is the number of chunks in the lexical index, n the chunks holding the term, dl the
chunk's length and avgdl the mean length; ties go to the lower chunk id, as FTS5's do. Statistics
count every chunk in the index, searchable or not (as FTS5's do), so both stores rank identically
at every moment.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from servers.rag.numeric import numpy

K1 = 1.2
B = 0.75
K1_PLUS_1 = K1 + 1.0  # as FTS5 computes it, in double precision
MIN_IDF = 1e-6

# Longer "words" (a run of letters and digits over 1,000 bytes: hex dumps, minified data) still count
# in their chunk's length but get no postings: no query asks for them, and B-tree keys have a size limit.
MAX_LEXEME_BYTES = 1000

_PIECES = re.compile(r"[^\W_]+")


def pieces(terms: Sequence[str]) -> list[str]:
    """The terms as FTS5's unicode61 tokenizer indexes them (letters and digits kept, anything else
    splits)."""
    out: list[str] = []
    for term in terms:
        if term.isalnum():
            out.append(term)
        else:
            out.extend(_PIECES.findall(term))
    return out


def entry_type() -> Any:
    np = numpy()
    return np.dtype([("chunk", "<i4"), ("count", "<i4"), ("length", "<i4")])


def postings(chunks: Iterable[tuple[int, Sequence[str]]]) -> dict[str, bytes]:
    """lexeme -> packed (chunk id, count, length) entries, in chunk id order, for (chunk id, lexemes)
    pairs given in increasing chunk id order."""
    np = numpy()
    ids: dict[str, int] = {}
    word_ids: list[int] = []
    rows: list[tuple[int, int, int]] = []
    for chunk_id, words in chunks:
        length = len(words)
        for word, count in Counter(words).items():
            if len(word) * 4 > MAX_LEXEME_BYTES and len(word.encode("utf-8")) > MAX_LEXEME_BYTES:
                continue
            word_ids.append(ids.setdefault(word, len(ids)))
            rows.append((chunk_id, count, length))
    if not rows:
        return {}
    entries = np.array(rows, dtype=np.int32).astype("<i4")
    order = np.argsort(np.asarray(word_ids, dtype=np.int64), kind="stable")  # by word, chunk order kept
    entries = entries[order]
    bounds = np.searchsorted(np.asarray(word_ids, dtype=np.int64)[order], np.arange(len(ids) + 1))
    entries = np.ascontiguousarray(entries)
    packed, size = entries.tobytes(), entries.strides[0]
    return {word: packed[bounds[number] * size:bounds[number + 1] * size] for word, number in ids.items()}


def unpack(blobs: Iterable[bytes]) -> Any:
    """One lexeme's entries from its packed fragments."""
    np = numpy()
    kind = entry_type()
    parts = [np.frombuffer(blob, dtype=kind) for blob in blobs]
    return np.concatenate(parts) if len(parts) != 1 else parts[0]


def without(blob: bytes, chunk_ids: Any) -> bytes:
    """A packed fragment less the entries of `chunk_ids`."""
    np = numpy()
    entries = np.frombuffer(blob, dtype=entry_type())
    return entries[~np.isin(entries["chunk"], chunk_ids)].tobytes()


def idf(rows: int, hits: int) -> float:
    value = math.log((rows - hits + 0.5) / (hits + 0.5))
    return value if value > 0.0 else MIN_IDF


def rank(terms: Sequence[str], entries: Mapping[str, Any], rows: int, tokens: int, limit: int) -> list[int]:
    """Chunk ids holding any of `terms`, best BM25 first (ties: lower id first), at most `limit`.
    `entries` maps each term to its unpacked postings; `rows` and `tokens` are the index's chunk and
    lexeme counts."""
    np = numpy()
    present = [t for t in terms if t in entries and len(entries[t])]
    if not present or rows <= 0 or limit <= 0:
        return []
    avgdl = tokens / rows
    size = max(int(entries[t]["chunk"].max()) for t in present) + 1
    scores = np.zeros(size, dtype=np.float64)
    hit = np.zeros(size, dtype=bool)
    for term in present:  # in query order: the additions round as FTS5's do
        found = entries[term]
        weight = idf(rows, len(found))
        tf = found["count"].astype(np.float64)
        length = found["length"].astype(np.float64)
        scores[found["chunk"]] += weight * ((tf * K1_PLUS_1) / (tf + K1 * (1 - B + B * length / avgdl)))
        hit[found["chunk"]] = True
    candidates = np.flatnonzero(hit)
    order = np.lexsort((candidates, -scores[candidates]))[:limit]
    return [int(i) for i in candidates[order]]
