"""Mandarin transcripts that read right: one script, Chinese punctuation, no spaces between characters.

Whisper writes Mandarin in a mix of scripts: on the suite's test recordings 20-31 % of the
characters came back traditional, in Taiwan forms, and a prompt asking for simplified did not
change that. So the text is converted afterwards with OpenCC (the `opencc` package, Apache-2.0),
config `tw2s` by default: plain `t2s` leaves Taiwan forms such as 随著 unconverted. Then ASCII
punctuation touching a Chinese character becomes full-width, spaces between Chinese characters go,
and segments are joined without spaces (a comma where one segment ends mid-sentence).
`TOOLSUITE_TRANSCRIBE_CHINESE` picks `simplified` (default), `traditional` (OpenCC `s2tw`) or
`original` (the model's characters, punctuation still tidied).
"""

from __future__ import annotations

import re
import threading
from typing import Any

from shared import settings
from shared.cjk import HAN, has_han, is_han

SCRIPTS = ("simplified", "traditional", "original")
_CONFIGS = {"simplified": "tw2s", "traditional": "s2tw"}
_FULL_WIDTH = {",": "，", "?": "？", "!": "！", ":": "：", ";": "；"}
_CHINESE_MARKS = "，。！？：；、"
_ASCII_MARK_NEAR_HAN = re.compile(f"(?<=[{HAN}])\\s*([,?!:;])\\s*|\\s*([,?!:;])\\s*(?=[{HAN}])")
_PERIOD_AFTER_HAN = re.compile(f"(?<=[{HAN}])\\.(?!\\d)")
_SPACE_BETWEEN_HAN = re.compile(f"(?<=[{HAN}])\\s+(?=[{HAN}])")
_SPACE_AROUND_MARK = re.compile(f"(?<=[{HAN}])\\s+(?=[{_CHINESE_MARKS}])|(?<=[{_CHINESE_MARKS}])\\s+(?=[{HAN}])")
INSTALL_HINT = "pip install opencc"

_converters: dict[str, Any] = {}
_lock = threading.Lock()


def chosen_script() -> str:
    return settings.choice("TOOLSUITE_TRANSCRIBE_CHINESE", SCRIPTS, "simplified")


def is_chinese(language: str | None) -> bool:
    return (language or "").lower() in {"zh", "chinese", "mandarin", "yue", "cantonese"}


def available() -> bool:
    import importlib.util

    return importlib.util.find_spec("opencc") is not None


def _converter(config: str) -> Any:
    with _lock:
        if config not in _converters:
            import opencc

            _converters[config] = opencc.OpenCC(config)
        return _converters[config]


def convert(text: str, script: str) -> str:
    """`text` in `script`; unchanged when the script is `original` or OpenCC is missing (see `conversion_note`)."""
    config = _CONFIGS.get(script)
    if config is None or not has_han(text) or not available():
        return text
    converter = _converter(config)
    with _lock:  # one OpenCC object per config, shared by worker threads
        return converter.convert(text)


def conversion_note(script: str) -> str | None:
    """The note a Chinese transcript carries when it could not be converted to the chosen script."""
    if script in _CONFIGS and not available():
        return (f"Chinese characters were left as the model wrote them (a mix of traditional and simplified): "
                f"install OpenCC to convert them to {script} ({INSTALL_HINT})")
    return None


def punctuate(text: str) -> str:
    """Full-width punctuation next to Chinese characters, no spaces between them (Latin words keep theirs)."""
    text = _ASCII_MARK_NEAR_HAN.sub(lambda m: _FULL_WIDTH[m.group(1) or m.group(2)], text)
    text = _PERIOD_AFTER_HAN.sub("。", text)
    text = _SPACE_BETWEEN_HAN.sub("", text)
    return _SPACE_AROUND_MARK.sub("", text).strip()


def tidy(text: str, script: str) -> str:
    """One segment's text, as a Chinese reader expects it."""
    return punctuate(convert(text, script))


def join(texts: list[str]) -> str:
    """Segments as running Chinese text: no spaces, a comma where a segment ends without a mark."""
    out = ""
    for text in (t.strip() for t in texts):
        if not text:
            continue
        if out and is_han(out[-1]) and is_han(text[0]):
            out += "，"
        elif out and not (is_han(out[-1]) or out[-1] in _CHINESE_MARKS) and not is_han(text[0]):
            out += " "  # Latin text on both sides keeps its space
        out += text
    return out


def for_matching(text: str) -> str:
    """Text to compare with a simplified transcript: a question typed in traditional characters still matches."""
    return convert(text, "simplified") if has_han(text) else text
