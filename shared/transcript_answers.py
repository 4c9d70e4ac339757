"""Questions about a recording, answered from its timestamped transcript (tool-transcribe, tool-audio-enhanced).

With a chat model (role AUDIO; any OpenAI-compatible endpoint) the model answers from the
transcript and cites the times it relied on as [mm:ss]. Without one, the segments that best match
the question (character-bigram overlap, so Chinese and English alike) are returned with a plain
statement. Verification (i) decodes low-confidence segments a second time with beam search and
keeps the better reading, and (ii) checks every time the answer cites against the transcript,
asking once more with a correction when a cited time matches no segment; both can change the
result. The confidence is a heuristic, language-independent:

    confidence = 0.6 * transcript confidence + 0.4 * share of cited times that exist

where transcript confidence is the duration-weighted mean of exp(avg_logprob) over segments (the
citation term counts as 1 when the answer cites nothing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared import budget, chinese_text, numerals, speech_languages, transcription
from shared.cjk import has_han
from shared.models import ModelClient
from shared.textsim import bigrams
from shared.timecodes import cited_times, short_clock, span
from shared.transcription import Segment, Transcript
from shared.worker import ProgressFn, StopFlag

SYSTEM_PROMPT = (
    "You answer questions about an audio recording using only its transcript, given with timestamps as "
    "[mm:ss.s-mm:ss.s]. Cite the times you relied on as [mm:ss] right after each claim. If the transcript does "
    "not contain the answer, say so. The transcript is machine-made and may contain recognition errors. Answer in "
    "the language of the question."
)
LOW_CONFIDENCE_LOGPROB = -0.8
TRANSCRIPT_TOKENS = 12_000


@dataclass
class Answer:
    text: str
    model: str | None
    cited_times: list[float] = field(default_factory=list)
    invalid_times: list[float] = field(default_factory=list)
    relevant_segments: list[Segment] = field(default_factory=list)
    confidence: float | None = None
    verification: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


# Words every Chinese question carries ("what", "how many", "is it"...): matching them finds nothing.
_CHINESE_QUESTION_WORDS = ("什么", "多少", "哪些", "哪个", "哪里", "怎么", "怎样", "为什么", "是否", "是不是", "吗",
                           "呢", "请问", "一下", "说了", "提到", "录音", "音频", "里面", "中的", "的是")


def question_grams(question: str) -> set[str]:
    """The question's character bigrams, in simplified characters, without Chinese question words."""
    text = chinese_text.for_matching(question)
    if has_han(text):
        for word in _CHINESE_QUESTION_WORDS:
            text = text.replace(word, " ")
    grams = bigrams(text)
    # Bigrams that straddle a removed word (or a space) are not the question's words.
    spaced = {g for part in text.split() for g in bigrams(part)} if has_han(text) else grams
    return spaced or grams


def relevant_segments(segments: list[Segment], question: str, limit: int = 5) -> list[Segment]:
    """The segments sharing most character bigrams with the question (any language; Chinese questions in
    either script match a simplified transcript, and Arabic numerals match Chinese ones)."""
    wanted = question_grams(question) | question_grams(numerals.to_chinese(question))
    scored = []
    for segment in segments:
        grams = bigrams(chinese_text.for_matching(segment.text))
        grams |= bigrams(numerals.to_chinese(segment.text)) if has_han(segment.text) else set()
        if grams and wanted:
            score = len(grams & wanted) / len(wanted)
            if score > 0:
                scored.append((score, segment.start, segment))
    scored.sort(key=lambda item: (-item[0], item[1]))
    return sorted((s for _, _, s in scored[:limit]), key=lambda s: s.start)


def time_exists(moment: float, segments: list[Segment], slack: float = 1.5) -> bool:
    return any(s.start - slack <= moment <= s.end + slack for s in segments)


def transcript_confidence(segments: list[Segment]) -> float:
    weighted = [(max(s.end - s.start, 0.1), s.confidence) for s in segments if s.confidence is not None]
    if not weighted:
        return 0.0
    return round(sum(w * c for w, c in weighted) / sum(w for w, _ in weighted), 3)


@dataclass
class Heard:
    """A transcript ready for questions; with verification, the weak segments were decoded a second time."""

    transcript: Transcript
    redecoded: list[dict[str, Any]] | None = None


def hear(path: Path, *, verify: bool, language: str | None = None, progress: ProgressFn | None = None,
         stop: StopFlag | None = None) -> Heard:
    """Everything that needs the audio itself: the transcript and, with verification, the second decoding."""
    transcript = transcription.transcribe_file(path, language=language, progress=progress, stop=stop)
    if not verify:
        return Heard(transcript)
    _code, traditional = speech_languages.normalise(language)
    script = "traditional" if traditional else chinese_text.chosen_script()
    return Heard(transcript, refine_low_confidence(path, transcript, script=script, stop=stop))


def refine_low_confidence(path: Path, transcript: Transcript, limit: int = 8, *, script: str = "simplified",
                          stop: StopFlag | None = None) -> list[dict[str, Any]]:
    """Second decoding pass (beam 5, no VAD) on the least confident segments, by the model and in the language of
    the first pass; keeps better readings."""
    if transcript.backend != "local":
        return []
    changes = []
    weak = sorted((s for s in transcript.segments if s.avg_logprob is not None
                   and s.avg_logprob < LOW_CONFIDENCE_LOGPROB), key=lambda s: s.avg_logprob or 0)[:limit]
    for segment in weak:
        if stop is not None:
            stop.check("verification")
        text, logprob = transcription.retranscribe(path, segment.start, segment.end, model=transcript.model,
                                                   language=transcript.language)
        if chinese_text.is_chinese(transcript.language):
            text = chinese_text.tidy(text, script)
        if text and logprob is not None and logprob > (segment.avg_logprob or -99):
            changes.append({"start": segment.start, "before": segment.text, "after": text,
                            "avg_logprob_before": segment.avg_logprob, "avg_logprob_after": logprob})
            segment.text, segment.avg_logprob = text, logprob
    if changes:
        transcript.text = transcription.joined_text(transcript.segments, transcript.language)
    return changes


def _transcript_for_prompt(segments: list[Segment], question: str) -> tuple[str, bool]:
    full = transcription.timestamped(segments)
    if budget.count_tokens(full) <= TRANSCRIPT_TOKENS:
        return full, False
    keep: set[int] = set()
    for segment in relevant_segments(segments, question, limit=40):
        keep.update(range(max(segment.id - 2, 0), segment.id + 3))
    chosen = [s for s in segments if s.id in keep] or segments[:200]
    text = budget.prefix_within(transcription.timestamped(chosen), TRANSCRIPT_TOKENS)
    return text, True


async def answer(heard: Heard, question: str, *, verify: bool) -> Answer:
    transcript = heard.transcript
    notes: list[str] = []
    verification: dict[str, Any] | None = {"redecoded_segments": heard.redecoded or []} if verify else None
    relevant = relevant_segments(transcript.segments, question)
    client = ModelClient("AUDIO", purpose="chat")
    reason = client.unavailable()
    if reason:
        lines = [client.unanswered("the question cannot be answered from the transcript"),
                 "Transcript segments that best match the question:" if relevant else
                 "No transcript segment matches the question's words."]
        lines += [f"[{span(s.start, s.end)}] {s.text}" for s in relevant]
        return Answer(text="\n".join(lines), model=None, relevant_segments=relevant,
                      confidence=transcript_confidence(transcript.segments) if verify else None,
                      verification=verification, notes=[reason])
    prompt_transcript, partial = _transcript_for_prompt(transcript.segments, question)
    if partial:
        notes.append("the transcript was too long for one prompt: the parts around matching segments were sent")
    messages = [{"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": f"Transcript (language: {transcript.language or 'unknown'}):\n"
                                            f"{prompt_transcript}\n\nQuestion: {question}"}]
    try:
        reply = await client.chat(messages, max_tokens=1500)
        text = reply.text
        times = cited_times(text)
        invalid = [t for t in times if not time_exists(t, transcript.segments)]
        if verify and invalid:
            shown = ", ".join(short_clock(t) for t in invalid)
            messages += [{"role": "assistant", "content": text},
                         {"role": "user", "content": f"These cited times match no transcript segment: {shown}. "
                                                     "Answer again, citing only times that appear in the transcript."}]
            second = await client.chat(messages, max_tokens=1500)
            verification["first_answer"] = text
            verification["invalid_times_in_first_answer"] = invalid
            text, reply = second.text, second
            times = cited_times(text)
            invalid = [t for t in times if not time_exists(t, transcript.segments)]
    finally:
        await client.close()
    confidence = None
    if verify:
        citations = 1.0 if not times else (len(times) - len(invalid)) / len(times)
        confidence = round(0.6 * transcript_confidence(transcript.segments) + 0.4 * citations, 3)
        verification["cited_times"] = times
        verification["invalid_times"] = invalid
    return Answer(text=text, model=reply.model, cited_times=times, invalid_times=invalid, relevant_segments=relevant,
                  confidence=confidence, verification=verification, notes=notes)
