"""Language-independent text similarity on character bigrams (Chinese has no spaces to split on)."""

from __future__ import annotations

import re


def normalise(text: str) -> str:
    return re.sub(r"[\W_]+", "", text.lower())


def bigrams(text: str) -> set[str]:
    flat = normalise(text)
    return {flat[i:i + 2] for i in range(len(flat) - 1)} or ({flat} if flat else set())


def similarity(a: str, b: str) -> float:
    """Overlap of character bigrams relative to the shorter text: a short answer restated inside a
    longer one counts as agreement, in any language."""
    left, right = bigrams(a), bigrams(b)
    if not left or not right:
        return 1.0 if left == right else 0.0
    return len(left & right) / min(len(left), len(right))


def coverage(text: str, reference: str) -> float:
    """Share of `text`'s bigrams that occur in `reference`."""
    grams = bigrams(text)
    if not grams or not reference.strip():
        return 0.0
    return len(grams & bigrams(reference)) / len(grams)
