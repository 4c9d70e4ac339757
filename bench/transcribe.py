"""Transcription figures on a generated 10-minute English speech file (espeak-ng, known text).

Reports model load time, wall time, real-time factor and word error rate of the shared engine
directly, then the same file through the MCP in-memory client (cache emptied first) to show what
the protocol adds, then a second question about the file (served from the transcript cache).
Targets on this machine: RTF under 0.1 with the bundled model, WER under 5 % on synthetic speech,
the second question under 1 s. Needs espeak-ng (apt-get install espeak-ng).
Run: `.venv/bin/python bench/transcribe.py [minutes]`.
"""

from __future__ import annotations

import os
import random
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from common import work_area  # noqa: E402

WORK = work_area("transcribe")

SENTENCES = [
    "Research agents read long reports and answer questions about them.",
    "The quarterly revenue grew while costs stayed flat.",
    "Our team will meet on Monday morning to review the budget.",
    "Please send your comments before Friday so that we can update the document.",
    "The new policy requires every platform to keep records for a longer time.",
    "Customers expect clear prices and fast delivery from online shops.",
    "The committee approved the plan after a short discussion.",
    "Local farmers now sell fresh fruit through live video streams.",
    "A good summary keeps the main points and leaves out the details.",
    "The library opens early in the morning and closes late at night.",
    "Engineers tested the system under heavy load for several days.",
    "The report explains how small businesses can reach new markets.",
    "Heavy rain delayed the train, so the passengers waited at the station.",
    "Students prepared their projects and presented them to the class.",
    "The museum shows old paintings and modern sculptures side by side.",
    "Doctors advise people to sleep well and to walk every day.",
]


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z' ]", " ", text.lower()).split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    ref, hyp = words(reference), words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, 1):
        previous, row = row, [i] + [0] * len(hyp)
        for j, other in enumerate(hyp, 1):
            row[j] = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (word != other))
    return row[len(hyp)] / max(len(ref), 1)


def make_speech(path: Path, minutes: float) -> str:
    rng = random.Random(7)
    text: list[str] = []
    while len(" ".join(text).split()) < minutes * 130:  # about 130 words a minute at this rate
        text.append(rng.choice(SENTENCES))
    script = " ".join(text)
    wav = path.with_suffix(".wav")
    subprocess.run(["espeak-ng", "-v", "en-gb", "-s", "140", "-w", str(wav), script], check=True)
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(wav), "-ac", "1", "-c:a", "libmp3lame", "-b:a",
                    "48k", str(path)], check=True)
    wav.unlink()
    return script


async def through_mcp(name: str) -> tuple[float, float, str, bool]:
    from mcp import Client

    from servers.transcribe.server import build

    async with Client(build()) as client:
        started = time.perf_counter()
        first = await client.call_tool("audio_transcription", {"audio_path_or_url": name, "format": "text"})
        wall = time.perf_counter() - started
        started = time.perf_counter()
        second = await client.call_tool("audio_question_answering",
                                        {"audio_path_or_url": name, "question": "When is the budget reviewed?"})
        again = time.perf_counter() - started
    return wall, again, first.structured_content["text"], second.structured_content["transcript"]["cached"]


def main() -> None:
    import anyio

    from shared import audio, transcription

    if shutil.which("espeak-ng") is None or shutil.which("ffmpeg") is None:
        print("skipped: espeak-ng and ffmpeg are needed (apt-get install espeak-ng ffmpeg)")
        return
    minutes = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    speech = WORK / "speech.mp3"
    script = make_speech(speech, minutes)
    duration = audio.probe(speech).duration or 0.0
    print(f"generated {duration / 60:.1f} minutes of espeak-ng speech ({len(script.split())} words), MP3 48 kbit/s")

    started = time.perf_counter()
    transcription.whisper()
    load = time.perf_counter() - started
    print(f"model: {transcription.local_model_name()}, load {load:.2f} s, "
          f"{os.environ.get('TOOLSUITE_TRANSCRIBE_THREADS', '1')} thread(s)")

    started = time.perf_counter()
    direct = transcription.transcribe_file(speech)
    wall = time.perf_counter() - started
    print(f"engine directly:   {wall:6.1f} s wall, RTF {wall / duration:.3f}, WER "
          f"{word_error_rate(script, direct.text) * 100:.1f} %, {len(direct.segments)} segments "
          "(targets: RTF < 0.1, WER < 5 %)")

    shutil.rmtree(WORK / "cache", ignore_errors=True)
    mcp_wall, again, text, cached = anyio.run(through_mcp, speech.name)
    print(f"through MCP:       {mcp_wall:6.1f} s wall, RTF {mcp_wall / duration:.3f}, WER "
          f"{word_error_rate(script, text) * 100:.1f} % (protocol adds {mcp_wall - wall:+.1f} s)")
    print(f"second question on the same file: {again * 1000:.0f} ms (transcript from cache: {cached}; target < 1 s)")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
