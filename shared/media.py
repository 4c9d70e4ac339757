"""Audio and video files opened with PyAV (FFmpeg inside the wheel): the one way the suite opens a
media file, measures its duration and holds it to its length limit, for the audio and video engines."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from shared import settings
from shared.errors import InputError, NotConfigured

Kind = Literal["audio", "video"]

_READABLE_AS = {"audio": "audio or video", "video": "a video"}
_LIMIT_SETTING = {"audio": "TOOLSUITE_AUDIO_MAX_SECONDS", "video": "TOOLSUITE_VIDEO_MAX_SECONDS"}


def av() -> Any:
    try:
        import av
    except ModuleNotFoundError:
        raise NotConfigured("audio and video decoding need PyAV: pip install 'toolsuite[transcribe]'") from None
    return av


def open_container(path: Path, kind: Kind) -> Any:
    """An open PyAV container (use it in a `with`); empty and unreadable files are refused as `kind` input."""
    if path.stat().st_size == 0:
        raise InputError(f"the {kind} file is empty (0 bytes)")
    module = av()
    try:
        return module.open(str(path), metadata_errors="ignore")
    except module.error.InvalidDataError:
        raise InputError(f"the file is not {_READABLE_AS[kind]} that FFmpeg can read (invalid data)") from None
    except module.error.FFmpegError as exc:
        raise InputError(f"the file cannot be decoded as {kind} ({type(exc).__name__})") from None


def duration(container: Any, stream: Any) -> float | None:
    """Seconds of `stream`, from its own header when it has one, else from the container's."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


def max_seconds(kind: Kind) -> float:
    return settings.number(_LIMIT_SETTING[kind], 14_400, minimum=1)


def check_length(seconds: float | None, kind: Kind) -> None:
    """Refuse media longer than its limit before any decoding work starts."""
    limit = max_seconds(kind)
    if seconds is not None and seconds > limit:
        raise InputError(f"the {kind} lasts {seconds / 3600:.1f} h; the limit is {limit / 60:.0f} minutes "
                         f"({_LIMIT_SETTING[kind]})")
