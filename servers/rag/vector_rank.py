"""Exact vector rankings over a matrix whose row i is chunk (or document) i, shared by the stores that
rank in the process: the SQLite store (its memory-mapped vector files) and the PostgreSQL store (a
copy of its pgvector rows, up to TOOLSUITE_RAG_PG_EXACT_ROWS). The same numpy products on the same
row layout give the same scores to the last bit, so both stores order alike, near-ties included.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from servers.rag.numeric import numpy


def nearest_rows(matrix: Any, mask: Any, vector: Any, limit: int) -> list[int]:
    """Rows where `mask` is set, by similarity to `vector`, best first, at most `limit`. Equal scores
    (duplicate records have equal vectors) go to the lower row, at the cut too."""
    np = numpy()
    count = min(limit, int(mask.sum()))
    if count <= 0:
        return []
    scores = np.where(mask, matrix @ vector, -np.inf)
    top = np.argpartition(-scores, count - 1)[:count]
    floor = scores[top].min()
    top = np.concatenate([np.flatnonzero(scores > floor), np.flatnonzero(scores == floor)])[:count]
    return [int(i) for i in top[np.lexsort((top, -scores[top]))]]


def best_chunks(rows: Iterable[tuple[int, int]], matrix: Any | None, vector: Any | None) -> dict[int, int]:
    """doc -> the chunk closest to `vector` among (chunk id, doc) `rows` given in chunk id order:
    chunks with a vector first, by similarity; otherwise the document's earliest chunk."""
    covered = matrix.shape[0] if matrix is not None and vector is not None else 0
    best: dict[int, tuple[tuple[int, float], int]] = {}
    for chunk_id, doc in rows:
        score = (1, float(matrix[chunk_id] @ vector)) if chunk_id < covered else (0, -float(chunk_id))
        if doc not in best or score > best[doc][0]:
            best[doc] = (score, chunk_id)
    return {doc: chunk_id for doc, (_score, chunk_id) in best.items()}
