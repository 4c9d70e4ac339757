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


def mp3_shorter_in_its_header(path: Path, *, seconds: float = 8.0, declared_share: float = 0.75) -> Path:
    """A 440 Hz MP3 whose Xing header declares only `declared_share` of its frames: the container's
    duration is shorter than what decodes (as real files whose last timestamp passes their duration)."""
    import struct

    import av
    import numpy as np

    rate = 16000
    samples = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(rate * seconds)) / rate)).astype(np.float32)
    with av.open(str(path), "w", format="mp3") as container:
        stream = container.add_stream("libmp3lame", rate=rate)
        stream.layout = "mono"
        for start in range(0, len(samples), 1152):
            frame = av.AudioFrame.from_ndarray(samples[None, start:start + 1152], format="fltp", layout="mono")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    data = bytearray(path.read_bytes())
    at = max(data.find(b"Xing"), data.find(b"Info"))
    (frames,) = struct.unpack(">I", data[at + 8:at + 12])  # present: the muxer sets the frame-count flag
    data[at + 8:at + 12] = struct.pack(">I", int(frames * declared_share))
    path.write_bytes(data)
    return path
