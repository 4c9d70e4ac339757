"""tool-vqa-enhanced: grounded, verifiable answers about images. Interface complete; engine pending."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from shared.params import EnableVerification, PathOrUrl, Question
from shared.server import READ_ONLY_OPEN, REMOTE_MODEL, PendingOutput, add_tool, create_server, pending_tool
from shared.transport import run_server

NAME = "tool-vqa-enhanced"


def vision_understanding_advanced(image_path_or_url: PathOrUrl, question: Question,
                                  enable_verification: EnableVerification = True) -> None:
    """Answer a question about an image with evidence and optional verification (several samples, OCR
    cross-check); returns the answer, a heuristic confidence and the evidence."""
    return pending_tool(NAME, "vision_understanding_advanced")


def vision_quick_answer(image_path_or_url: PathOrUrl, question: Question) -> None:
    """Answer a question about an image in one model pass."""
    return pending_tool(NAME, "vision_quick_answer")


def vision_extract_metadata(image_path_or_url: PathOrUrl) -> None:
    """Local evidence about an image (format, size, EXIF, OCR text, colours, faces, QR codes) plus a model
    description when a vision model is configured."""
    return pending_tool(NAME, "vision_extract_metadata")


def vision_comparative_analysis(
    image_path_or_url_1: PathOrUrl,
    image_path_or_url_2: PathOrUrl,
    comparison_question: Annotated[str, Field(description="What to compare.", min_length=1,
                                              max_length=20_000)],
) -> None:
    """Compare two images; both are shown to the vision model together."""
    return pending_tool(NAME, "vision_comparative_analysis")


def build():
    server = create_server(NAME, "Grounded, verifiable answers about images.")
    add_tool(server, vision_understanding_advanced, title="Analyse an image", output=PendingOutput,
             annotations=REMOTE_MODEL)
    add_tool(server, vision_quick_answer, title="Quick answer about an image", output=PendingOutput,
             annotations=REMOTE_MODEL)
    add_tool(server, vision_extract_metadata, title="Image metadata and evidence", output=PendingOutput,
             annotations=READ_ONLY_OPEN)
    add_tool(server, vision_comparative_analysis, title="Compare two images", output=PendingOutput,
             annotations=REMOTE_MODEL)
    return server


def main() -> None:
    from servers.registry import entry

    run_server(NAME, entry(NAME).port, build)
