"""How far a transcript is from what was said: word error rate (English) and character error rate
(Chinese), both the edit distance over the reference's length."""

from __future__ import annotations

import re
from collections.abc import Sequence

from shared import numerals

_HAN = re.compile(r"[\u4e00-\u9fff]")


def edit_distance(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Insertions, deletions and substitutions that turn `reference` into `hypothesis`."""
    row = list(range(len(hypothesis) + 1))
    for i, item in enumerate(reference, 1):
        previous, row = row, [i] + [0] * len(hypothesis)
        for j, other in enumerate(hypothesis, 1):
            row[j] = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (item != other))
    return row[len(hypothesis)]


def word_error_rate(reference: str, hypothesis: str) -> float:
    ref = re.sub(r"[^a-z0-9' ]", " ", reference.lower()).split()
    hyp = re.sub(r"[^a-z0-9' ]", " ", hypothesis.lower()).split()
    return edit_distance(ref, hyp) / len(ref)


def character_error_rate(reference: str, hypothesis: str) -> float:
    """Over Chinese characters only, numbers written out in characters on both sides."""
    ref = [c for c in numerals.to_chinese(reference) if _HAN.match(c)]
    hyp = [c for c in numerals.to_chinese(hypothesis) if _HAN.match(c)]
    return edit_distance(ref, hyp) / len(ref)
