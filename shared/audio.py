"""Audio decoding with PyAV: any format FFmpeg reads (the audio track of videos too), resampled to
16 kHz mono float32 in windows, so a long file is never decoded whole; plus metadata and loudness."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared import media
from shared.errors import InputError

SAMPLE_RATE = 16_000


@dataclass
class AudioInfo:
    duration: float | None
    sample_rate: int | None
    channels: int | None
    codec: str | None
    bit_rate: int | None
    container: str
    size_bytes: int
    tags: dict[str, str] = field(default_factory=dict)
    has_video: bool = False


def probe(path: Path) -> AudioInfo:
    with media.open_container(path, "audio") as container:
        if not container.streams.audio:
            kind = "video without an audio track" if container.streams.video else "file with no audio stream"
            raise InputError(f"nothing to listen to: this is a {kind}")
        stream = container.streams.audio[0]
        duration = media.duration(container, stream)
        tags = {str(k): str(v)[:200] for k, v in {**container.metadata, **stream.metadata}.items()}
        codec = stream.codec_context.name if stream.codec_context else None
        return AudioInfo(duration=duration, sample_rate=stream.sample_rate, channels=stream.channels, codec=codec,
                         bit_rate=stream.bit_rate or container.bit_rate, container=container.format.name,
                         size_bytes=path.stat().st_size, tags=tags, has_video=bool(container.streams.video))


def windows(path: Path, window_seconds: float = 1200.0,
            limit_seconds: float | None = None) -> Iterator[tuple[float, Any]]:
    """(start time, float32 mono 16 kHz samples) windows of the first audio stream."""
    import numpy as np

    av = media.av()
    limit = media.max_seconds("audio") if limit_seconds is None else limit_seconds
    per_window = int(window_seconds * SAMPLE_RATE)
    with media.open_container(path, "audio") as container:
        if not container.streams.audio:
            raise InputError("nothing to listen to: the file has no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        pending: list[Any] = []
        pending_samples = 0
        emitted = 0
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    samples = out.to_ndarray().reshape(-1)
                    pending.append(samples)
                    pending_samples += samples.shape[0]
                    if (emitted + pending_samples) / SAMPLE_RATE > limit:
                        raise InputError(f"the audio is longer than the {limit / 60:.0f}-minute limit "
                                         "(TOOLSUITE_AUDIO_MAX_SECONDS)")
                    while pending_samples >= per_window:
                        joined = np.concatenate(pending)
                        yield emitted / SAMPLE_RATE, joined[:per_window]
                        emitted += per_window
                        pending = [joined[per_window:]]
                        pending_samples = pending[0].shape[0]
            for out in resampler.resample(None):
                pending.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as exc:
            raise InputError(f"the audio is corrupt and cannot be decoded ({type(exc).__name__})") from None
        if pending:
            joined = np.concatenate(pending) if len(pending) > 1 else pending[0]
            if joined.shape[0]:
                yield emitted / SAMPLE_RATE, joined


@dataclass
class Loudness:
    rms_dbfs: float | None
    peak_dbfs: float | None
    silence_ratio: float
    decoded_seconds: float


def loudness(path: Path, frame_seconds: float = 0.03, silence_dbfs: float = -45.0) -> Loudness:
    """RMS and peak level in dBFS, and the share of 30 ms frames quieter than -45 dBFS."""
    import numpy as np

    squares = 0.0
    count = 0
    peak = 0.0
    quiet = 0
    frames = 0
    size = int(frame_seconds * SAMPLE_RATE)
    for _start, samples in windows(path, window_seconds=300):
        squares += float(np.square(samples, dtype=np.float64).sum())
        count += samples.shape[0]
        peak = max(peak, float(np.abs(samples).max(initial=0.0)))
        usable = samples[: samples.shape[0] // size * size].reshape(-1, size)
        if usable.size:
            rms = np.sqrt(np.mean(np.square(usable, dtype=np.float64), axis=1))
            quiet += int((20 * np.log10(np.maximum(rms, 1e-10)) < silence_dbfs).sum())
            frames += usable.shape[0]

    def db(value: float) -> float | None:
        return None if value <= 0 else round(20 * math.log10(value), 2)

    rms_total = math.sqrt(squares / count) if count else 0.0
    silence = round(quiet / frames, 3) if frames else 1.0
    return Loudness(rms_dbfs=db(rms_total), peak_dbfs=db(peak), silence_ratio=silence,
                    decoded_seconds=round(count / SAMPLE_RATE, 3))
