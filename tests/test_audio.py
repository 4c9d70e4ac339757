"""tool-transcribe and tool-audio-enhanced through the MCP in-memory client.

The speech fixture (tests/fixtures/speech.ogg, made once with espeak-ng and committed) is
transcribed with the default model (the multilingual Whisper base, under the `auto` policy).
Question-answering tests talk to a fake OpenAI-compatible server on 127.0.0.1: they check our wire
format and logic, not model quality."""

from __future__ import annotations

import shutil
import time
import wave
from pathlib import Path

import pytest
from mcp import Client

from servers.audio_enhanced.server import build as build_enhanced
from servers.transcribe.server import build as build_transcribe
from tests import documents
from tests.checks import assert_clear_errors
from tests.error_rates import word_error_rate

pytestmark = pytest.mark.anyio

FIXTURE = Path(__file__).parent / "fixtures" / "speech.ogg"
SPOKEN = "The meeting starts at nine. Please bring the quarterly report and the budget."


@pytest.fixture
def speech(root: Path) -> Path:
    target = root / "speech.ogg"
    shutil.copy(FIXTURE, target)
    return target


def silence_wav(path: Path, seconds: float = 2.0) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(b"\0\0" * int(16000 * seconds))
    return path


async def test_the_default_model_transcribes_the_fixture(speech):
    async with Client(build_transcribe()) as client:
        result = await client.call_tool("audio_transcription", {"audio_path_or_url": "speech.ogg"})
    assert not result.is_error, result.content[0].text
    data = result.structured_content
    assert word_error_rate(SPOKEN, data["text"]) < 0.5, data["text"]
    assert data["language"] == "en" and data["backend"] == "local" and data["model"] == "base"
    assert "auto policy" in data["routing"]
    assert 5 < data["duration_seconds"] < 7
    first = data["segments"][0]
    assert 0 <= first["start"] < first["end"] <= 7 and 0 < first["confidence"] <= 1
    assert result.content[0].text.startswith("[5.") and "[00:00.0-" in result.content[0].text


async def test_srt_vtt_words_and_the_cache(speech):
    async with Client(build_transcribe()) as client:
        srt = await client.call_tool("audio_transcription", {"audio_path_or_url": "speech.ogg", "format": "srt",
                                                             "word_timestamps": True})
        started = time.monotonic()
        vtt = await client.call_tool("audio_transcription", {"audio_path_or_url": "speech.ogg", "format": "vtt",
                                                             "word_timestamps": True})
        again = time.monotonic() - started
    assert srt.content[0].text.split("\n", 1)[1].startswith("1\n00:00:00,000 --> 00:00:0")
    assert srt.structured_content["srt"].startswith("1\n00:00:00,000 -->")
    assert "WEBVTT" in vtt.content[0].text and "00:00:00.000 -->" in vtt.content[0].text
    words = srt.structured_content["segments"][0]["words"]
    assert words and all(w["start"] <= w["end"] for w in words)
    assert vtt.structured_content["cached"] is True and again < 1.0


async def test_wire_question_answering_sends_the_timestamped_transcript(speech, monkeypatch, fake_openai):
    monkeypatch.setenv("TOOLSUITE_AUDIO_BASE_URL", fake_openai.base_url)
    monkeypatch.setenv("TOOLSUITE_AUDIO_MODEL", "fake-chat")
    fake_openai.chat_reply = "Bring the quarterly report and the budget [00:03]."
    async with Client(build_transcribe()) as client:
        result = await client.call_tool("audio_question_answering",
                                        {"audio_path_or_url": "speech.ogg", "question": "What should I bring?"})
    assert result.content[0].text == "Bring the quarterly report and the budget [00:03]."
    prompt = fake_openai.requests[-1].json()["messages"][1]["content"]
    assert "[00:00.0-" in prompt and "quarterly report" in prompt and "What should I bring?" in prompt
    assert result.structured_content["cited_times"] == [3.0]


async def test_wire_verification_rejects_invented_times_and_can_change_the_answer(speech, monkeypatch, fake_openai):
    monkeypatch.setenv("TOOLSUITE_AUDIO_BASE_URL", fake_openai.base_url)
    monkeypatch.setenv("TOOLSUITE_AUDIO_MODEL", "fake-chat")
    answers = iter(["The budget is discussed at [14:10].", "The budget is mentioned at [00:04]."])
    fake_openai.chat_responder = lambda request: next(answers)
    async with Client(build_enhanced()) as client:
        result = await client.call_tool("audio_question_answering_enhanced",
                                        {"audio_path_or_url": "speech.ogg", "question": "When is the budget said?"})
    data = result.structured_content
    assert data["answer"] == "The budget is mentioned at [00:04]."
    assert data["verification"]["invalid_times_in_first_answer"] == [850.0]
    assert data["verification"]["invalid_times"] == [] and data["cited_times"] == [4.0]
    correction = fake_openai.requests[-1].json()["messages"][-1]["content"]
    assert "match no transcript segment" in correction and "14:10" in correction
    assert 0 < data["confidence"] <= 1 and "heuristic confidence" in result.content[0].text


async def test_without_a_chat_model_matching_segments_and_transcript_come_back(speech):
    async with Client(build_enhanced()) as client:
        result = await client.call_tool("audio_understanding_advanced",
                                        {"audio_path_or_url": "speech.ogg", "question": "quarterly report?"})
    text = result.content[0].text
    assert not result.is_error
    assert "No chat model is configured" in text and "TOOLSUITE_AUDIO_MODEL" in text
    assert "quarterly report" in text and "Full transcript:" in text
    assert result.structured_content["relevant_segments"]


async def test_metadata_loudness_and_silence(speech, root: Path):
    silence_wav(root / "quiet.wav")
    async with Client(build_enhanced()) as client:
        meta = await client.call_tool("audio_extract_metadata", {"audio_path_or_url": "speech.ogg"})
        quiet = await client.call_tool("audio_extract_metadata", {"audio_path_or_url": "quiet.wav"})
        heard = await client.call_tool("audio_quick_transcription", {"audio_path_or_url": "quiet.wav"})
    data = meta.structured_content
    assert data["codec"] == "opus" and data["channels"] == 1 and 5 < data["duration_seconds"] < 7
    assert -40 < data["rms_dbfs"] < 0 and data["silence_ratio"] < 0.6
    assert quiet.structured_content["silence_ratio"] == 1.0 and quiet.structured_content["rms_dbfs"] is None
    assert not heard.is_error and "no speech" in heard.content[0].text


def _video_without_audio(path: Path) -> Path:
    import av
    import numpy as np

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(10):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), index * 20, dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


async def test_bad_audio_inputs_are_clear_errors(speech, root: Path, monkeypatch):
    documents.text_pdf(root / "report.pdf", pages=1, scanned_page=False)
    (root / "report.mp3").write_bytes((root / "report.pdf").read_bytes())
    (root / "corrupt.mp3").write_bytes(b"ID3" + bytes(range(256)) * 40)
    (root / "empty.wav").write_bytes(b"")
    _video_without_audio(root / "silent.mp4")
    cases = {
        "report.mp3": "not audio",
        "corrupt.mp3": "audio",
        "empty.wav": "is empty",
        "silent.mp4": "video without an audio track",
        "missing.wav": "file not found",
        "http://192.168.1.10/a.mp3": "private",
    }
    async with Client(build_transcribe()) as client:
        await assert_clear_errors(client, "audio_transcription", "audio_path_or_url", cases)
        monkeypatch.setenv("TOOLSUITE_AUDIO_MAX_SECONDS", "2")
        long = await client.call_tool("audio_transcription", {"audio_path_or_url": "speech.ogg"})
        assert long.is_error and "limit" in long.content[0].text
        monkeypatch.delenv("TOOLSUITE_AUDIO_MAX_SECONDS")
        monkeypatch.setenv("TOOLSUITE_TRANSCRIBE_MODEL", "large-v3")
        monkeypatch.setenv("TOOLSUITE_OFFLINE", "1")
        unloadable = await client.call_tool("audio_transcription", {"audio_path_or_url": "speech.ogg"})
        assert unloadable.is_error and "large-v3" in unloadable.content[0].text
        assert "bundled tiny.en" in unloadable.content[0].text
        monkeypatch.delenv("TOOLSUITE_TRANSCRIBE_MODEL")
        ok = await client.call_tool("audio_transcription", {"audio_path_or_url": "speech.ogg"})
        assert not ok.is_error


def test_time_citations_and_subtitle_clocks():
    from shared.timecodes import cited_times, clock
    from shared.transcription import Segment, to_srt

    assert cited_times("at [01:05] and 1:02:03, again 01:05") == [65.0, 3723.0]
    assert clock(3723.456) == "01:02:03,456" and clock(0.5, ".") == "00:00:00.500"
    assert to_srt([Segment(0, 0.0, 1.25, "hi")]) == "1\n00:00:00,000 --> 00:00:01,250\nhi\n"


async def test_wire_remote_transcription_backend_posts_the_file(speech, monkeypatch, fake_openai):
    monkeypatch.setenv("TOOLSUITE_TRANSCRIBE_BASE_URL", fake_openai.base_url)  # auto -> openai backend
    monkeypatch.setenv("TOOLSUITE_TRANSCRIBE_MODEL", "fake-whisper")
    async with Client(build_transcribe()) as client:
        result = await client.call_tool("audio_transcription", {"audio_path_or_url": "speech.ogg"})
    assert not result.is_error, result.content[0].text
    data = result.structured_content
    assert data["backend"] == "openai" and data["model"] == "fake-whisper"
    assert data["text"] == "hello from the fake transcriber" and data["segments"][0]["end"] == 1.5
    sent = fake_openai.requests[-1]
    assert sent.path == "/v1/audio/transcriptions" and b"fake-whisper" in sent.body and b"OggS" in sent.body


@pytest.mark.parametrize(("build", "tool"), [(build_transcribe, "audio_transcription"),
                                           (build_enhanced, "audio_quick_transcription")])
async def test_progress_never_passes_a_header_duration_shorter_than_the_audio(root: Path, build, tool: str):
    from tests.media import mp3_shorter_in_its_header

    mp3_shorter_in_its_header(root / "short.mp3")  # the header says about 6 s; 8 s decode
    updates: list[tuple[float, float | None]] = []

    async def on_progress(done, total, _message):
        updates.append((done, total))

    async with Client(build(), mode="legacy") as client:
        result = await client.call_tool(tool, {"audio_path_or_url": "short.mp3"}, progress_callback=on_progress)
    assert not result.is_error, result.content[0].text
    assert updates and updates[-1][1] == pytest.approx(5.9, abs=0.2), updates
    assert all(done <= total for done, total in updates), updates  # issue 14 saw 28.0/27.8
    assert [done for done, _ in updates] == sorted(done for done, _ in updates)


@pytest.mark.parametrize(("build", "tool"), [(build_transcribe, "audio_transcription"),
                                           (build_enhanced, "audio_quick_transcription")])
async def test_transcription_reports_progress_per_segment(speech, build, tool: str):
    updates: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done, total, message):
        updates.append((done, total, message))

    async with Client(build(), mode="legacy") as client:
        result = await client.call_tool(tool, {"audio_path_or_url": "speech.ogg"}, progress_callback=on_progress)
    assert not result.is_error
    assert updates and updates[-1][1] == pytest.approx(5.78, abs=0.2)
    assert "transcribed" in (updates[-1][2] or "")
    # Whisper's last timestamp may pass the header's duration; progress never reports more than its total.
    assert all(done <= total for done, total, _ in updates) and updates[-1][0] == updates[-1][1]
