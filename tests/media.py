"""Small videos made in code for the video tests: scene cuts at known times, a caption per scene and,
optionally, the committed speech fixture as the audio track (encoded with PyAV's AAC)."""

from __future__ import annotations

from pathlib import Path

SPEECH = Path(__file__).parent / "fixtures" / "speech.ogg"


def make_video(path: Path, *, seconds: float = 12.0, fps: int = 10, cuts: tuple[float, ...] = (4.0, 8.0),
               captions: tuple[str, ...] = ("ALPHA", "BRAVO", "CHARLIE"), with_audio: bool = True) -> Path:
    import av
    import cv2
    import numpy as np

    colours = [(40, 40, 200), (40, 180, 40), (200, 120, 30), (120, 40, 160)]
    width, height = 640, 360
    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.bit_rate = 2_000_000
        audio_stream = container.add_stream("aac", rate=16000, layout="mono") if with_audio else None
        for index in range(int(seconds * fps)):
            moment = index / fps
            scene = sum(1 for cut in cuts if moment >= cut)
            frame = np.full((height, width, 3), colours[scene % len(colours)], dtype=np.uint8)
            x = 40 + (index * 9) % (width - 120)
            cv2.circle(frame, (x, 280), 30, (255, 255, 255), -1)
            cv2.putText(frame, captions[scene % len(captions)], (60, 140), cv2.FONT_HERSHEY_SIMPLEX, 2.5,
                        (255, 255, 255), 6)
            for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if audio_stream is not None:
            resampler = av.AudioResampler(format="fltp", layout="mono", rate=16000)
            with av.open(str(SPEECH)) as source:
                for decoded in source.decode(audio=0):
                    for frame in resampler.resample(decoded):
                        frame.pts = None
                        for packet in audio_stream.encode(frame):
                            container.mux(packet)
            for packet in audio_stream.encode(None):
                container.mux(packet)
    return path
