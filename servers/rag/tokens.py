"""Lexical tokens for Chinese and English: jieba words for Chinese (so two-character words match
exactly), lower-cased words and numbers for everything else. `rjieba` (jieba's algorithm and
dictionary in Rust) gives the same words 20x faster than pure-Python jieba, which is the fallback."""

from __future__ import annotations

import re
import threading

from shared import cjk

VERSION = "jieba-0.42-2"  # part of the index key: other words mean another index (2: shared/cjk.py's Han runs)
_WORD = re.compile(r"[a-z0-9]+(?:['’][a-z]+)?")
_lock = threading.Lock()
_ready = False
STOP = {"the", "a", "an", "of", "to", "in", "and", "or", "is", "are", "for", "on", "with", "what", "how", "which",
        "的", "了", "是", "在", "和", "与", "及", "或", "对", "中"}


def _segmenter():
    global _ready
    try:
        import rjieba

        return lambda text: rjieba.cut(text, hmm=False)
    except ModuleNotFoundError:
        import jieba

        if not _ready:
            with _lock:
                if not _ready:
                    jieba.setLogLevel(60)
                    jieba.initialize()
                    _ready = True
        return lambda text: jieba.lcut(text, HMM=False)


def tokenize(text: str) -> list[str]:
    cut = _segmenter()
    lowered = text.lower()
    tokens: list[str] = []
    position = 0
    for match in cjk.han_runs(lowered):
        tokens.extend(_WORD.findall(lowered[position:match.start()]))
        tokens.extend(cut(match.group()))
        position = match.end()
    tokens.extend(_WORD.findall(lowered[position:]))
    return [t for t in tokens if t.strip() and t not in STOP]
