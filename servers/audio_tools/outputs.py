"""The audio tools' structured results, read from the engine types, and their text renderings."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from shared import audio, budget, speech_models, transcription
from shared.outputs import from_engine, mirrors
from shared.transcript_answers import Answer
from shared.transcription import Segment, Transcript, Word

TranscriptFormat = Literal["text", "segments", "srt", "vtt"]


@mirrors(Segment, leave_out={"avg_logprob": "shown as confidence, exp(avg_logprob)"})
class SegmentModel(BaseModel):
    id: int
    start: float = Field(description="Seconds from the start.")
    end: float
    text: str
    confidence: float | None = Field(description="exp(average log-probability) of the decoding, 0-1.")
    no_speech_prob: float | None
    words: list[Word] | None = None


@mirrors(Transcript, leave_out={"duration": "shown as duration_seconds"})
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
    model: str = Field(description="The model that transcribed: 'base' (multilingual Whisper base), 'tiny.en' "
                                   "(English only), a configured model, or the remote model's name.")
    routing: str = Field(description="Why that model transcribed this recording (the language policy's decision).")
    seconds: float = Field(description="Transcription wall time (0 when served from the cache).")
    real_time_factor: float | None
    cached: bool
    notes: list[str]


@mirrors(Answer, leave_out={"text": "shown as answer", "invalid_times": "reported in verification"})
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


@mirrors(audio.AudioInfo, leave_out={"duration": "shown as duration_seconds"})
@mirrors(audio.Loudness, leave_out={"decoded_seconds": "the duration when the header has none"})
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


def transcript_output(transcript: Transcript, source: str, fmt: str = "segments") -> TranscriptOutput:
    return from_engine(TranscriptOutput, transcript, source=source, duration_seconds=transcript.duration,
                       srt=transcription.to_srt(transcript.segments) if fmt == "srt" else None,
                       vtt=transcription.to_vtt(transcript.segments) if fmt == "vtt" else None,
                       seconds=0.0 if transcript.cached else transcript.seconds)


def answer_output(answer: Answer, transcript: Transcript, source: str, question: str | None) -> AnswerOutput:
    return from_engine(AnswerOutput, answer, source=source, question=question, answer=answer.text,
                       transcript=transcript_output(transcript, source), notes=answer.notes + transcript.notes)


def metadata_output(info: audio.AudioInfo, level: audio.Loudness, source: str) -> MetadataOutput:
    duration = info.duration if info.duration is not None else level.decoded_seconds
    return from_engine(MetadataOutput, info, level, source=source, duration_seconds=duration)


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
              + f", {len(transcript.segments)} segments, {transcript.backend} {speech_models.label(transcript.model)}"
              + (f" ({transcript.routing})" if transcript.routing else "")
              + (", from the cache" if transcript.cached else "") + "]")
    notes = "".join(f"\n[note: {note}]" for note in transcript.notes)
    return f"{header}{notes}\n{body or '(no speech found)'}"


def answer_text(answer: Answer, transcript: Transcript) -> str:
    text = answer.text
    if answer.confidence is not None:
        text += f"\n\n[verification: heuristic confidence {answer.confidence:.2f}]"
    if answer.model is None:
        page = budget.page_of(transcription.timestamped(transcript.segments), 0, None,
                              max_tokens=budget.count_tokens(text) + 8000)
        text += "\n\nFull transcript:\n" + page.text + (f"\n{page.continuation_hint('(use audio_transcription)')}"
                                                       if page.has_more else "")
    return text


def metadata_text(output: MetadataOutput) -> str:
    duration = output.duration_seconds
    lines = [f"Source: {output.source}", f"Container: {output.container}; codec: {output.codec}",
             f"Duration: {duration:.2f} s" if duration is not None else "Duration: unknown",
             f"Sample rate: {output.sample_rate} Hz; channels: {output.channels}",
             f"Bit rate: {output.bit_rate or 'unknown'} bit/s; size: {output.size_bytes} bytes",
             f"Level: RMS {output.rms_dbfs} dBFS, peak {output.peak_dbfs} dBFS; silence {output.silence_ratio:.0%}"]
    if output.has_video:
        lines.append("The file also has a video stream.")
    if output.tags:
        lines.append("Tags: " + ", ".join(f"{k}={v}" for k, v in sorted(output.tags.items())))
    return "\n".join(lines)
