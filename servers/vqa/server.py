"""tool-vqa: questions about images. Interface complete; engine pending."""

from __future__ import annotations

from shared.params import PathOrUrl, Question
from shared.server import REMOTE_MODEL, PendingOutput, add_tool, create_server, pending_tool
from shared.transport import run_server

NAME = "tool-vqa"


def visual_question_answering(image_path_or_url: PathOrUrl, question: Question) -> None:
    """Answer a question about an image with a vision model, grounded in local evidence (OCR text, size,
    EXIF, colours)."""
    return pending_tool(NAME, "visual_question_answering")


def build():
    server = create_server(NAME, "Answers questions about images.")
    add_tool(server, visual_question_answering, title="Ask about an image", output=PendingOutput,
             annotations=REMOTE_MODEL)
    return server


def main() -> None:
    from servers.registry import entry

    run_server(NAME, entry(NAME).port, build)
