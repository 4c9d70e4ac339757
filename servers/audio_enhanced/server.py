"""tool-audio-enhanced: transcripts, metadata and verified answers about audio. Engine pending."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from shared.params import EnableVerification, PathOrUrl, Question
from shared.server import READ_ONLY_OPEN, REMOTE_MODEL, PendingOutput, add_tool, create_server, pending_tool
from shared.transport import run_server

NAME = "tool-audio-enhanced"


def audio_understanding_advanced(
    audio_path_or_url: PathOrUrl,
    question: Annotated[str | None, Field(description="A question about the audio; omit for a summary.",
                                          max_length=20_000)] = None,
    enable_verification: EnableVerification = True,
) -> None:
    """Transcribe and understand audio, optionally answering a question with verified time citations."""
    return pending_tool(NAME, "audio_understanding_advanced")


def audio_quick_transcription(audio_path_or_url: PathOrUrl) -> None:
    """Transcribe audio quickly (one pass, timestamps)."""
    return pending_tool(NAME, "audio_quick_transcription")


def audio_extract_metadata(audio_path_or_url: PathOrUrl) -> None:
    """Audio metadata: duration, sample rate, channels, codec, bit rate, tags, loudness, silence ratio."""
    return pending_tool(NAME, "audio_extract_metadata")


def audio_question_answering_enhanced(audio_path_or_url: PathOrUrl, question: Question) -> None:
    """Answer a question about audio from its transcript, citing the times relied on."""
    return pending_tool(NAME, "audio_question_answering_enhanced")


def build():
    server = create_server(NAME, "Transcripts, metadata and verified answers about audio.")
    add_tool(server, audio_understanding_advanced, title="Understand audio", output=PendingOutput,
             annotations=REMOTE_MODEL)
    add_tool(server, audio_quick_transcription, title="Quick transcription", output=PendingOutput,
             annotations=READ_ONLY_OPEN)
    add_tool(server, audio_extract_metadata, title="Audio metadata", output=PendingOutput,
             annotations=READ_ONLY_OPEN)
    add_tool(server, audio_question_answering_enhanced, title="Ask about audio", output=PendingOutput,
             annotations=REMOTE_MODEL)
    return server


def main() -> None:
    from servers.registry import entry

    run_server(NAME, entry(NAME).port, build)
