"""tool-transcribe: local speech recognition and questions about audio."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context
from pydantic import Field

from servers import registry
from servers.audio_tools import calls
from servers.audio_tools.arguments import Language
from servers.audio_tools.outputs import AnswerOutput, TranscriptFormat, TranscriptOutput
from shared.params import PathOrUrl, Question
from shared.server import READ_ONLY_OPEN, REMOTE_MODEL, Progress, ToolResult, add_tool, create_server

Format = Annotated[TranscriptFormat, Field(description="Text layout: 'segments' (timestamped lines, default), "
                                           "'text', 'srt' or 'vtt'.")]
Words = Annotated[bool, Field(description="Include word-level timestamps in the structured result.")]


async def audio_transcription(audio_path_or_url: PathOrUrl, ctx: Context, format: Format = "segments",
                              language: Language = None, word_timestamps: Words = False) -> ToolResult:
    """Transcribe speech in an audio file (wav, mp3, m4a, ogg, flac, opus, aac...) or the audio track of a video,
    locally with faster-whisper (or the configured transcription endpoint), in any of Whisper's 99 languages.

    The language is detected from the first 30 s of speech unless `language` is given; the result names the model
    that transcribed and why. Mandarin comes back in simplified characters with Chinese punctuation. Returns
    timestamped segments, the language and its probability, and SRT/VTT renderings on request. Silence is skipped
    (VAD). Long files are processed as a stream with progress notifications; transcripts are cached, so asking
    again about the same file is instant. Limit: TOOLSUITE_AUDIO_MAX_SECONDS (4 h).
    """
    return await calls.transcribe(audio_path_or_url, format, Progress(ctx), language=language,
                                  word_timestamps=word_timestamps)


async def audio_question_answering(audio_path_or_url: PathOrUrl, question: Question, ctx: Context,
                                   language: Language = None) -> ToolResult:
    """Answer a question about an audio file from its timestamped transcript; the answer cites times as [mm:ss].

    Questions and recordings may be in any language (a Chinese question about a Mandarin recording works).
    Needs a chat model (TOOLSUITE_AUDIO_MODEL and base URL/key); without one, the transcript segments that match
    the question and the full transcript are returned with a statement that no model is configured.
    """
    return await calls.answer(audio_path_or_url, question, verify=False, progress=Progress(ctx), language=language)


def build():
    server = create_server(registry.name_of(__name__), "Transcribes speech locally and answers questions about audio.")
    add_tool(server, audio_transcription, title="Transcribe audio", output=TranscriptOutput,
             annotations=READ_ONLY_OPEN)
    add_tool(server, audio_question_answering, title="Ask about audio", output=AnswerOutput,
             annotations=REMOTE_MODEL)
    return server
