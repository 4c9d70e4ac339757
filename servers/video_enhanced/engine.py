"""What a video shows and says, as one timeline: metadata, scene cuts, keyframes, on-screen text
(OCR), speech (transcript). Knows nothing about MCP.

Scene cuts come from HSV-histogram distances between frames sampled 4 times a second (decoded by
grab-and-skip, which measured 3-4x faster than seeking here), with a threshold that adapts to the
video (median + 6 x MAD of its own distances, at least 0.3). Videos longer than 30 minutes are
sampled at their keyframes only. Each scene gives its middle frame as a keyframe; uniform frames
fill the gaps up to the number asked for. Evidence is cached by content hash and range, so several
questions about one video do not redo the work.
"""

from __future__ import annotations

import io
import itertools
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shared import cache, media, textsim
from shared.errors import InputError, NotConfigured
from shared.timecodes import short_clock, span
from shared.worker import ProgressFn, StopFlag

ENGINE_VERSION = "video-2"
DETECT_FPS = 4.0
LONG_VIDEO_SECONDS = 1800.0
FRAME_MAX_SIDE = 640


@dataclass
class VideoInfo:
    duration: float
    fps: float
    frames: int
    width: int
    height: int
    video_codec: str | None
    audio_codec: str | None
    has_audio: bool
    rotation: int
    size_bytes: int
    container: str


@dataclass
class Scene:
    index: int
    start: float
    end: float


@dataclass
class Keyframe:
    time: float
    scene: int | None
    reason: str  # "scene" or "uniform"
    jpeg: bytes = field(default=b"", repr=False)
    ocr_text: str = ""


@dataclass
class ScreenText:
    text: str
    first_seen: float
    last_seen: float


@dataclass
class Spoken:
    start: float
    end: float
    text: str


@dataclass
class Timeline:
    info: VideoInfo
    start: float
    end: float
    scenes: list[Scene]
    cuts: list[float]
    keyframes: list[Keyframe]
    screen_text: list[ScreenText]
    transcript: list[Spoken]
    transcript_language: str | None
    speech_transcribed: bool = False
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    cached: bool = False

    def render(self, with_transcript_chars: int = 6000) -> str:
        info = self.info
        lines = [f"Video: {info.width}x{info.height}, {info.duration:.1f} s, {info.fps:.2f} fps, {info.video_codec}"
                 + (f", audio {info.audio_codec}" if info.has_audio else ", no audio track")
                 + (f", rotation {info.rotation}" if info.rotation else "")]
        if (self.start, self.end) != (0.0, info.duration):
            lines.append(f"Range analysed: {span(self.start, self.end)}")
        lines.append(f"Scenes ({len(self.scenes)}): " + ", ".join(
            f"#{s.index} {span(s.start, s.end)}" for s in self.scenes[:60]))
        lines.append("Keyframes: " + ", ".join(f"{short_clock(k.time)} ({k.reason})" for k in self.keyframes))
        if self.screen_text:
            lines.append("On-screen text:")
            lines += [f"  [{span(t.first_seen, t.last_seen)}] {t.text}" for t in self.screen_text]
        else:
            lines.append("On-screen text: none found")
        if self.transcript:
            spoken = "\n".join(f"  [{span(s.start, s.end)}] {s.text}" for s in self.transcript)
            if len(spoken) > with_transcript_chars:
                spoken = spoken[:with_transcript_chars] + "\n  [... transcript cut]"
            lines.append(f"Speech ({self.transcript_language or 'unknown language'}):\n{spoken}")
        elif info.has_audio:
            lines.append("Speech: none found" if self.speech_transcribed else
                         "Speech: not transcribed by this tool (the video has an audio track)")
        return "\n".join(lines)


def _cv2() -> Any:
    try:
        import cv2
    except ModuleNotFoundError:
        raise NotConfigured("video needs OpenCV: pip install 'toolsuite[video]'") from None
    return cv2


def probe(path: Path) -> VideoInfo:
    with media.open_container(path, "video") as container:
        if not container.streams.video:
            raise InputError("the file has no video stream" + (" (it is audio only: use the audio tools)"
                                                                if container.streams.audio else ""))
        stream = container.streams.video[0]
        duration = media.duration(container, stream) or 0.0
        fps = float(stream.average_rate or stream.guessed_rate or 0) or 0.0
        frames = int(stream.frames or round(duration * fps))
        rotation = 0
        try:
            rotation = int(stream.metadata.get("rotate", 0)) or int(getattr(stream.codec_context, "rotation", 0) or 0)
        except (ValueError, TypeError):
            rotation = 0
        audio = container.streams.audio[0] if container.streams.audio else None
        info = VideoInfo(duration=round(duration, 3), fps=round(fps, 3), frames=frames, width=stream.width,
                         height=stream.height, video_codec=stream.codec_context.name if stream.codec_context else None,
                         audio_codec=audio.codec_context.name if audio is not None and audio.codec_context else None,
                         has_audio=audio is not None, rotation=rotation, size_bytes=path.stat().st_size,
                         container=container.format.name)
    if info.frames == 0 or info.duration <= 0:
        raise InputError("the video has no frames (zero length or truncated)")
    media.check_length(info.duration, "video")
    return info


def _small(frame: Any, max_side: int = FRAME_MAX_SIDE) -> Any:
    cv2 = _cv2()
    height, width = frame.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    return frame if scale == 1.0 else cv2.resize(frame, (round(width * scale), round(height * scale)),
                                                 interpolation=cv2.INTER_AREA)


def _histogram(frame: Any) -> Any:
    cv2 = _cv2()
    tiny = cv2.resize(frame, (160, 90), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(tiny, cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], None, [16, 8, 8], [0, 180, 0, 256, 0, 256])
    return cv2.normalize(hist, hist).flatten()


def sample_frames(path: Path, info: VideoInfo, start: float, end: float, rate: float,
                  stop: StopFlag | None = None, progress: ProgressFn | None = None) -> list[tuple[float, Any]]:
    """(time, small BGR frame) pairs about `rate` times a second inside [start, end], by grab-and-skip."""
    cv2 = _cv2()
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise InputError("OpenCV cannot open the video (unsupported codec or damaged file)")
    fps = info.fps or capture.get(cv2.CAP_PROP_FPS) or 25.0
    step = max(1, round(fps / rate))
    first = int(start * fps)
    if first > 0:
        capture.set(cv2.CAP_PROP_POS_FRAMES, max(first - 1, 0))  # one seek to the range, then grab forward
    index = max(first - 1, 0) if first > 0 else 0
    samples: list[tuple[float, Any]] = []
    try:
        while True:
            if stop is not None:
                stop.check("video analysis")
            if not capture.grab():
                break
            moment = index / fps
            if moment > end:
                break
            if moment >= start and (index - first) % step == 0:
                ok, frame = capture.retrieve()
                if ok:
                    samples.append((round(moment, 3), _small(frame)))
                    if progress is not None and len(samples) % 20 == 0:
                        progress(moment - start, end - start, f"decoded {moment:.0f} s")
            index += 1
    finally:
        capture.release()
    return samples


def keyframe_samples(path: Path, start: float, end: float) -> list[tuple[float, Any]]:
    """Keyframes only (fast for long videos), via PyAV."""
    samples = []
    with media.open_container(path, "video") as container:
        stream = container.streams.video[0]
        stream.codec_context.skip_frame = "NONKEY"
        for frame in container.decode(stream):
            if frame.time is None or frame.time < start:
                continue
            if frame.time > end:
                break
            samples.append((round(float(frame.time), 3), _small(frame.to_ndarray(format="bgr24"))))
    return samples


def detect_cuts(samples: list[tuple[float, Any]]) -> list[float]:
    import numpy as np

    cv2 = _cv2()
    if len(samples) < 3:
        return []
    hists = [_histogram(frame) for _, frame in samples]
    distances = np.array([cv2.compareHist(a, b, cv2.HISTCMP_BHATTACHARYYA) for a, b in itertools.pairwise(hists)])
    median = float(np.median(distances))
    mad = float(np.median(np.abs(distances - median))) or 1e-3
    threshold = max(0.3, median + 6 * mad)
    cuts = []
    for i, distance in enumerate(distances):
        if distance > threshold:
            moment = samples[i + 1][0]
            if not cuts or moment - cuts[-1] > 0.5:
                cuts.append(moment)
    return cuts


def _jpeg(frame: Any, quality: int = 80) -> bytes:
    cv2 = _cv2()
    ok, data = cv2.imencode(".jpg", _small(frame, 512), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return bytes(data) if ok else b""


def choose_keyframes(samples: list[tuple[float, Any]], scenes: list[Scene], wanted: int) -> list[Keyframe]:
    """The middle frame of each scene (longest scenes first when there are too many), then uniform
    frames in the largest gaps."""
    if not samples or wanted <= 0:
        return []
    times = [t for t, _ in samples]

    def nearest(moment: float) -> int:
        return min(range(len(times)), key=lambda i: abs(times[i] - moment))

    picked: dict[int, Keyframe] = {}
    for scene in sorted(scenes, key=lambda s: s.end - s.start, reverse=True)[:wanted]:
        index = nearest((scene.start + scene.end) / 2)
        picked.setdefault(index, Keyframe(time=times[index], scene=scene.index, reason="scene"))
    while len(picked) < min(wanted, len(samples)):
        chosen = sorted(picked) or []
        bounds = [-1, *chosen, len(samples)]
        gap_start, gap_end = max(itertools.pairwise(bounds), key=lambda pair: pair[1] - pair[0])
        if gap_end - gap_start <= 1:
            break
        index = (gap_start + gap_end) // 2 if gap_start >= 0 else gap_end // 2
        index = min(max(index, 0), len(samples) - 1)
        scene_of = next((s.index for s in scenes if s.start <= times[index] < s.end), None)
        picked[index] = Keyframe(time=times[index], scene=scene_of, reason="uniform")
    frames = [picked[i] for i in sorted(picked)]
    for keyframe in frames:
        keyframe.jpeg = _jpeg(samples[times.index(keyframe.time)][1])
    return frames


def _same_text(a: str, b: str) -> bool:
    """Short captions must match exactly ('SCENE 1' is not 'SCENE 2'); longer ones may differ by OCR noise."""
    left, right = textsim.normalise(a), textsim.normalise(b)
    if min(len(left), len(right)) < 12:
        return left == right
    return textsim.similarity(a, b) >= 0.85


def read_screen_text(keyframes: list[Keyframe]) -> list[ScreenText]:
    """OCR of every keyframe, merged: the same text seen again extends its time span."""
    from PIL import Image

    from shared import ocr

    found: list[ScreenText] = []
    for keyframe in keyframes:
        image = Image.open(io.BytesIO(keyframe.jpeg)).convert("RGB")
        try:
            result = ocr.read(image)
        except NotConfigured:
            return []
        keyframe.ocr_text = result.text
        for line in result.lines:
            if line.confidence < 0.6 or len(line.text.strip()) < 2:
                continue
            match = next((t for t in found if _same_text(t.text, line.text)), None)
            if match is None:
                found.append(ScreenText(line.text, keyframe.time, keyframe.time))
            else:
                match.first_seen = min(match.first_seen, keyframe.time)
                match.last_seen = max(match.last_seen, keyframe.time)
    return sorted(found, key=lambda t: (t.first_seen, t.text))


def _transcript(path: Path, info: VideoInfo, start: float, end: float,
                stop: StopFlag | None) -> tuple[list[Spoken], str | None, list[str]]:
    if not info.has_audio:
        return [], None, []
    from shared import transcription

    try:
        transcript = transcription.transcribe_file(path, stop=stop)
    except (NotConfigured, InputError) as exc:
        return [], None, [f"speech not transcribed: {exc}"]
    segments = [Spoken(s.start, s.end, s.text) for s in transcript.segments if s.end >= start and s.start <= end]
    return segments, transcript.language, []


def _cache_path(digest: str, start: float, end: float, wanted: int) -> Path:
    key = cache.cache_key(digest, ENGINE_VERSION, f"{start:.2f}-{end:.2f}-{wanted}")
    return cache.area("video") / key


def _save(folder: Path, timeline: Timeline) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index, keyframe in enumerate(timeline.keyframes):
        cache.write_atomic(folder / f"k{index:03d}.jpg", keyframe.jpeg)
    payload = asdict(timeline)
    for frame in payload["keyframes"]:
        frame.pop("jpeg")
    payload.pop("cached")
    cache.write_atomic(folder / "timeline.json", json.dumps(payload, ensure_ascii=False).encode())


def _load(folder: Path) -> Timeline | None:
    stored = cache.read(folder / "timeline.json")
    if stored is None:
        return None
    data = json.loads(stored)
    keyframes = []
    for index, raw in enumerate(data.pop("keyframes")):
        keyframes.append(Keyframe(**raw, jpeg=cache.read(folder / f"k{index:03d}.jpg") or b""))
    return Timeline(info=VideoInfo(**data.pop("info")), scenes=[Scene(**s) for s in data.pop("scenes")],
                    screen_text=[ScreenText(**t) for t in data.pop("screen_text")], keyframes=keyframes,
                    transcript=[Spoken(**s) for s in data.pop("transcript")], cached=True, **data)


def analyse(path: Path, *, start: float | None = None, end: float | None = None, keyframes: int = 10,
            with_ocr: bool = True, with_speech: bool = True, progress: ProgressFn | None = None,
            stop: StopFlag | None = None) -> Timeline:
    info = probe(path)
    begin = 0.0 if start is None else float(start)
    finish = info.duration if end is None else min(float(end), info.duration)
    if begin < 0 or (end is not None and end < 0):
        raise InputError("start_time and end_time must be zero or positive seconds")
    if begin >= info.duration:
        raise InputError(f"start_time {begin:.1f} s is at or after the end of the video ({info.duration:.1f} s)")
    if finish <= begin:
        raise InputError(f"end_time must be after start_time (got {begin:.1f}-{finish:.1f} s)")
    wanted = max(1, min(keyframes, 50))
    folder = _cache_path(cache.file_digest(path), begin, finish, wanted)
    stored = _load(folder)
    if stored is not None and (stored.transcript or not with_speech or not info.has_audio):
        return stored
    timings: dict[str, float] = {}
    notes: list[str] = []
    started = time.perf_counter()
    if finish - begin > LONG_VIDEO_SECONDS:
        samples = keyframe_samples(path, begin, finish)
        notes.append("long video: scenes found from its keyframes only")
    else:
        samples = sample_frames(path, info, begin, finish, DETECT_FPS, stop, progress)
    if not samples:
        raise InputError("no frame could be decoded in the requested range (the file may be truncated)")
    timings["decode"] = round(time.perf_counter() - started, 3)
    started = time.perf_counter()
    cuts = detect_cuts(samples)
    bounds = [begin, *cuts, finish]
    scenes = [Scene(i, round(a, 3), round(b, 3)) for i, (a, b) in enumerate(itertools.pairwise(bounds))]
    frames = choose_keyframes(samples, scenes, wanted)
    timings["scenes"] = round(time.perf_counter() - started, 3)
    screen: list[ScreenText] = []
    if with_ocr:
        started = time.perf_counter()
        screen = read_screen_text(frames)
        timings["ocr"] = round(time.perf_counter() - started, 3)
    transcript: list[Spoken] = []
    language = None
    if with_speech:
        started = time.perf_counter()
        transcript, language, more = _transcript(path, info, begin, finish, stop)
        notes += more
        timings["speech"] = round(time.perf_counter() - started, 3)
    timeline = Timeline(info=info, start=round(begin, 3), end=round(finish, 3), scenes=scenes, cuts=cuts,
                        keyframes=frames, screen_text=screen, transcript=transcript, transcript_language=language,
                        speech_transcribed=with_speech and info.has_audio, notes=notes, seconds=timings)
    if with_ocr and with_speech:
        _save(folder, timeline)
    return timeline
