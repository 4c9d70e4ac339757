"""tool-vqa and tool-vqa-enhanced through the MCP in-memory client. Model tests talk to a fake
OpenAI-compatible server on 127.0.0.1 and check our wire format and logic, not model quality."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from mcp import Client
from PIL import Image

from servers.vqa.server import build as build_vqa
from servers.vqa_enhanced.server import build as build_enhanced
from tests import documents
from tests.checks import assert_clear_errors
from tests.fake_openai import Scripted

pytestmark = pytest.mark.anyio


@pytest.fixture
def sign(root: Path) -> Path:
    png = documents.text_image_png([documents.CHINESE, documents.ENGLISH])
    path = root / "sign.jpg"  # a PNG named .jpg, as real data has
    path.write_bytes(png)
    return path


def _image_parts(request) -> list[dict]:
    return [part for part in request.json()["messages"][1]["content"] if part["type"] == "image_url"]


def _texts(request) -> str:
    return "\n".join(part["text"] for part in request.json()["messages"][1]["content"] if part["type"] == "text")


async def test_wire_vqa_sends_the_image_by_its_real_type_with_evidence(vision, sign):
    vision.chat_reply = "The sign says 直播电商高质量发展报告."
    async with Client(build_vqa()) as client:
        result = await client.call_tool("visual_question_answering",
                                        {"image_path_or_url": "sign.jpg", "question": "What does the sign say?"})
    assert not result.is_error, result.content[0].text
    assert result.content[0].text == "The sign says 直播电商高质量发展报告."
    (part,) = _image_parts(vision.requests[-1])
    url = part["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")  # bytes decide, not the .jpg name
    Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).verify()
    prompt = _texts(vision.requests[-1])
    assert "Text found by OCR" in prompt and "直播电商" in prompt and "What does the sign say?" in prompt
    evidence = result.structured_content["evidence"][0]
    assert evidence["mime"] == "image/png" and "直播电商" in evidence["ocr_text"]
    assert evidence["ocr_lines"] and all(len(line["box"]) == 4 for line in evidence["ocr_lines"])
    assert result.structured_content["model"] == "fake-vision"


async def test_wire_large_images_are_downscaled_before_sending(vision, root: Path, monkeypatch):
    monkeypatch.setenv("TOOLSUITE_VISION_MAX_SIDE", "512")
    Image.new("RGB", (3000, 1500), (20, 120, 200)).save(root / "wide.png")
    async with Client(build_vqa()) as client:
        result = await client.call_tool("visual_question_answering", {"image_path_or_url": "wide.png",
                                                                      "question": "What colour?"})
    sent = result.structured_content["sent"][0]
    assert (sent["width"], sent["height"]) == (512, 256)
    evidence = result.structured_content["evidence"][0]
    assert (evidence["width"], evidence["height"]) == (3000, 1500)
    assert "blue" in " ".join(c["name"] for c in evidence["dominant_colours"])


async def test_wire_verification_can_change_the_answer(vision, sign):
    vision.chat_responder = lambda request: ("A red car." if request.get("temperature") == 0.0
                                             else "The sign reads 直播电商高质量发展报告")
    async with Client(build_enhanced()) as client:
        result = await client.call_tool("vision_understanding_advanced",
                                        {"image_path_or_url": "sign.jpg", "question": "What is written?"})
    data = result.structured_content
    assert data["answer"] == "The sign reads 直播电商高质量发展报告"
    assert data["verification"]["changed_from_first"] is True and data["verification"]["samples"] == 3
    assert data["verification"]["agreement"] == pytest.approx(2 / 3, abs=0.01)
    assert 0 < data["confidence"] < 1 and len(vision.requests) == 3
    assert "heuristic confidence" in result.content[0].text


async def test_wire_agreeing_samples_keep_the_first_answer_with_high_confidence(vision, sign):
    vision.chat_reply = "直播电商高质量发展报告"
    async with Client(build_enhanced()) as client:
        verified = await client.call_tool("vision_understanding_advanced",
                                          {"image_path_or_url": "sign.jpg", "question": "标题是什么？"})
        quick = await client.call_tool("vision_quick_answer", {"image_path_or_url": "sign.jpg", "question": "标题？"})
        unverified = await client.call_tool("vision_understanding_advanced",
                                            {"image_path_or_url": "sign.jpg", "question": "标题？",
                                             "enable_verification": False})
    assert verified.structured_content["confidence"] == 1.0
    assert verified.structured_content["verification"]["changed_from_first"] is False
    assert quick.structured_content["confidence"] is None and unverified.structured_content["verification"] is None
    assert len(vision.requests) == 3 + 1 + 1


async def test_wire_comparison_shows_both_images_in_one_request(vision, root: Path, sign):
    Image.new("RGB", (200, 100), (250, 250, 250)).save(root / "blank.png")
    vision.chat_reply = "Image 1 has text; Image 2 is blank."
    async with Client(build_enhanced()) as client:
        result = await client.call_tool("vision_comparative_analysis", {
            "image_path_or_url_1": "sign.jpg", "image_path_or_url_2": "blank.png",
            "comparison_question": "Which one has text?"})
    assert result.content[0].text == "Image 1 has text; Image 2 is blank."
    assert len(vision.requests) == 1 and len(_image_parts(vision.requests[0])) == 2
    assert "Image 1" in _texts(vision.requests[0]) and "Image 2" in _texts(vision.requests[0])
    assert len(result.structured_content["evidence"]) == 2


async def test_metadata_reads_exif_and_gps_locally(root: Path):
    picture = Image.new("RGB", (320, 200), (200, 30, 30))
    exif = Image.Exif()
    exif[0x010F] = "TestMaker"
    exif[0x0110] = "TestCam 1"
    exif[0x0112] = 6  # rotated: width and height swap once applied
    gps = {1: "N", 2: (39.0, 54.0, 0.0), 3: "E", 4: (116.0, 23.0, 24.0)}
    exif[0x8825] = gps
    picture.save(root / "photo.jpg", exif=exif)
    async with Client(build_enhanced()) as client:
        result = await client.call_tool("vision_extract_metadata", {"image_path_or_url": "photo.jpg"})
    evidence = result.structured_content["evidence"][0]
    assert evidence["exif"]["Make"] == "TestMaker" and evidence["exif"]["Model"] == "TestCam 1"
    assert evidence["exif"]["GPSLatitude"] == pytest.approx(39.9)
    assert evidence["exif"]["GPSLongitude"] == pytest.approx(116.39)
    assert (evidence["width"], evidence["height"]) == (200, 320)
    assert "red" in evidence["dominant_colours"][0]["name"]
    assert "no vision model is configured, so there is no description" in result.content[0].text


async def test_qr_codes_are_decoded_locally(root: Path):
    import cv2
    import numpy as np

    matrix = cv2.QRCodeEncoder.create().encode("https://example.org/toolsuite")
    big = cv2.resize(matrix, (matrix.shape[1] * 8, matrix.shape[0] * 8), interpolation=cv2.INTER_NEAREST)
    padded = np.pad(big, 40, constant_values=255)
    Image.fromarray(padded).save(root / "qr.png")
    async with Client(build_vqa()) as client:
        result = await client.call_tool("visual_question_answering", {"image_path_or_url": "qr.png",
                                                                      "question": "Where does the code lead?"})
    assert result.structured_content["evidence"][0]["qr_codes"] == ["https://example.org/toolsuite"]
    assert "https://example.org/toolsuite" in result.content[0].text


async def test_without_a_model_the_evidence_answers_what_it_can(sign):
    async with Client(build_vqa()) as client:
        result = await client.call_tool("visual_question_answering",
                                        {"image_path_or_url": "sign.jpg", "question": "What text is shown?"})
    assert not result.is_error
    text = result.content[0].text
    assert "No vision model is configured" in text and "TOOLSUITE_VISION_MODEL" in text
    assert "直播电商" in text and "pixels" in text
    assert result.structured_content["answer"] is None and result.structured_content["model_configured"] is False


async def test_offline_with_a_model_configured_still_returns_evidence(vision, sign, monkeypatch):
    monkeypatch.setenv("TOOLSUITE_OFFLINE", "1")
    async with Client(build_vqa()) as client:
        result = await client.call_tool("visual_question_answering",
                                        {"image_path_or_url": "sign.jpg", "question": "What text is shown?"})
    assert not result.is_error and "TOOLSUITE_OFFLINE" in " ".join(result.structured_content["notes"])
    assert vision.requests == []


async def test_animated_gif_uses_the_first_frame(root: Path):
    frames = [Image.new("RGB", (64, 64), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(root / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    async with Client(build_enhanced()) as client:
        result = await client.call_tool("vision_extract_metadata", {"image_path_or_url": "anim.gif"})
    evidence = result.structured_content["evidence"][0]
    assert evidence["frames"] == 3 and "first frame" in " ".join(result.structured_content["notes"])
    assert evidence["dominant_colours"][0]["name"] == "red"


async def test_bad_images_and_endpoints_are_clear_errors(root: Path, vision):
    (root / "notes.png").write_text("just some text, not an image")
    good = documents.text_image_png(["truncate me"])
    Image.open(io.BytesIO(good)).convert("RGB").save(root / "full.jpg", quality=90)
    (root / "cut.jpg").write_bytes((root / "full.jpg").read_bytes()[:400])
    Image.new("1", (20000, 20000)).save(root / "huge.png")
    cases = {
        "notes.png": "is not an image",
        "cut.jpg": "cannot be decoded",
        "huge.png": "too large to decode safely",
        "missing.png": "file not found",
        "http://10.0.0.1/x.png": "private",
    }
    async with Client(build_vqa()) as client:
        await assert_clear_errors(client, "visual_question_answering", "image_path_or_url", cases, question="what?")
        empty = await client.call_tool("visual_question_answering", {"image_path_or_url": "full.jpg", "question": ""})
        assert empty.is_error and "question" in empty.content[0].text
        vision.script.append(Scripted(500, {"error": {"message": "model crashed"}}))
        down = await client.call_tool("visual_question_answering", {"image_path_or_url": "full.jpg",
                                                                    "question": "what?"})
        assert down.is_error and "HTTP 500" in down.content[0].text
        vision.script.append(Scripted(200, "this is not json"))
        garbage = await client.call_tool("visual_question_answering", {"image_path_or_url": "full.jpg",
                                                                       "question": "what?"})
        assert garbage.is_error and "Traceback" not in garbage.content[0].text
        ok = await client.call_tool("visual_question_answering", {"image_path_or_url": "full.jpg",
                                                                  "question": "what?"})
        assert not ok.is_error


def test_agreement_and_similarity_are_language_independent():
    from shared.image_answers import choose
    from shared.textsim import similarity

    assert similarity("北京颐和园", "这是北京的颐和园") >= 0.5
    assert similarity("The Great Wall", "the great wall!") == 1.0
    assert similarity("红色的车", "a blue bus") == 0.0
    best, confidence, details = choose(["red car", "blue bus", "a blue bus"], "")
    assert best == 1 and confidence == pytest.approx(2 / 3, abs=0.01) and details["changed_from_first"]
