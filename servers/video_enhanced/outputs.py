"""tool-video-enhanced's structured result, read from the timeline and answer engine types; the engine
dataclasses that need no renaming or hiding are the schema themselves."""

from __future__ import annotations

from pydantic import BaseModel, Field

from servers.video_enhanced.answer import Verification, VideoAnswer
from servers.video_enhanced.engine import Keyframe, Scene, ScreenText, Spoken, Timeline, VideoInfo
from shared.outputs import from_engine, mirrors


@mirrors(Keyframe, leave_out={"jpeg": "attached as image content"})
class KeyframeModel(BaseModel):
    time: float
    scene: int | None
    reason: str = Field(description="'scene' (the middle of a scene) or 'uniform' (filling a gap).")
    ocr_text: str


@mirrors(Verification)
class VerificationModel(BaseModel):
    second_sample_frames: list[float] = Field(description="Times of the frames the second look saw.")
    different_frames: bool
    agreement: float = Field(description="Character-bigram overlap of the two answers, 0-1.")
    first_answer: str
    second_answer: str
    reconciled: bool = Field(description="The answers disagreed and the model reconciled them.")
    times_outside_range: list[float] = Field(description="Claimed times outside the analysed range.")
    changed_from_first: bool


@mirrors(Timeline, leave_out={"info": "shown as metadata", "start": "shown in range", "end": "shown in range",
                              "transcript_language": "shown in the text", "speech_transcribed": "shown in the text"})
@mirrors(VideoAnswer, leave_out={"text": "the text block"})
class VideoOutput(BaseModel):
    source: str
    answer: str | None = Field(description="The vision model's answer; null without a model or question.")
    model: str | None
    model_configured: bool
    confidence: float | None = Field(description="Heuristic (see the tool description); null without verification.")
    verification: VerificationModel | None
    metadata: VideoInfo
    range: list[float] = Field(description="[start, end] seconds analysed.")
    scenes: list[Scene]
    cuts: list[float] = Field(description="Scene-cut times in seconds.")
    keyframes: list[KeyframeModel]
    screen_text: list[ScreenText]
    transcript: list[Spoken]
    frames_sent: list[float] = Field(description="Times of the frames the model saw.")
    notes: list[str]
    seconds: dict[str, float]
    cached: bool


def video_output(timeline: Timeline, source: str, reply: VideoAnswer) -> VideoOutput:
    return from_engine(VideoOutput, reply, timeline, source=source, metadata=timeline.info,
                       range=[timeline.start, timeline.end], notes=timeline.notes + reply.notes)
