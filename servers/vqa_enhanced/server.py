"""tool-vqa-enhanced: grounded, verifiable answers about images; comparisons; metadata."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from servers import registry
from servers.image_tools import calls
from servers.image_tools.outputs import VisionOutput
from shared.params import EnableVerification, PathOrUrl, Question
from shared.server import READ_ONLY_OPEN, REMOTE_MODEL, ToolResult, add_tool, create_server

DESCRIBE = ("Describe this image in detail: the scene, objects, people, any text (quote it exactly), and anything "
            "notable for identifying where or when it was taken.")


async def vision_understanding_advanced(image_path_or_url: PathOrUrl, question: Question,
                                        enable_verification: EnableVerification = True) -> ToolResult:
    """Answer a question about an image with local evidence and, by default, verification.

    Verification asks the vision model several times concurrently (TOOLSUITE_VISION_SAMPLES, 3; the first at
    temperature 0, the others exploring) and keeps the answer the samples agree on most, cross-checked against
    the OCR text; it can replace the first answer. The confidence is a heuristic (0.8 x agreement share +
    0.2 x OCR support when the image has text), not a probability. Without a vision model: the local evidence
    and a statement that no model is set.
    """
    return await calls.answer([image_path_or_url], question, verify=enable_verification)


async def vision_quick_answer(image_path_or_url: PathOrUrl, question: Question) -> ToolResult:
    """Answer a question about an image in one model pass (with the local evidence, no verification)."""
    return await calls.answer([image_path_or_url], question)


async def vision_extract_metadata(image_path_or_url: PathOrUrl) -> ToolResult:
    """Everything local analysis finds in an image: format from the bytes, size, frames, EXIF (camera, time,
    GPS), OCR text with boxes and confidence, dominant colours, faces and QR codes; plus a detailed description
    by the vision model when one is configured."""
    result = await calls.answer([image_path_or_url], DESCRIBE, no_model="there is no description",
                                no_model_heading="Local evidence")
    output = result.data
    if isinstance(output, VisionOutput) and output.answer:
        evidence = "\n\n".join(
            f"Local evidence:\nImage: {e.format}, {e.width} x {e.height} pixels\nText (OCR): {e.ocr_text or 'none'}"
            for e in output.evidence)
        result.text = f"{output.answer}\n\n{evidence}"
    return result


async def vision_comparative_analysis(
    image_path_or_url_1: PathOrUrl,
    image_path_or_url_2: PathOrUrl,
    comparison_question: Annotated[str, Field(description="What to compare between the two images.",
                                              min_length=1, max_length=20_000)],
) -> ToolResult:
    """Compare two images: both are sent to the vision model together, each with its local evidence, in one
    request. Without a vision model: both images' evidence side by side."""
    return await calls.answer([image_path_or_url_1, image_path_or_url_2], comparison_question,
                              instruction="Compare Image 1 and Image 2; name which image each point is about.")


def build():
    server = create_server(registry.name_of(__name__),
                           "Grounded, verifiable answers about images; comparisons; image metadata.")
    add_tool(server, vision_understanding_advanced, title="Analyse an image (verified)", output=VisionOutput,
             annotations=REMOTE_MODEL)
    add_tool(server, vision_quick_answer, title="Quick answer about an image", output=VisionOutput,
             annotations=REMOTE_MODEL)
    add_tool(server, vision_extract_metadata, title="Image metadata and evidence", output=VisionOutput,
             annotations=READ_ONLY_OPEN)
    add_tool(server, vision_comparative_analysis, title="Compare two images", output=VisionOutput,
             annotations=REMOTE_MODEL)
    return server
