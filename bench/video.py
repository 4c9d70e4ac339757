"""tool-video-enhanced figures on generated videos (tests/media.py: scene cuts at known times, a caption
per scene, an espeak-ng speech track muxed in).

Reports scene-cut precision/recall (a cut counts when found within 0.5 s), recall of the on-screen
captions, transcript WER, and the wall time of the full timeline (scenes, keyframes, OCR, speech)
for a 60 s 720p video and a 10-minute one. Targets on this machine: every known cut found within
0.5 s; the 60 s timeline in under 10 s including transcription. Needs espeak-ng.
Run: `.venv/bin/python bench/video.py`.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from common import work_area  # noqa: E402

WORK = work_area("video")

from tests.error_rates import word_error_rate  # noqa: E402
from tests.media import make_video  # noqa: E402

# What the speech track says, drawn at random; no numbers, so WER does not depend on how digits are written.
SENTENCES = (
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
)

CAPTIONS = ["HARBOUR", "MARKET", "STATION", "GARDEN", "LIBRARY", "MUSEUM", "BRIDGE", "FACTORY", "STADIUM", "AIRPORT"]


def speech(path: Path, seconds: float) -> str:
    rng = random.Random(3)
    text: list[str] = []
    while len(" ".join(text).split()) < seconds / 60 * 125:
        text.append(rng.choice(SENTENCES))
    script = " ".join(text)
    subprocess.run(["espeak-ng", "-v", "en-gb", "-s", "140", "-w", str(path), script], check=True)
    return script


def measure(name: str, seconds: float, fps: int, cuts: list[float]) -> None:
    from servers.video_enhanced import engine

    voice = WORK / f"{name}.wav"
    script = speech(voice, seconds * 0.9)
    path = WORK / f"{name}.mp4"
    started = time.perf_counter()
    make_video(path, seconds=seconds, fps=fps, size=(1280, 720), cuts=cuts, captions=CAPTIONS, audio=voice,
               bit_rate=3_000_000)
    print(f"\n{name}: {seconds:.0f} s, 1280x720 @ {fps} fps, {len(cuts)} cuts, made in "
          f"{time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    timeline = engine.analyse(path, keyframes=max(10, len(cuts) + 1))
    wall = time.perf_counter() - started
    found = timeline.cuts
    hits = [c for c in cuts if any(abs(c - f) <= 0.5 for f in found)]
    true_found = [f for f in found if any(abs(c - f) <= 0.5 for c in cuts)]
    precision = len(true_found) / len(found) if found else 0.0
    recall = len(hits) / len(cuts) if cuts else 1.0
    worst = max((min(abs(c - f) for f in found) for c in cuts), default=0.0) if found else None
    shown = {CAPTIONS[i % len(CAPTIONS)] for i in range(len(cuts) + 1)}  # make_video cycles the captions
    read = " ".join(t.text for t in timeline.screen_text).upper()
    ocr_recall = sum(1 for caption in shown if caption in read) / len(shown)
    spoken = " ".join(segment.text for segment in timeline.transcript)
    print(f"  cuts: precision {precision:.2f}, recall {recall:.2f}, worst offset {worst:.2f} s "
          "(target: all within 0.5 s)")
    print(f"  on-screen captions read: {ocr_recall:.0%} of {len(shown)}; transcript WER "
          f"{word_error_rate(script, spoken) * 100:.1f} %")
    print(f"  timeline wall time {wall:.1f} s ({timeline.seconds}); keyframes {len(timeline.keyframes)}"
          + ("  (target < 10 s)" if seconds <= 60 else ""))
    started = time.perf_counter()
    engine.analyse(path, keyframes=max(10, len(cuts) + 1))
    print(f"  the same timeline again (cache): {(time.perf_counter() - started) * 1000:.0f} ms")


def main() -> None:
    from shared import ocr, transcription

    if shutil.which("espeak-ng") is None:
        print("skipped: espeak-ng is needed (apt-get install espeak-ng)")
        return
    ocr.engine()
    transcription.whisper()  # engines loaded once per process, as in a running server
    print(f"speech: policy {transcription.policy()}, local model {transcription.local_model_name()}")
    measure("video-60s", 60, 25, [7.3, 15.0, 22.6, 31.2, 38.0, 46.5, 53.9])
    measure("video-10min", 600, 10, [round(30 + i * 57.3, 1) for i in range(10)])
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
