"""Each audio tool call from input to result: the input opened and the engine run through
`shared.worker`, then the answer, shaped by `outputs`."""

from __future__ import annotations

from servers.audio_tools import outputs
from shared import audio, transcript_answers, transcription, worker
from shared.inputs import LocalInput
from shared.server import ToolResult
from shared.worker import Job, ProgressFn

SUMMARY_QUESTION = "Summarise what is said, with the main points and their times, in the language of the recording."


async def transcribe(source: str, fmt: str, progress: ProgressFn | None = None, *, language: str | None = None,
                     word_timestamps: bool = False) -> ToolResult:
    def work(item: LocalInput, job: Job) -> transcription.Transcript:
        return transcription.transcribe_file(item.path, language=language, word_timestamps=word_timestamps,
                                             progress=job.progress, stop=job.stop)

    transcript, label = await worker.run_on_input(source, work, progress=progress)
    return ToolResult(text=outputs.transcript_text(transcript, fmt),
                      data=outputs.transcript_output(transcript, label, fmt))


async def answer(source: str, question: str | None, *, verify: bool, progress: ProgressFn | None = None,
                 language: str | None = None) -> ToolResult:
    def work(item: LocalInput, job: Job) -> transcript_answers.Heard:
        return transcript_answers.hear(item.path, verify=verify, language=language, progress=job.progress,
                                       stop=job.stop)

    heard, label = await worker.run_on_input(source, work, progress=progress)
    result = await transcript_answers.answer(heard, question or SUMMARY_QUESTION, verify=verify)
    return ToolResult(text=outputs.answer_text(result, heard.transcript),
                      data=outputs.answer_output(result, heard.transcript, label, question))


async def metadata(source: str) -> ToolResult:
    def work(item: LocalInput, job: Job) -> tuple[audio.AudioInfo, audio.Loudness]:
        return audio.probe(item.path), audio.loudness(item.path)

    (info, level), label = await worker.run_on_input(source, work)
    output = outputs.metadata_output(info, level, label)
    return ToolResult(text=outputs.metadata_text(output), data=output)
