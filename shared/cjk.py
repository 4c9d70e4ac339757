"""Chinese, Japanese and Korean text: which characters are CJK, and how text joins around them.

The one definition the suite uses. "CJK" here means the characters of scripts written without
spaces between words: Chinese characters, kana, CJK punctuation and full-width forms. Hangul is
written with spaces, so it is not CJK for joining, but like Chinese it costs about one token a
character, which `count_wide` counts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"  # Chinese characters (ideographs)
CJK = "\u2e80-\u33ff" + HAN + "\ufe30-\ufe4f\uff00-\uffef"  # + radicals, punctuation, kana, full-width forms
HANGUL = "\uac00-\ud7af"

_CJK_CHAR = re.compile(f"[{CJK}]")
_HAN_CHAR = re.compile(f"[{HAN}]")
_HAN_RUN = re.compile(f"[{HAN}]+")
_WIDE_CHAR = re.compile(f"[{CJK}{HANGUL}]")
_SPACE_BETWEEN = re.compile(f"(?<=[{CJK}])\\s+(?=[{CJK}])")


def is_cjk(character: str) -> bool:
    return bool(_CJK_CHAR.match(character))


def is_han(character: str) -> bool:
    """Whether `character` is a Chinese character."""
    return bool(_HAN_CHAR.match(character))


def has_han(text: str) -> bool:
    """Whether `text` contains a Chinese character (the test for "this query is Chinese")."""
    return _HAN_CHAR.search(text) is not None


def count_han(text: str) -> int:
    return len(_HAN_CHAR.findall(text))


def han_runs(text: str) -> Iterator[re.Match[str]]:
    """The runs of Chinese characters in `text`, for a Chinese word segmenter."""
    return _HAN_RUN.finditer(text)


def count_wide(text: str) -> int:
    """CJK characters and Hangul syllables: the characters that cost about one token each."""
    return len(_WIDE_CHAR.findall(text))


def join(pieces: Iterable[str]) -> str:
    """Pieces of running text on one line: no space where either side of a join is CJK, else one space."""
    out = ""
    for piece in pieces:
        if out and piece and not (is_cjk(out[-1]) or is_cjk(piece[0])):
            out += " "
        out += piece
    return out


def remove_spaces_between(text: str) -> str:
    """Drop the spaces some OCR engines put between CJK characters."""
    return _SPACE_BETWEEN.sub("", text)
