"""Speech to text for tool-transcribe, tool-audio-enhanced and tool-video-enhanced.

Backends:
- `local` (default): faster-whisper, CPU int8, each model loaded once per process. Which model
  transcribes a recording is decided per call by the language policy (`shared.speech_routing`):
  by default the multilingual Whisper base (assembled once from its PyPI parts,
  `shared.speech_models`) for every language, tiny.en when that is all that is installed or
  asked for. `TOOLSUITE_TRANSCRIBE_MODEL` takes any faster-whisper model name (downloaded where a
  network allows) or a local CTranslate2 folder instead. One thread measured faster than two on
  2 cores (`TOOLSUITE_TRANSCRIBE_THREADS`).
- `openai`: any OpenAI-compatible `/audio/transcriptions` endpoint (role TRANSCRIBE), where
  `TOOLSUITE_TRANSCRIBE_MODEL` names the remote model.
`TOOLSUITE_TRANSCRIBE_BACKEND=auto` uses `openai` when `TOOLSUITE_TRANSCRIBE_BASE_URL` is set, else
`local`. Long audio is decoded and transcribed in 20-minute windows (segments stream out with
progress; the call's stop flag is checked between segments). Mandarin comes out in one script with
Chinese punctuation (`shared.chinese_text`). Transcripts are cached by content hash, backend, model
and options, so a second question about a file does not transcribe it again.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shared import audio, cache, chinese_text, media, settings, speech_languages, speech_models, speech_routing
from shared.errors import InputError, NotConfigured
from shared.lazy import LazyEngine
from shared.speech_routing import Detected, Request
from shared.timecodes import clock, span
from shared.worker import ProgressFn, StopFlag

log = logging.getLogger("toolsuite.transcription")

ENGINE_VERSION = "transcribe-2"
DETECT_SECONDS = 30.0  # Whisper hears 30 s at a time: language detection reads the first 30 s of speech
DETECT_SEARCH_SECONDS = 300.0  # how far into the recording speech is looked for (music intros, silence)
# Below this duration-weighted mean log-probability, an English-only model was guessing on the suite's
# recordings (Mandarin through tiny.en: -0.78 to -2.2; English voices: -0.45 to -0.49).
ENGLISH_ONLY_DOUBT_LOGPROB = -0.65


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
    routing: str = ""
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


def policy() -> str:
    return settings.choice("TOOLSUITE_TRANSCRIBE_POLICY", speech_routing.POLICIES, "auto")


def custom_model() -> str | None:
    """The one model TOOLSUITE_TRANSCRIBE_MODEL names for the local backend, if any."""
    return settings.text("TOOLSUITE_TRANSCRIBE_MODEL") if backend() == "local" and \
        settings.raw("TOOLSUITE_TRANSCRIBE_MODEL") else None


def local_model_name() -> str:
    """The model the local backend uses when no language decides otherwise (what `whisper()` loads)."""
    custom = custom_model()
    if custom is not None:
        return custom
    chosen = policy()
    if chosen in (speech_models.BASE, speech_models.TINY_EN):
        return chosen
    return speech_models.BASE if speech_models.installed(speech_models.BASE) else speech_models.TINY_EN


def _load_whisper(name: str) -> Any:
    from faster_whisper import WhisperModel

    logging.getLogger("faster_whisper").setLevel(logging.WARNING)
    threads = int(settings.number("TOOLSUITE_TRANSCRIBE_THREADS", 1, minimum=1))
    if name in (speech_models.BASE, speech_models.TINY_EN):
        folder = speech_models.path(name, on_build=lambda: log.info(
            "assembling the multilingual speech model from its packages into %s (once)", speech_models.models_dir()))
        return WhisperModel(folder, device="cpu", compute_type="int8", cpu_threads=threads)
    try:
        return WhisperModel(name, device="cpu", compute_type="int8", cpu_threads=threads,
                            local_files_only=settings.offline())
    except Exception as exc:
        raise NotConfigured(
            f"the speech model {name!r} cannot be loaded ({type(exc).__name__}); names other than local folders are "
            "downloaded from the model hub, which needs a network. Unset TOOLSUITE_TRANSCRIBE_MODEL to use the "
            f"bundled models ({speech_models.label(speech_models.BASE)}; bundled tiny.en), or give the path of a "
            "CTranslate2 model folder"
        ) from None


_MODELS: dict[str, LazyEngine[Any]] = {}
_MODELS_LOCK = threading.Lock()


def whisper(name: str | None = None) -> Any:
    """A faster-whisper model (default: the configured one), loaded once per process per model."""
    name = name or local_model_name()
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
    code, traditional = speech_languages.normalise(language)
    script = "traditional" if traditional else chinese_text.chosen_script()
    info = audio.probe(path)
    media.check_length(info.duration, "audio")
    chosen = backend()
    if chosen == "local":
        model, route_policy = custom_model(), policy()
    else:
        model, route_policy = settings.text("TOOLSUITE_TRANSCRIBE_MODEL", "whisper-1"), "remote"
    options = {"backend": chosen, "model": model, "policy": route_policy, "language": code, "words": word_timestamps,
               "vad": vad, "script": script, "beam": beam_size(),
               # Installing the multilingual model changes what `auto` does: a transcript made without it is stale.
               "installed": [m for m in (speech_models.BASE, speech_models.TINY_EN) if speech_models.installed(m)]}
    target = _cache_target(cache.file_digest(path), options)
    stored = cache.read(target)
    if stored is not None:
        transcript = _from_json(json.loads(stored))
        transcript.cached = True
        return transcript
    started = time.perf_counter()
    if chosen == "local":
        transcript = _local(path, info, code, word_timestamps, vad, progress, stop)
    else:
        transcript = _remote(path, info, model or "whisper-1", code)
    finish_chinese(transcript, script)
    transcript.seconds = round(time.perf_counter() - started, 3)
    payload = asdict(transcript)
    payload.pop("cached")
    cache.write_atomic(target, json.dumps(payload, ensure_ascii=False).encode())
    return transcript


def beam_size() -> int:
    return int(settings.number("TOOLSUITE_TRANSCRIBE_BEAM", 1, minimum=1))


def finish_chinese(transcript: Transcript, script: str) -> None:
    """Mandarin in one script with Chinese punctuation; the transcript's text joined without spaces."""
    if not chinese_text.is_chinese(transcript.language):
        return
    for segment in transcript.segments:
        segment.text = chinese_text.tidy(segment.text, script)
        for word in segment.words or []:
            word.word = chinese_text.convert(word.word, script)
    transcript.text = joined_text(transcript.segments, transcript.language)
    note = chinese_text.conversion_note(script)
    if note:
        transcript.notes.append(note)


def joined_text(segments: list[Segment], language: str | None) -> str:
    if chinese_text.is_chinese(language):
        return chinese_text.join([s.text for s in segments])
    return " ".join(s.text for s in segments).strip()


def request_for(language: str | None) -> Request:
    return Request(policy=policy(), custom_model=custom_model(), language=language,
                   have_base=speech_models.installed(speech_models.BASE),
                   have_tiny=speech_models.installed(speech_models.TINY_EN))


def detect_language(samples: Any) -> Detected | None:
    """Language of the first 30 s of speech (silence and music skipped by VAD) on the multilingual model;
    None when there is no speech in the first five minutes."""
    import numpy as np
    from faster_whisper.vad import get_speech_timestamps

    head = samples[: int(DETECT_SEARCH_SECONDS * audio.SAMPLE_RATE)]
    chunks = get_speech_timestamps(head)
    if not chunks:
        return None
    wanted = int(DETECT_SECONDS * audio.SAMPLE_RATE)
    pieces, total = [], 0
    for chunk in chunks:
        pieces.append(head[chunk["start"]:chunk["end"]])
        total += chunk["end"] - chunk["start"]
        if total >= wanted:
            break
    speech = np.concatenate(pieces)[:wanted]
    model = whisper(speech_models.BASE)
    with _LOCK:
        language, probability, _ = model.detect_language(audio=speech)
    return Detected(language, round(float(probability), 3))


def _local(path: Path, info: audio.AudioInfo, language: str | None, word_timestamps: bool, vad: bool,
           progress: ProgressFn | None, stop: StopFlag | None) -> Transcript:
    request = request_for(language)
    windows = audio.windows(path)
    first = next(windows, None)
    if first is None:
        raise InputError("the audio stream is empty (zero length)")
    detected = None
    if speech_routing.needs_detection(request):
        if stop is not None:
            stop.check("language detection")
        detected = detect_language(first[1])
    route = speech_routing.route(request, detected)
    model = whisper(route.model)
    total = info.duration
    segments: list[Segment] = []
    decoded_language, probability = route.language, None
    if detected is not None and route.language == detected.language:
        probability = detected.probability
    decoded = 0.0
    reported = 0.0

    def all_windows() -> Iterator[tuple[float, Any]]:
        yield first
        yield from windows

    def report(done: float) -> None:
        nonlocal reported
        if progress is None:
            return
        # Whisper's last timestamp can pass the header's duration (28.0 of 27.8 s): never report more
        # than the total, and never go backwards.
        reported = max(reported, min(done, total) if total else done)
        progress(round(reported, 1), round(total, 1) if total else None, f"transcribed {reported:.0f} s")

    with _LOCK:
        for offset, samples in all_windows():
            if stop is not None:
                stop.check("transcription")  # a window of silence yields no segment to check at
            decoded = offset + samples.shape[0] / audio.SAMPLE_RATE
            pieces, details = model.transcribe(
                samples, language=decoded_language, beam_size=beam_size(), vad_filter=vad,
                word_timestamps=word_timestamps, condition_on_previous_text=False,
            )
            if decoded_language is None:
                # Detected on this window's first 30 s of speech; later windows keep it, so one transcript
                # reads in one language and the decoder does not detect again every 20 minutes.
                decoded_language, probability = details.language, round(float(details.language_probability), 3)
            for piece in pieces:
                if stop is not None:
                    stop.check("transcription")
                segments.append(_segment(len(segments), piece, offset, word_timestamps))
                report(piece.end + offset)
            report(decoded)  # the whole window is done, speech or not
    duration = total if total is not None else decoded
    if decoded == 0.0:
        raise InputError("the audio stream is empty (zero length)")
    notes = list(route.notes)
    if not segments:
        notes.append("no speech was found (silence or music only)")
        if detected is None and not route.english_only and route.language is None:
            decoded_language, probability = None, None  # nothing was heard, so no language either
    elif route.english_only and detected is None and mean_logprob(segments) < ENGLISH_ONLY_DOUBT_LOGPROB:
        notes.append(f"{route.model} understands English only and was unsure of this recording (mean confidence "
                     f"{math.exp(mean_logprob(segments)):.2f}): if the speech is not English, this transcript is "
                     f"not what is said; {speech_models.MULTILINGUAL_EXTRA} adds a multilingual model that detects "
                     "the language")
    return Transcript(text=joined_text(segments, decoded_language), language=decoded_language,
                      language_probability=probability, duration=round(duration, 3), segments=segments,
                      backend="local", model=route.model, routing=route.reason,
                      notes=notes)


def _segment(index: int, piece: Any, offset: float, word_timestamps: bool) -> Segment:
    words = None
    if word_timestamps and piece.words:
        words = [Word(round(w.start + offset, 2), round(w.end + offset, 2), w.word, round(float(w.probability), 3))
                 for w in piece.words]
    return Segment(id=index, start=round(piece.start + offset, 2), end=round(piece.end + offset, 2),
                   text=piece.text.strip(), avg_logprob=round(float(piece.avg_logprob), 3),
                   no_speech_prob=round(float(piece.no_speech_prob), 3), words=words)


def mean_logprob(segments: list[Segment]) -> float:
    weighted = [(max(s.end - s.start, 0.1), s.avg_logprob) for s in segments if s.avg_logprob is not None]
    if not weighted:
        return 0.0
    return sum(w * p for w, p in weighted) / sum(w for w, _ in weighted)


# PyAV container names that differ from the file endings transcription endpoints recognise.
_ENDINGS = {"mov": "mp4", "matroska": "webm", "ogg": "ogg", "wav": "wav", "mp3": "mp3", "flac": "flac"}


def upload_name(path: Path, info: audio.AudioInfo) -> str:
    """The file name to send: endpoints pick the decoder from its ending, and inputs are opened files
    (/proc/self/fd/N) or unnamed downloads, so the ending comes from the container FFmpeg found."""
    if path.suffix:
        return path.name
    container = info.container.split(",")[0]
    return f"audio.{_ENDINGS.get(container, container)}"


def _remote(path: Path, info: audio.AudioInfo, model: str, language: str | None) -> Transcript:
    import anyio

    from shared.models import ModelClient

    if info.size_bytes > 25 * 2**20:
        raise InputError("the remote transcription endpoint takes files up to 25 MB; use the local backend "
                         "(TOOLSUITE_TRANSCRIBE_BACKEND=local) for longer audio")
    client = ModelClient("TRANSCRIBE", purpose="transcription")

    async def call() -> dict[str, Any]:
        try:
            payload, _usage = await client.transcribe(path.read_bytes(), upload_name(path, info), language=language)
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
    return Transcript(text=str(payload.get("text", "")).strip(), language=_remote_language(payload.get("language")),
                      language_probability=None, duration=round(duration, 3), segments=segments, backend="openai",
                      model=model, routing="the remote transcription endpoint (role TRANSCRIBE) transcribes everything")


def _remote_language(value: Any) -> str | None:
    """OpenAI's verbose_json names the language ('chinese'); the suite speaks in codes ('zh')."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return speech_languages.normalise(value)[0] or value
    except InputError:
        return value


def _in_worker_thread() -> bool:
    import anyio.from_thread

    try:
        anyio.from_thread.check_cancelled()
        return True
    except RuntimeError:
        return False


def retranscribe(path: Path, start: float, end: float, *, model: str, language: str | None,
                 beam_size: int = 5) -> tuple[str, float | None]:
    """A second, slower decoding of one stretch (beam search, no VAD) by the model and in the language of the
    first pass: (text, avg_logprob). The caller tidies Chinese text as the first pass was."""
    import numpy as np

    engine = whisper(model)
    pieces: list[Any] = []
    for offset, samples in audio.windows(path):
        window_end = offset + samples.shape[0] / audio.SAMPLE_RATE
        if window_end <= start or offset >= end:
            continue
        first = max(0, int((start - offset) * audio.SAMPLE_RATE))
        last = min(samples.shape[0], int((end - offset) * audio.SAMPLE_RATE))
        pieces.append(samples[first:last])
        if window_end >= end:
            break
    if not pieces:
        return "", None
    clip = np.concatenate(pieces)
    if language is None and speech_routing.english_only(model):
        language = "en"
    with _LOCK:
        result, _ = engine.transcribe(clip, beam_size=beam_size, vad_filter=False, temperature=0.0,
                                      language=language, condition_on_previous_text=False)
        parts = list(result)
    if not parts:
        return "", None
    logprob = sum(p.avg_logprob for p in parts) / len(parts)
    return joined_text([Segment(0, 0, 0, p.text.strip()) for p in parts], language), round(float(logprob), 3)


def to_srt(segments: list[Segment]) -> str:
    blocks = [f"{i}\n{clock(s.start)} --> {clock(s.end)}\n{s.text}" for i, s in enumerate(segments, start=1)]
    return "\n\n".join(blocks) + ("\n" if blocks else "")


def to_vtt(segments: list[Segment]) -> str:
    blocks = [f"{clock(s.start, '.')} --> {clock(s.end, '.')}\n{s.text}" for s in segments]
    return "WEBVTT\n\n" + "\n\n".join(blocks) + ("\n" if blocks else "")


def timestamped(segments: list[Segment]) -> str:
    return "\n".join(f"[{span(s.start, s.end)}] {s.text}" for s in segments)
