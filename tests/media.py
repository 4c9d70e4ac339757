"""Videos made in code, for the video tests and bench/video.py: scene cuts at known times, a caption
per scene, a moving shape, and optionally an audio track (the committed speech fixture by default)
encoded with PyAV's AAC."""

from __future__ import annotations

import random
from pathlib import Path

SPEECH = Path(__file__).parent / "fixtures" / "speech.ogg"


def make_video(path: Path, *, seconds: float = 12.0, fps: int = 10, size: tuple[int, int] = (640, 360),
               cuts: tuple[float, ...] | list[float] = (4.0, 8.0),
               captions: tuple[str, ...] | list[str] = ("ALPHA", "BRAVO", "CHARLIE"),
               with_audio: bool = True, audio: Path = SPEECH, bit_rate: int = 2_000_000) -> Path:
    import av
    import cv2
    import numpy as np

    width, height = size
    rng = random.Random(5)
    colours = [tuple(rng.randrange(30, 200) for _ in range(3)) for _ in range(len(cuts) + 1)]
    scale = height / 360
    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=fps)
        video.width, video.height, video.pix_fmt, video.bit_rate = width, height, "yuv420p", bit_rate
        audio_stream = container.add_stream("aac", rate=16000, layout="mono") if with_audio else None
        for index in range(int(seconds * fps)):
            moment = index / fps
            scene = sum(1 for cut in cuts if moment >= cut)
            frame = np.full((height, width, 3), colours[scene], dtype=np.uint8)
            x = int(40 * scale) + (index * 9) % max(width - int(160 * scale), 1)
            cv2.circle(frame, (x, int(280 * scale)), int(30 * scale), (255, 255, 255), -1)
            cv2.putText(frame, captions[scene % len(captions)], (int(60 * scale), int(140 * scale)),
                        cv2.FONT_HERSHEY_SIMPLEX, 2.5 * scale, (255, 255, 255), max(2, int(6 * scale)))
            for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if audio_stream is not None:
            resampler = av.AudioResampler(format="fltp", layout="mono", rate=16000)
            with av.open(str(audio)) as source:
                for decoded in source.decode(audio=0):
                    for frame in resampler.resample(decoded):
                        frame.pts = None
                        for packet in audio_stream.encode(frame):
                            container.mux(packet)
            for packet in audio_stream.encode(None):
                container.mux(packet)
    return path
