"""tool-video-enhanced through the MCP in-memory client, on videos made in code (cuts at 4 s and 8 s,
a caption per scene, the speech fixture as audio). Model tests use a fake OpenAI-compatible server on
127.0.0.1: they check our wire format and logic, not model quality."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mcp import Client

from servers.video_enhanced.server import build
from tests.checks import assert_clear_errors
from tests.media import make_video

pytestmark = pytest.mark.anyio


@pytest.fixture
def clip(root: Path) -> Path:
    return make_video(root / "clip.mp4")


def _frame_times(request) -> list[float]:
    texts = [p["text"] for p in request.json()["messages"][1]["content"] if p["type"] == "text"]
    times = []
    for text in texts:
        match = re.match(r"Frame at (\d+):(\d+\.\d)", text)
        if match:
            times.append(int(match[1]) * 60 + float(match[2]))
    return times


async def test_keyframes_scenes_and_screen_text(clip):
    async with Client(build()) as client:
        result = await client.call_tool("video_extract_keyframes", {"video_path": "clip.mp4", "max_keyframes": 6})
    assert not result.is_error, result.content[0].text
    data = result.structured_content
    assert len(data["cuts"]) == 2 and all(abs(a - b) <= 0.5 for a, b in zip(data["cuts"], (4.0, 8.0), strict=True))
    assert [s["index"] for s in data["scenes"]] == [0, 1, 2]
    assert len(data["keyframes"]) == 6 and {k["reason"] for k in data["keyframes"]} >= {"scene"}
    images = [block for block in result.content if block.type == "image"]
    assert len(images) == 6 and all(image.mime_type == "image/jpeg" for image in images)
    seen = " ".join(t["text"] for t in data["screen_text"])
    for caption in ("ALPHA", "BRAVO", "CHARLIE"):
        assert caption in seen
    assert data["metadata"]["has_audio"] and data["metadata"]["width"] == 640


async def test_timeline_without_a_model_includes_speech_and_keyframes(clip):
    async with Client(build()) as client:
        result = await client.call_tool("video_understanding_advanced", {"video_path": "clip.mp4"})
        again = await client.call_tool("video_understanding_advanced", {"video_path": "clip.mp4"})
    text = result.content[-1].text
    assert not result.is_error and "No vision model is configured" in text and "TOOLSUITE_VISION_MODEL" in text
    assert "Speech (en)" in text and "quarterly" in text.lower()
    assert "ALPHA" in text and any(block.type == "image" for block in result.content)
    assert again.structured_content["cached"] is True


async def test_wire_temporal_qa_samples_only_inside_the_range(clip, vision):
    vision.chat_reply = "The caption BRAVO is shown [00:05]."
    async with Client(build()) as client:
        result = await client.call_tool("video_temporal_qa", {"video_path": "clip.mp4", "question": "What caption?",
                                                              "start_time": 4.5, "end_time": 7.5,
                                                              "enable_verification": False})
    assert not result.is_error, result.content[0].text
    assert result.content[0].text == "The caption BRAVO is shown [00:05]."
    times = _frame_times(vision.requests[0])
    assert times and all(4.4 <= t <= 7.6 for t in times)
    assert all(4.4 <= k["time"] <= 7.6 for k in result.structured_content["keyframes"])
    prompt = " ".join(p["text"] for p in vision.requests[0].json()["messages"][1]["content"] if p["type"] == "text")
    assert "Range analysed: 00:04.5-00:07.5" in prompt and "CHARLIE" not in prompt
    assert len(vision.requests) == 1


async def test_wire_verification_reconciles_disagreeing_samples(clip, vision):
    replies = iter(["It shows a red ball [00:02].", "A white ball crosses a green scene [00:05].",
                    "A white ball moves across coloured scenes [00:05]."])
    vision.chat_responder = lambda request: next(replies)
    async with Client(build()) as client:
        result = await client.call_tool("video_understanding_advanced", {"video_path": "clip.mp4",
                                                                         "question": "What moves?"})
    data = result.structured_content
    assert data["answer"] == "A white ball moves across coloured scenes [00:05]."
    assert data["verification"]["reconciled"] and data["verification"]["changed_from_first"]
    assert data["confidence"] == 0.6 and len(vision.requests) == 3
    assert _frame_times(vision.requests[0]) != _frame_times(vision.requests[1])


async def test_wire_verification_flags_claimed_times_outside_the_video(clip, vision):
    vision.chat_reply = "The ball appears at [09:30]."
    async with Client(build()) as client:
        result = await client.call_tool("video_understanding_advanced", {"video_path": "clip.mp4",
                                                                         "question": "When?"})
    data = result.structured_content
    assert data["verification"]["times_outside_range"] == [570.0] and data["confidence"] == 0.7


async def test_bad_video_inputs_are_clear_errors(clip, root: Path, monkeypatch):
    (root / "notes.mp4").write_text("not a video at all")
    (root / "cut.mp4").write_bytes(clip.read_bytes()[:2000])
    (root / "empty.mp4").write_bytes(b"")
    make_video(root / "mute.mp4", seconds=3, cuts=(1.5,), with_audio=False)
    async with Client(build()) as client:
        await assert_clear_errors(client, "video_quick_analysis", "video_path", {
            "notes.mp4": "not a video", "cut.mp4": "", "empty.mp4": "empty", "missing.mp4": "file not found",
            "http://127.0.0.1/v.mp4": "private"})
        mute = await client.call_tool("video_quick_analysis", {"video_path": "mute.mp4"})
        assert not mute.is_error and "no audio track" in mute.content[-1].text
        late = await client.call_tool("video_temporal_qa", {"video_path": "clip.mp4", "question": "x",
                                                            "start_time": 30})
        assert late.is_error and "after the end of the video" in late.content[0].text
        backwards = await client.call_tool("video_temporal_qa", {"video_path": "clip.mp4", "question": "x",
                                                                 "start_time": 6, "end_time": 2})
        assert backwards.is_error and "after start_time" in backwards.content[0].text
        negative = await client.call_tool("video_temporal_qa", {"video_path": "clip.mp4", "question": "x",
                                                                "start_time": -1})
        assert negative.is_error and "start_time" in negative.content[0].text
        for count in (0, 10_000):
            wrong = await client.call_tool("video_extract_keyframes", {"video_path": "clip.mp4",
                                                                       "max_keyframes": count})
            assert wrong.is_error and "max_keyframes" in wrong.content[0].text
        monkeypatch.setenv("TOOLSUITE_VIDEO_MAX_SECONDS", "5")
        too_long = await client.call_tool("video_extract_keyframes", {"video_path": "clip.mp4"})
        assert too_long.is_error and "limit" in too_long.content[0].text
