"""tool-audio-enhanced: transcripts, metadata and verified answers about audio."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context
from pydantic import Field

from servers import registry
from servers.audio_tools import calls
from servers.audio_tools.arguments import Language
from servers.audio_tools.outputs import AnswerOutput, MetadataOutput, TranscriptOutput
from shared.params import EnableVerification, PathOrUrl, Question
from shared.server import READ_ONLY_LOCAL, READ_ONLY_OPEN, REMOTE_MODEL, Progress, ToolResult, add_tool, create_server

VERIFY_NOTE = (
    "Verification decodes low-confidence segments a second time (beam search) and keeps the better reading, and "
    "checks that every time the answer cites exists in the transcript, asking once more when one does not; either "
    "can change the result. Confidence is a heuristic: 0.6 x duration-weighted decoding confidence + 0.4 x share of "
    "cited times that exist."
)


AUDIO_UNDERSTANDING_ADVANCED_DESCRIPTION = (
    "Transcribe and understand audio: answer a question (or summarise) from the timestamped transcript, citing "
    "times. " + VERIFY_NOTE + " Without a chat model: matching segments and the transcript."
)


async def audio_understanding_advanced(
    audio_path_or_url: PathOrUrl,
    ctx: Context,
    question: Annotated[str | None, Field(description="A question about the audio; omit for a summary with times.",
                                          max_length=20_000)] = None,
    enable_verification: EnableVerification = True,
    language: Language = None,
) -> ToolResult:
    """Described by AUDIO_UNDERSTANDING_ADVANCED_DESCRIPTION (shared wording about verification)."""
    return await calls.answer(audio_path_or_url, question, verify=enable_verification, progress=Progress(ctx),
                              language=language)


async def audio_quick_transcription(audio_path_or_url: PathOrUrl, ctx: Context,
                                    language: Language = None) -> ToolResult:
    """Transcribe audio in one pass (greedy decoding, VAD): timestamped segments, language (detected from the first
    30 s of speech unless given), duration, and which model transcribed and why."""
    return await calls.transcribe(audio_path_or_url, "segments", Progress(ctx), language=language)


async def audio_extract_metadata(audio_path_or_url: PathOrUrl) -> ToolResult:
    """Audio metadata: container, codec, duration, sample rate, channels, bit rate, size, tags, whether a video
    stream is present, RMS and peak level (dBFS) and the share of silence."""
    return await calls.metadata(audio_path_or_url)


async def audio_question_answering_enhanced(audio_path_or_url: PathOrUrl, question: Question,
                                            ctx: Context, language: Language = None) -> ToolResult:
    """Answer a question about audio from its transcript with verification (see audio_understanding_advanced),
    citing the times relied on. Questions and recordings may be in any language."""
    return await calls.answer(audio_path_or_url, question, verify=True, progress=Progress(ctx), language=language)


def build():
    server = create_server(registry.name_of(__name__), "Transcripts, metadata and verified answers about audio.")
    add_tool(server, audio_understanding_advanced, title="Understand audio", output=AnswerOutput,
             description=AUDIO_UNDERSTANDING_ADVANCED_DESCRIPTION,
             annotations=REMOTE_MODEL)
    add_tool(server, audio_quick_transcription, title="Quick transcription", output=TranscriptOutput,
             annotations=READ_ONLY_OPEN)
    add_tool(server, audio_extract_metadata, title="Audio metadata", output=MetadataOutput,
             annotations=READ_ONLY_LOCAL)
    add_tool(server, audio_question_answering_enhanced, title="Ask about audio (verified)", output=AnswerOutput,
             annotations=REMOTE_MODEL)
    return server
