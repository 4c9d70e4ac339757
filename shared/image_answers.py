"""Grounded answers about images (tool-vqa and tool-vqa-enhanced): evidence first, then the model.
Knows nothing about MCP: callers open the inputs (`look` runs with them open) and render the result.

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


@dataclass
class Prepared:
    """An image with its local evidence and, once `encode` ran, the copy the model is sent."""

    image: LoadedImage
    evidence: Evidence
    payload: bytes = b""
    mime: str = ""
    sent_width: int = 0
    sent_height: int = 0

    def encode(self) -> None:
        self.payload, self.mime, self.sent_width, self.sent_height = self.image.encoded(model_max_side())


def prepare(item: LocalInput, *, for_model: bool = False) -> Prepared:
    image = decode(item)
    prepared = Prepared(image=image, evidence=gather(image))
    if for_model:
        prepared.encode()
    return prepared


def look(items: list[LocalInput], job: Job) -> list[Prepared]:
    """Decode every image and gather its evidence: the part of the work that needs the inputs themselves."""
    prepared = []
    for item in items:
        job.stop.check("image analysis")
        prepared.append(prepare(item))
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


@dataclass
class ImageAnswer:
    text: str  # the model's answer; without a model, why not and what local analysis found
    answer: str | None
    model: str | None
    model_configured: bool
    confidence: float | None
    verification: dict[str, Any] | None
    prepared: list[Prepared]
    notes: list[str]


NO_MODEL_CONSEQUENCE = "the question cannot be answered by looking at the image; here is what local analysis found"


def no_model_text(prepared: list[Prepared], lead: str) -> str:
    parts = [lead]
    for number, item in enumerate(prepared, start=1):
        title = f"Image {number} ({item.image.label})" if len(prepared) > 1 else f"Image ({item.image.label})"
        parts.append(f"## {title}\n{item.evidence.summary()}")
    return "\n\n".join(parts)


async def answer(prepared: list[Prepared], question: str, *, verify: bool = False, instruction: str | None = None,
                 no_model: str = NO_MODEL_CONSEQUENCE, no_model_heading: str | None = None) -> ImageAnswer:
    """One answer, or a verified one, when a vision model can be used; else the evidence and the reason.
    `no_model` says what the missing model means for this call (see `ModelClient.unanswered`)."""
    client = ModelClient("VISION", purpose="vision")
    reason = client.unavailable()
    notes = [note for item in prepared for note in item.image.notes]
    if reason:
        return ImageAnswer(text=no_model_text(prepared, client.unanswered(no_model, heading=no_model_heading)),
                           answer=None, model=None, model_configured=client.configured, confidence=None,
                           verification=None, prepared=prepared, notes=[*notes, reason])
    await worker.run(lambda job: [item.encode() for item in prepared])
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
    return ImageAnswer(text=reply.text, answer=reply.text, model=reply.model, model_configured=True,
                       confidence=confidence, verification=details, prepared=prepared, notes=notes)
