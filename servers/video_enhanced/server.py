"""tool-video-enhanced: a timeline of what a video shows and says. Interface complete; engine pending."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from shared.params import EnableVerification, PathOrUrl, Question
from shared.server import READ_ONLY_OPEN, REMOTE_MODEL, PendingOutput, add_tool, create_server, pending_tool
from shared.transport import run_server

NAME = "tool-video-enhanced"

OptionalQuestion = Annotated[str | None, Field(description="A question about the video; omit for a summary.",
                                               max_length=20_000)]
Seconds = Annotated[float | None, Field(description="Time in seconds from the start of the video.", ge=0)]


def video_understanding_advanced(video_path: PathOrUrl, question: OptionalQuestion = None,
                                 enable_verification: EnableVerification = True) -> None:
    """Understand a video from its keyframes, on-screen text and transcript, optionally answering a question."""
    return pending_tool(NAME, "video_understanding_advanced")


def video_quick_analysis(video_path: PathOrUrl, question: OptionalQuestion = None) -> None:
    """A fast look at a video: metadata, a few keyframes, one model pass."""
    return pending_tool(NAME, "video_quick_analysis")


def video_extract_keyframes(
    video_path: PathOrUrl,
    max_keyframes: Annotated[int, Field(description="Most keyframes to return (1-50).", ge=1, le=50)] = 10,
) -> None:
    """Detect scenes and return keyframes (timestamps, scene spans and images)."""
    return pending_tool(NAME, "video_extract_keyframes")


def video_temporal_qa(video_path: PathOrUrl, question: Question, start_time: Seconds = None,
                      end_time: Seconds = None, enable_verification: EnableVerification = True) -> None:
    """Answer a question about a time range of a video, sampling frames only inside [start_time, end_time]."""
    return pending_tool(NAME, "video_temporal_qa")


def build():
    server = create_server(NAME, "Scenes, keyframes, on-screen text and speech of videos.")
    add_tool(server, video_understanding_advanced, title="Understand a video", output=PendingOutput,
             annotations=REMOTE_MODEL)
    add_tool(server, video_quick_analysis, title="Quick video analysis", output=PendingOutput,
             annotations=REMOTE_MODEL)
    add_tool(server, video_extract_keyframes, title="Extract keyframes", output=PendingOutput,
             annotations=READ_ONLY_OPEN)
    add_tool(server, video_temporal_qa, title="Ask about a time range", output=PendingOutput,
             annotations=REMOTE_MODEL)
    return server


def main() -> None:
    from servers.registry import entry

    run_server(NAME, entry(NAME).port, build)
