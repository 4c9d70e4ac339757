"""Arabic numerals as Chinese ones, so "133艘" in a transcript matches "一百三十三艘" in a question.

Whisper writes numbers in Mandarin speech sometimes as digits and sometimes as characters; an
agent's question may use either. Matching compares both forms. Years (four digits before 年) are
read digit by digit, as they are said (二〇二四年); other integers with units (一百三十三); decimals
with 点.
"""

from __future__ import annotations

import re

_DIGITS = "零一二三四五六七八九"
_SMALL_UNITS = ("", "十", "百", "千")
_LARGE_UNITS = ("", "万", "亿", "万亿")
_YEAR = re.compile(r"(\d{4})(?=年)")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def _below_10000(value: int) -> str:
    out, zero = "", False
    for power in range(3, -1, -1):
        digit = value // 10**power % 10
        if digit == 0:
            zero = bool(out)
            continue
        if zero:
            out += "零"
            zero = False
        out += _DIGITS[digit] + _SMALL_UNITS[power]
    return out


def integer(value: int) -> str:
    if value == 0:
        return "零"
    groups: list[str] = []
    index = 0
    lower = None  # the group below the current one, once there is one
    while value and index < len(_LARGE_UNITS):
        value, group = divmod(value, 10_000)
        if group:
            text = _below_10000(group) + _LARGE_UNITS[index]
            if lower is not None and lower < 1000:
                text += "零"  # 10,005 -> 一万零五
            groups.append(text)
        lower = group if group or lower is None else lower
        index += 1
    text = "".join(reversed(groups)).rstrip("零")
    return text[1:] if text.startswith("一十") else text  # 十五, not 一十五


def to_chinese(text: str) -> str:
    """`text` with every Arabic number written in Chinese numerals."""
    text = _YEAR.sub(lambda m: "".join("〇" if d == "0" else _DIGITS[int(d)] for d in m.group(1)), text)

    def number(match: re.Match[str]) -> str:
        whole, _, fraction = match.group().partition(".")
        if len(whole) > 16:
            return match.group()
        out = integer(int(whole))
        return out + ("点" + "".join(_DIGITS[int(d)] for d in fraction) if fraction else "")

    return _NUMBER.sub(number, text)
