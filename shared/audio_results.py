"""Structured results and the shared tool flows of tool-transcribe and tool-audio-enhanced."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from shared import audio, budget, listening, transcription, worker
from shared.inputs import LocalInput
from shared.transcription import Transcript
from shared.worker import Job, ProgressFn

TranscriptFormat = Literal["text", "segments", "srt", "vtt"]


class WordModel(BaseModel):
    start: float
    end: float
    word: str
    probability: float


class SegmentModel(BaseModel):
    id: int
    start: float = Field(description="Seconds from the start.")
    end: float
    text: str
    confidence: float | None = Field(description="exp(average log-probability) of the decoding, 0-1.")
    no_speech_prob: float | None
    words: list[WordModel] | None = None


class TranscriptOutput(BaseModel):
    source: str
    text: str
    language: str | None
    language_probability: float | None
    duration_seconds: float
    segments: list[SegmentModel]
    srt: str | None = None
    vtt: str | None = None
    backend: str = Field(description="'local' (faster-whisper) or 'openai' (remote endpoint).")
    model: str
    seconds: float = Field(description="Transcription wall time (0 when served from the cache).")
    real_time_factor: float | None
    cached: bool
    notes: list[str]


class AnswerOutput(BaseModel):
    source: str
    question: str | None
    answer: str = Field(description="The model's answer, or without a model the matching segments.")
    model: str | None
    cited_times: list[float] = Field(description="Seconds the answer cites.")
    relevant_segments: list[SegmentModel]
    confidence: float | None = Field(description="Heuristic 0-1 with verification (see the description).")
    verification: dict[str, Any] | None
    transcript: TranscriptOutput
    notes: list[str]


class MetadataOutput(BaseModel):
    source: str
    container: str
    codec: str | None
    duration_seconds: float | None
    sample_rate: int | None
    channels: int | None
    bit_rate: int | None
    size_bytes: int
    tags: dict[str, str]
    has_video: bool
    rms_dbfs: float | None = Field(description="Average level in dB relative to full scale.")
    peak_dbfs: float | None
    silence_ratio: float = Field(description="Share of 30 ms frames quieter than -45 dBFS.")


def segment_model(segment: transcription.Segment) -> SegmentModel:
    words = [WordModel(**w.__dict__) for w in segment.words] if segment.words else None
    return SegmentModel(id=segment.id, start=segment.start, end=segment.end, text=segment.text,
                        confidence=segment.confidence, no_speech_prob=segment.no_speech_prob, words=words)


def transcript_output(transcript: Transcript, source: str, fmt: str = "segments") -> TranscriptOutput:
    return TranscriptOutput(
        source=source, text=transcript.text, language=transcript.language,
        language_probability=transcript.language_probability, duration_seconds=transcript.duration,
        segments=[segment_model(s) for s in transcript.segments],
        srt=transcription.to_srt(transcript.segments) if fmt == "srt" else None,
        vtt=transcription.to_vtt(transcript.segments) if fmt == "vtt" else None,
        backend=transcript.backend, model=transcript.model, seconds=0.0 if transcript.cached else transcript.seconds,
        real_time_factor=transcript.real_time_factor, cached=transcript.cached, notes=transcript.notes,
    )


def transcript_text(transcript: Transcript, fmt: str) -> str:
    if fmt == "srt":
        body = transcription.to_srt(transcript.segments)
    elif fmt == "vtt":
        body = transcription.to_vtt(transcript.segments)
    elif fmt == "text":
        body = transcript.text
    else:
        body = transcription.timestamped(transcript.segments)
    header = (f"[{transcript.duration:.1f} s of audio, language {transcript.language or 'unknown'}"
              + (f" ({transcript.language_probability:.2f})" if transcript.language_probability is not None else "")
              + f", {len(transcript.segments)} segments, {transcript.backend} {transcript.model}"
              + (", from the cache" if transcript.cached else "") + "]")
    notes = "".join(f"\n[note: {note}]" for note in transcript.notes)
    return f"{header}{notes}\n{body or '(no speech found)'}"


async def transcribe(source: str, progress: ProgressFn | None = None, *, language: str | None = None,
                     word_timestamps: bool = False) -> tuple[Transcript, str]:
    def work(item: LocalInput, job: Job) -> Transcript:
        return transcription.transcribe_file(item.path, language=language, word_timestamps=word_timestamps,
                                             progress=job.progress, stop=job.stop)

    return await worker.run_on_input(source, work, progress=progress)


SUMMARY_QUESTION = "Summarise what is said, with the main points and their times."


async def transcribe_and_answer(source: str, question: str | None, *, verify: bool,
                                progress: ProgressFn | None = None) -> tuple[str, AnswerOutput]:
    def work(item: LocalInput, job: Job) -> listening.Heard:
        return listening.hear(item.path, verify=verify, progress=job.progress, stop=job.stop)

    heard, label = await worker.run_on_input(source, work, progress=progress)
    transcript = heard.transcript
    result = await listening.answer(heard, question or SUMMARY_QUESTION, verify=verify)
    output = AnswerOutput(source=label, question=question, answer=result.text, model=result.model,
                          cited_times=result.cited_times,
                          relevant_segments=[segment_model(s) for s in result.relevant],
                          confidence=result.confidence, verification=result.verification,
                          transcript=transcript_output(transcript, label), notes=result.notes + transcript.notes)
    text = result.text
    if result.confidence is not None:
        text += f"\n\n[verification: heuristic confidence {result.confidence:.2f}]"
    if result.model is None:
        page = budget.page_of(transcription.timestamped(transcript.segments), 0, None,
                              max_tokens=budget.count_tokens(text) + 8000)
        text += "\n\nFull transcript:\n" + page.text + (f"\n{page.continuation_hint('(use audio_transcription)')}"
                                                       if page.has_more else "")
    return text, output


async def metadata(source: str) -> tuple[str, MetadataOutput]:
    def work(item: LocalInput, job: Job) -> tuple[audio.AudioInfo, audio.Loudness]:
        return audio.probe(item.path), audio.loudness(item.path)

    (info, level), label = await worker.run_on_input(source, work)
    duration = info.duration if info.duration is not None else level.decoded_seconds
    output = MetadataOutput(source=label, container=info.container, codec=info.codec, duration_seconds=duration,
                            sample_rate=info.sample_rate, channels=info.channels, bit_rate=info.bit_rate,
                            size_bytes=info.size_bytes, tags=info.tags, has_video=info.has_video,
                            rms_dbfs=level.rms_dbfs, peak_dbfs=level.peak_dbfs, silence_ratio=level.silence_ratio)
    lines = [f"Source: {label}", f"Container: {info.container}; codec: {info.codec}",
             f"Duration: {duration:.2f} s" if duration is not None else "Duration: unknown",
             f"Sample rate: {info.sample_rate} Hz; channels: {info.channels}",
             f"Bit rate: {info.bit_rate or 'unknown'} bit/s; size: {info.size_bytes} bytes",
             f"Level: RMS {level.rms_dbfs} dBFS, peak {level.peak_dbfs} dBFS; silence {level.silence_ratio:.0%}"]
    if info.has_video:
        lines.append("The file also has a video stream.")
    if info.tags:
        lines.append("Tags: " + ", ".join(f"{k}={v}" for k, v in sorted(info.tags.items())))
    return "\n".join(lines), output
