"""Grounded answers about images (tool-vqa and tool-vqa-enhanced): evidence first, then the model.

The vision model (role VISION, any OpenAI-compatible endpoint) always receives the local evidence
with the image(s). Verification samples several answers concurrently and keeps the one the others
agree with most, cross-checked against the OCR text, so it can change the first answer. Its
confidence is a heuristic, not a probability:

    confidence = 0.8 * agreement + 0.2 * ocr_support          (ocr_support only when OCR found text)

where agreement is the share of samples whose character-bigram overlap with the chosen answer
(relative to the shorter of the two) is at least 0.5 (the same for Chinese and English), and
ocr_support is the share of the chosen answer's bigrams found in the OCR text, relative to the
best sample's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anyio
from pydantic import BaseModel, Field

from shared import settings, worker
from shared.evidence import Evidence, gather
from shared.images import LoadedImage, decode, model_max_side
from shared.inputs import LocalInput
from shared.models import ChatAnswer, ModelClient, image_part
from shared.textsim import coverage, similarity
from shared.worker import Job

SYSTEM_PROMPT = (
    "You are a careful visual analyst. Answer the user's question about the image(s). Local evidence computed "
    "from the image (OCR text with positions, size, EXIF, colours, faces, QR codes) is given with each image: use "
    "it, but OCR is machine-read and may contain errors, so trust what you see when they disagree. If the image "
    "does not show the answer, say so. Answer in the language of the question, concisely."
)
SIMILAR = 0.5


class OcrLineModel(BaseModel):
    text: str
    box: list[int] = Field(description="x0, y0, x1, y1 in pixels of the original image.")
    confidence: float


class ColourModel(BaseModel):
    hex: str
    name: str
    share: float


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
    dominant_colours: list[ColourModel]
    faces: list[list[int]] = Field(description="Face boxes (x, y, w, h) from OpenCV's Haar detector (heuristic).")
    qr_codes: list[str]
    notes: list[str]


class SentImage(BaseModel):
    width: int
    height: int
    bytes: int
    mime: str


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


@dataclass
class Prepared:
    image: LoadedImage
    evidence: Evidence
    payload: bytes = b""
    mime: str = ""
    sent_width: int = 0
    sent_height: int = 0

    def evidence_model(self) -> EvidenceModel:
        ev = self.evidence
        return EvidenceModel(
            source=self.image.label, format=ev.format, mime=ev.mime, width=ev.width, height=ev.height,
            size_bytes=ev.size_bytes, frames=ev.frames, exif=ev.exif, ocr_engine=ev.ocr_engine, ocr_text=ev.ocr_text,
            ocr_lines=[OcrLineModel(**line) for line in ev.ocr_lines],
            dominant_colours=[ColourModel(hex=c.hex, name=c.name, share=c.share) for c in ev.colours],
            faces=ev.faces, qr_codes=ev.qr_codes, notes=ev.notes,
        )

    def sent(self) -> SentImage:
        return SentImage(width=self.sent_width, height=self.sent_height, bytes=len(self.payload), mime=self.mime)


def prepare(item: LocalInput, *, for_model: bool) -> Prepared:
    image = decode(item)
    prepared = Prepared(image=image, evidence=gather(image))
    if for_model:
        data, mime, width, height = image.encoded(model_max_side())
        prepared.payload, prepared.mime, prepared.sent_width, prepared.sent_height = data, mime, width, height
    return prepared


def build_messages(question: str, images: list[Prepared], instruction: str | None = None) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = []
    for number, item in enumerate(images, start=1):
        name = f"Image {number}" if len(images) > 1 else "The image"
        scaled = ""
        if (item.sent_width, item.sent_height) != (item.image.width, item.image.height):
            scaled = f" (sent downscaled to {item.sent_width} x {item.sent_height}; OCR boxes use the original size)"
        content.append({"type": "text", "text": f"{name}{scaled}. Local evidence:\n{item.evidence.summary()}"})
        content.append(image_part(item.payload, item.mime))
    ask = f"Question: {question}"
    if instruction:
        ask += f"\n\n{instruction}"
    content.append({"type": "text", "text": ask})
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": content}]


def ocr_support(answer: str, ocr_text: str) -> float:
    return coverage(answer, ocr_text)


@dataclass
class Verified:
    answer: ChatAnswer
    confidence: float
    details: dict[str, Any] = field(default_factory=dict)


def choose(answers: list[str], ocr_text: str) -> tuple[int, float, dict[str, Any]]:
    """The index of the answer the samples agree on most (OCR support breaks ties), and the confidence."""
    scores = []
    for i, answer in enumerate(answers):
        agreeing = sum(1 for j, other in enumerate(answers) if j == i or similarity(answer, other) >= SIMILAR)
        scores.append((agreeing, ocr_support(answer, ocr_text), -i))
    best = max(range(len(answers)), key=lambda i: scores[i])
    agreement = scores[best][0] / len(answers)
    support = scores[best][1]
    has_text = bool(ocr_text.strip())
    best_support = max(score[1] for score in scores) if has_text else 0.0
    relative_support = support / best_support if has_text and best_support > 0 else 0.0
    confidence = 0.8 * agreement + 0.2 * relative_support if has_text else agreement
    details = {
        "samples": len(answers),
        "agreement": round(agreement, 3),
        "ocr_support": round(support, 3) if has_text else None,
        "chosen_sample": best,
        "changed_from_first": best != 0 and similarity(answers[best], answers[0]) < SIMILAR,
        "sample_answers": answers,
    }
    return best, round(min(max(confidence, 0.0), 1.0), 3), details


async def ask(client: ModelClient, messages: list[dict[str, Any]], temperature: float | None = None) -> ChatAnswer:
    return await client.chat(messages, temperature=temperature, max_tokens=1500)


async def ask_verified(client: ModelClient, messages: list[dict[str, Any]], ocr_text: str) -> Verified:
    samples = int(settings.number("TOOLSUITE_VISION_SAMPLES", 3, minimum=2))
    results: list[ChatAnswer | None] = [None] * samples

    async def one(index: int) -> None:
        # The first sample is the deterministic answer; the others explore.
        results[index] = await ask(client, messages, temperature=0.0 if index == 0 else 0.8)

    async with anyio.create_task_group() as group:
        for index in range(samples):
            group.start_soon(one, index)
    answers = [r for r in results if r is not None]
    best, confidence, details = choose([a.text for a in answers], ocr_text)
    chosen = answers[best]
    for other in answers:
        if other is not chosen:
            chosen.usage.requests += other.usage.requests
            chosen.usage.prompt_tokens += other.usage.prompt_tokens
            chosen.usage.completion_tokens += other.usage.completion_tokens
    return Verified(answer=chosen, confidence=confidence, details=details)


NO_MODEL_CONSEQUENCE = "the question cannot be answered by looking at the image; here is what local analysis found"


def no_model_text(prepared: list[Prepared], lead: str) -> str:
    parts = [lead]
    for number, item in enumerate(prepared, start=1):
        title = f"Image {number} ({item.image.label})" if len(prepared) > 1 else f"Image ({item.image.label})"
        parts.append(f"## {title}\n{item.evidence.summary()}")
    return "\n\n".join(parts)


async def answer(sources: list[str], question: str | None, *, verify: bool = False,
                 instruction: str | None = None, no_model: str = NO_MODEL_CONSEQUENCE,
                 no_model_heading: str | None = None) -> tuple[str, VisionOutput]:
    """Evidence for every image, then (when a vision model can be used) one answer or a verified one."""
    client = ModelClient("VISION", purpose="vision")
    reason = client.unavailable()
    use_model = reason is None

    def prepare_all(items: list[LocalInput], job: Job) -> list[Prepared]:
        prepared = []
        for item in items:
            job.stop.check("image analysis")
            prepared.append(prepare(item, for_model=use_model))
        return prepared

    prepared, _labels = await worker.run_on_inputs(sources, prepare_all)
    evidence = [item.evidence_model() for item in prepared]
    notes = [note for item in prepared for note in item.image.notes]
    if not use_model or question is None:
        text = no_model_text(prepared, client.unanswered(no_model, heading=no_model_heading)) if reason else \
            "\n\n".join(item.evidence.summary() for item in prepared)
        return text, VisionOutput(answer=None, model=None, model_configured=client.configured, confidence=None,
                                  verification=None, evidence=evidence, sent=[], notes=notes + ([reason] if reason
                                                                                                    else []))
    messages = build_messages(question, prepared, instruction)
    ocr_text = "\n".join(item.evidence.ocr_text for item in prepared)
    try:
        if verify:
            verified = await ask_verified(client, messages, ocr_text)
            reply, confidence, details = verified.answer, verified.confidence, verified.details
        else:
            reply, confidence, details = await ask(client, messages), None, None
    finally:
        await client.close()
    text = reply.text
    if confidence is not None:
        text += (f"\n\n[verification: {details['samples']} samples, agreement {details['agreement']:.0%}, "
                 f"heuristic confidence {confidence:.2f}"
                 + ("; the first answer was replaced by the one the samples agreed on" if details["changed_from_first"]
                    else "") + "]")
    output = VisionOutput(answer=reply.text, model=reply.model, model_configured=True, confidence=confidence,
                          verification=details, evidence=evidence, sent=[item.sent() for item in prepared], notes=notes)
    return text, output
