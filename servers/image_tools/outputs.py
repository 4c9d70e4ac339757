"""The image tools' structured result, read from the engine types, and its text."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from shared.evidence import Colour, Evidence
from shared.image_answers import ImageAnswer, Prepared
from shared.outputs import from_engine, mirrors


class OcrLineModel(BaseModel):
    text: str
    box: list[int] = Field(description="x0, y0, x1, y1 in pixels of the original image.")
    confidence: float


@mirrors(Evidence, leave_out={"seconds": "timings for the benchmark, not for agents"})
class EvidenceModel(BaseModel):
    source: str
    format: str
    mime: str = Field(description="Type from the file's bytes.")
    width: int
    height: int
    size_bytes: int
    frames: int
    exif: dict[str, Any]
    ocr_engine: str | None
    ocr_text: str
    ocr_lines: list[OcrLineModel]
    dominant_colours: list[Colour]
    faces: list[list[int]] = Field(description="Face boxes (x, y, w, h) from OpenCV's Haar detector (heuristic).")
    qr_codes: list[str]
    notes: list[str]


class SentImage(BaseModel):
    width: int
    height: int
    bytes: int
    mime: str


@mirrors(ImageAnswer, leave_out={"text": "the text block", "prepared": "shown as evidence and sent"})
class VisionOutput(BaseModel):
    answer: str | None = Field(description="The model's answer; null when no vision model is configured.")
    model: str | None
    model_configured: bool
    confidence: float | None = Field(description="Heuristic 0-1 (see the tool description); null without "
                                     "verification.")
    verification: dict[str, Any] | None
    evidence: list[EvidenceModel]
    sent: list[SentImage] = Field(description="What was sent to the model per image (after downscaling).")
    notes: list[str]


def _sent(item: Prepared) -> SentImage:
    return SentImage(width=item.sent_width, height=item.sent_height, bytes=len(item.payload), mime=item.mime)


def vision_output(result: ImageAnswer) -> VisionOutput:
    return from_engine(VisionOutput, result, evidence=[item.evidence for item in result.prepared],
                       sent=[_sent(item) for item in result.prepared if item.payload])


def vision_text(result: ImageAnswer) -> str:
    details = result.verification
    if result.confidence is None or details is None:
        return result.text
    return (f"{result.text}\n\n[verification: {details['samples']} samples, agreement {details['agreement']:.0%}, "
            f"heuristic confidence {result.confidence:.2f}"
            + ("; the first answer was replaced by the one the samples agreed on" if details["changed_from_first"]
               else "") + "]")
