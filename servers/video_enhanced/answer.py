"""Answers about a video from its timeline, knowing nothing about MCP: one vision-model call with
keyframes (with their times), on-screen text and transcript excerpts. Verification re-asks with a
different frame sample and checks the times the answer claims against the analysed range; when the
two answers disagree the model reconciles them, so the result can change. Confidence is a heuristic:
1.0 when both samples agree and every claimed time is valid, 0.6 after a reconciliation, less 0.3
when a claimed time still falls outside the video (or the asked range).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from servers.video_enhanced.engine import Keyframe, Timeline
from shared import settings, textsim
from shared.models import ModelClient, image_part
from shared.timecodes import cited_times, short_clock

SYSTEM_PROMPT = (
    "You answer questions about a video from frames sampled at the given times, the text read on screen (OCR) and "
    "the transcript of its speech. Cite times as [mm:ss]. Only claim what the frames, text or speech show; say so "
    "when they do not answer the question. Answer in the language of the question."
)


SUMMARY_QUESTION = "Describe what happens in the video, scene by scene, with times."


@dataclass
class Verification:
    second_sample_frames: list[float]
    different_frames: bool
    agreement: float
    first_answer: str
    second_answer: str
    reconciled: bool = False
    times_outside_range: list[float] = field(default_factory=list)
    changed_from_first: bool = False


@dataclass
class VideoAnswer:
    text: str  # the model's answer; without a model, why not and the timeline
    answer: str | None
    model: str | None
    model_configured: bool
    confidence: float | None = None
    verification: Verification | None = None
    frames_sent: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def frames_budget() -> int:
    return int(settings.number("TOOLSUITE_VIDEO_MODEL_FRAMES", 8, minimum=1))


def _messages(timeline: Timeline, frames: list[Keyframe], question: str) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = [{"type": "text", "text": f"Timeline of the video:\n{timeline.render()}"}]
    for frame in frames:
        content.append({"type": "text", "text": f"Frame at {short_clock(frame.time)}:"})
        content.append(image_part(frame.jpeg, "image/jpeg"))
    scope = ""
    if (timeline.start, timeline.end) != (0.0, timeline.info.duration):
        scope = f" (about the part from {short_clock(timeline.start)} to {short_clock(timeline.end)})"
    content.append({"type": "text", "text": f"Question{scope}: {question}"})
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": content}]


def _pick(frames: list[Keyframe], count: int, offset: int = 0) -> list[Keyframe]:
    if len(frames) <= count:
        return frames
    stride = len(frames) / count
    return [frames[min(len(frames) - 1, int(i * stride + offset * stride / 2))] for i in range(count)]


def invalid_times(text: str, timeline: Timeline) -> list[float]:
    return [t for t in cited_times(text) if not (timeline.start - 1 <= t <= timeline.end + 1)]


async def respond(timeline: Timeline, question: str | None, *, verify: bool) -> VideoAnswer:
    """The vision model's answer about the timeline (a summary without a question), or the timeline itself
    with the reason when no vision model can be used."""
    client = ModelClient("VISION", purpose="vision")
    reason = client.unavailable()
    if reason:
        text = (client.unanswered("the question cannot be answered by watching the video")
                + f" Here is the timeline local analysis found; the keyframes are attached.\n\n{timeline.render()}")
        return VideoAnswer(text, None, None, client.configured, notes=[reason])
    try:
        return await ask(client, timeline, question or SUMMARY_QUESTION, verify=verify)
    finally:
        await client.close()


async def ask(client: ModelClient, timeline: Timeline, question: str, *, verify: bool) -> VideoAnswer:
    budget = frames_budget()
    first_frames = _pick(timeline.keyframes, budget)
    first = await client.chat(_messages(timeline, first_frames, question), max_tokens=1500)
    if not verify:
        return VideoAnswer(first.text, first.text, first.model, True, frames_sent=[f.time for f in first_frames])
    other_frames = _pick(timeline.keyframes, budget, offset=1)
    different_sample = [f.time for f in other_frames] != [f.time for f in first_frames]
    second = await client.chat(_messages(timeline, other_frames, question), max_tokens=1500,
                               temperature=None if different_sample else 0.8)
    agreement = textsim.similarity(first.text, second.text)
    details = Verification(second_sample_frames=[f.time for f in other_frames], different_frames=different_sample,
                           agreement=round(agreement, 3), first_answer=first.text, second_answer=second.text)
    final, model, confidence = first.text, first.model, 1.0
    if agreement < 0.5:
        union = sorted({f.time: f for f in first_frames + other_frames}.values(), key=lambda f: f.time)
        messages = _messages(timeline, _pick(union, budget), question)
        messages.append({"role": "assistant", "content": first.text})
        messages.append({"role": "user", "content": "Another look at different frames answered:\n"
                                                    f"{second.text}\n\nCheck both against the frames, text and "
                                                    "speech and give the correct final answer."})
        reconciled = await client.chat(messages, max_tokens=1500)
        final, model, confidence = reconciled.text, reconciled.model, 0.6
        details.reconciled = True
    details.times_outside_range = invalid_times(final, timeline)
    if details.times_outside_range:
        confidence -= 0.3
    details.changed_from_first = textsim.similarity(final, first.text) < 0.5
    return VideoAnswer(final, final, model, True, round(max(confidence, 0.0), 2), details,
                       frames_sent=[f.time for f in first_frames])
