"""tool-transcribe: speech to text and questions about audio. Interface complete; engine pending."""

from __future__ import annotations

from shared.params import PathOrUrl, Question
from shared.server import READ_ONLY_OPEN, REMOTE_MODEL, PendingOutput, add_tool, create_server, pending_tool
from shared.transport import run_server

NAME = "tool-transcribe"


def audio_transcription(audio_path_or_url: PathOrUrl) -> None:
    """Transcribe speech from an audio file (or a video's audio track) with timestamps, locally."""
    return pending_tool(NAME, "audio_transcription")


def audio_question_answering(audio_path_or_url: PathOrUrl, question: Question) -> None:
    """Answer a question about an audio file from its timestamped transcript."""
    return pending_tool(NAME, "audio_question_answering")


def build():
    server = create_server(NAME, "Transcribes audio and answers questions about it.")
    add_tool(server, audio_transcription, title="Transcribe audio", output=PendingOutput,
             annotations=READ_ONLY_OPEN)
    add_tool(server, audio_question_answering, title="Ask about audio", output=PendingOutput,
             annotations=REMOTE_MODEL)
    return server


def main() -> None:
    from servers.registry import entry

    run_server(NAME, entry(NAME).port, build)
