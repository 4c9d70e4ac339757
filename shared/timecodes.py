"""Times in media: how the suite writes them (subtitle clocks, [mm:ss.s] marks) and reads them back
from a model's answer ([mm:ss] or h:mm:ss citations)."""

from __future__ import annotations

import re

_CITED = re.compile(r"\b(?:(\d{1,2}):)?(\d{1,2}):(\d{2})(?:\.\d+)?\b")


def clock(seconds: float, separator: str = ",") -> str:
    """hh:mm:ss,mmm as SRT writes it (VTT uses "." as the separator)."""
    milliseconds = round(seconds * 1000)
    hours, rest = divmod(milliseconds, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def short_clock(seconds: float) -> str:
    """mm:ss.s, the form transcripts and timelines show to models and agents."""
    minutes, secs = divmod(seconds, 60)
    return f"{int(minutes):02d}:{secs:04.1f}"


def span(start: float, end: float) -> str:
    return f"{short_clock(start)}-{short_clock(end)}"


def cited_times(text: str) -> list[float]:
    """The times an answer cites, in seconds, first mention first, each once."""
    times: list[float] = []
    for hours, minutes, seconds in _CITED.findall(text):
        value = float(int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds))
        if value not in times:
            times.append(value)
    return times
