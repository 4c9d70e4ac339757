"""Chunks that always carry new text: sentence-aware for Chinese and English, sized in tokens,
overlapping by at most one sentence and only when the chunk adds new sentences, with the title in
every chunk's indexed text (never a chunk of its own). Numbering is stable per document."""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared import budget, cjk

VERSION = "chunker-3"  # 3: sentences joined by shared/cjk.py's rule
TARGET_TOKENS = 450  # about 400 Chinese characters or 1,800 English ones
_SENTENCE_END = re.compile(r"(?<=[。！？!?；;])|(?<=\.)\s+|\n+")


@dataclass(frozen=True)
class Chunk:
    doc_index: int
    chunk_index: int
    text: str  # the body text shown to agents

    def indexed(self, title: str) -> str:
        return f"{title}\n{self.text}" if title else self.text


def sentences(body: str) -> list[str]:
    parts = [p.strip() for p in _SENTENCE_END.split(body) if p and p.strip()]
    out: list[str] = []
    for part in parts:  # split run-on sentences that alone exceed the target
        while budget.estimate_tokens(part) > TARGET_TOKENS * 1.5:
            cut = max(1, int(len(part) * (TARGET_TOKENS / budget.estimate_tokens(part))))
            out.append(part[:cut])
            part = part[cut:]
        out.append(part)
    return out


def chunk_document(doc_index: int, body: str) -> list[Chunk]:
    units = sentences(body)
    if not units:
        return []
    chunks: list[Chunk] = []
    current: list[str] = []
    size = 0
    for unit in units:
        cost = budget.estimate_tokens(unit)
        if current and size + cost > TARGET_TOKENS:
            chunks.append(Chunk(doc_index, len(chunks), cjk.join(current)))
            overlap = current[-1] if budget.estimate_tokens(current[-1]) < TARGET_TOKENS // 4 else None
            current, size = ([overlap], budget.estimate_tokens(overlap)) if overlap else ([], 0)
        current.append(unit)
        size += cost
    if current and (not chunks or len(current) > 1 or current[0] not in chunks[-1].text):
        chunks.append(Chunk(doc_index, len(chunks), cjk.join(current)))
    return chunks

