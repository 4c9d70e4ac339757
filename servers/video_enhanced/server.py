"""tool-video-enhanced: the MCP face of the video timeline engine and its answers."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context
from pydantic import Field

from servers import registry
from servers.video_enhanced import answer, engine
from servers.video_enhanced.outputs import VideoOutput, video_output
from shared import worker
from shared.inputs import LocalInput
from shared.models import ModelClient
from shared.params import EnableVerification, PathOrUrl, Question
from shared.server import READ_ONLY_OPEN, REMOTE_MODEL, Image, Progress, ToolResult, add_tool, create_server
from shared.worker import Job

MAX_IMAGE_BYTES = 3 * 2**20

OptionalQuestion = Annotated[str | None, Field(description="A question about the video; omit for a summary.",
                                               max_length=20_000)]
Seconds = Annotated[float | None, Field(description="Seconds from the start of the video.", ge=0)]


async def _timeline(source: str, ctx: Context, **options: Any) -> tuple[engine.Timeline, str]:
    def work(item: LocalInput, job: Job) -> engine.Timeline:
        return engine.analyse(item.path, progress=job.progress, stop=job.stop, **options)

    return await worker.run_on_input(source, work, progress=Progress(ctx))


def _images(timeline: engine.Timeline) -> list[Image]:
    images, total = [], 0
    for frame in timeline.keyframes:
        if total + len(frame.jpeg) > MAX_IMAGE_BYTES:
            break
        images.append(Image(frame.jpeg, "image/jpeg"))
        total += len(frame.jpeg)
    return images


async def _answer(source: str, question: str | None, ctx: Context, *, verify: bool, keyframes: int,
                  start: float | None = None, end: float | None = None) -> ToolResult:
    timeline, label = await _timeline(source, ctx, start=start, end=end, keyframes=keyframes)
    reply = await answer.respond(timeline, question, verify=verify)
    text = reply.text
    if reply.confidence is not None and reply.verification is not None:
        text += f"\n\n[verification: heuristic confidence {reply.confidence:.2f}" + (
            "; the answer was reconciled from two frame samples" if reply.verification.reconciled else "") + "]"
    images = _images(timeline) if reply.answer is None else []
    return ToolResult(text=text, data=video_output(timeline, label, reply), images=images)


VERIFY = ("Verification asks again with a different frame sample and checks the times the answer claims; when the "
          "two answers disagree the model reconciles them, so the answer can change. Confidence is a heuristic: "
          "1.0 when both agree and every claimed time is valid, 0.6 after reconciliation, minus 0.3 for claimed "
          "times outside the video.")


VIDEO_UNDERSTANDING_ADVANCED_DESCRIPTION = (
    "Understand a video: scene cuts, keyframes, on-screen text (OCR) and speech (transcript) are extracted locally "
    "into a timeline, then the vision model sees up to TOOLSUITE_VIDEO_MODEL_FRAMES (8) keyframes with their "
    "times plus the text and speech, in one call, and answers the question (or summarises). " + VERIFY +
    " Without a vision model: the timeline and the keyframe images."
)


async def video_understanding_advanced(video_path: PathOrUrl, ctx: Context, question: OptionalQuestion = None,
                                       enable_verification: EnableVerification = True) -> ToolResult:
    """Described by VIDEO_UNDERSTANDING_ADVANCED_DESCRIPTION (shared wording about verification)."""
    return await _answer(video_path, question, ctx, verify=enable_verification, keyframes=12)


async def video_quick_analysis(video_path: PathOrUrl, ctx: Context, question: OptionalQuestion = None) -> ToolResult:
    """A fast look at a video: metadata, scenes, 6 keyframes, on-screen text and speech, one model pass (no
    verification). Without a vision model: the timeline and keyframes."""
    return await _answer(video_path, question, ctx, verify=False, keyframes=6)


async def video_extract_keyframes(
    video_path: PathOrUrl,
    ctx: Context,
    max_keyframes: Annotated[int, Field(description="Most keyframes to return (1-50).", ge=1, le=50)] = 10,
) -> ToolResult:
    """Detect scene cuts and return keyframes: one per scene (its middle frame), then uniform frames to fill gaps,
    as timestamps, scene spans, on-screen text and downscaled JPEG images (at most 3 MB in all). Local only."""
    timeline, label = await _timeline(video_path, ctx, keyframes=max_keyframes, with_speech=False)
    images = _images(timeline)
    note = [] if len(images) == len(timeline.keyframes) else \
        [f"{len(timeline.keyframes) - len(images)} keyframe images left out to stay under 3 MB"]
    reply = answer.VideoAnswer(timeline.render(), None, None, ModelClient("VISION").configured, notes=note)
    return ToolResult(text=reply.text, data=video_output(timeline, label, reply), images=images)


VIDEO_TEMPORAL_QA_DESCRIPTION = (
    "Answer a question about a time range of a video: frames are sampled only inside [start_time, end_time] "
    "(seconds; defaults: the whole video), and only that range's on-screen text and speech are given to the vision "
    "model. " + VERIFY + " Without a vision model: the range's timeline and keyframes."
)


async def video_temporal_qa(video_path: PathOrUrl, question: Question, ctx: Context, start_time: Seconds = None,
                            end_time: Seconds = None, enable_verification: EnableVerification = True) -> ToolResult:
    """Described by VIDEO_TEMPORAL_QA_DESCRIPTION (shared wording about verification)."""
    return await _answer(video_path, question, ctx, verify=enable_verification, keyframes=10, start=start_time,
                         end=end_time)


def build():
    server = create_server(registry.name_of(__name__),
                           "Scenes, keyframes, on-screen text and speech of videos, and answers about them.")
    add_tool(server, video_understanding_advanced, title="Understand a video", output=VideoOutput,
             description=VIDEO_UNDERSTANDING_ADVANCED_DESCRIPTION,
             annotations=REMOTE_MODEL)
    add_tool(server, video_quick_analysis, title="Quick video analysis", output=VideoOutput, annotations=REMOTE_MODEL)
    add_tool(server, video_extract_keyframes, title="Extract keyframes", output=VideoOutput,
             annotations=READ_ONLY_OPEN)
    add_tool(server, video_temporal_qa, title="Ask about a time range", output=VideoOutput,
             description=VIDEO_TEMPORAL_QA_DESCRIPTION, annotations=REMOTE_MODEL)
    return server
