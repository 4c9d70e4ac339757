"""tool-reader: any document to Markdown. Interface complete; engine pending."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from shared.params import PathOrUrl
from shared.server import READ_ONLY_OPEN, PendingOutput, add_tool, create_server, pending_tool
from shared.transport import run_server

NAME = "tool-reader"


def convert_to_markdown(
    uri: PathOrUrl,
    pages: Annotated[str | None, Field(description="Pages to convert for paged formats, e.g. \"3-7,10\".",
                                       max_length=200)] = None,
    start_index: Annotated[int, Field(description="First character of the Markdown to return.", ge=0)] = 0,
    max_chars: Annotated[int | None, Field(description="Most characters to return (default: the output "
                                           "budget).", ge=100, le=2_000_000)] = None,
) -> None:
    """Convert a document (PDF with OCR for scanned pages, DOCX, PPTX, XLSX/XLS/CSV, HTML, EPUB, JSON, XML,
    text, images, ZIP) to Markdown with page markers; long documents come back in parts."""
    return pending_tool(NAME, "convert_to_markdown")


def document_info(uri: PathOrUrl) -> None:
    """Describe a document before reading it: format, size, pages/sheets/slides, metadata, outline."""
    return pending_tool(NAME, "document_info")


def build():
    server = create_server(NAME, "Reads any document (local path, URL or data: URI) as Markdown.")
    add_tool(server, convert_to_markdown, title="Convert a document to Markdown", output=PendingOutput,
             annotations=READ_ONLY_OPEN)
    add_tool(server, document_info, title="Describe a document", output=PendingOutput,
             annotations=READ_ONLY_OPEN)
    return server


def main() -> None:
    from servers.registry import entry

    run_server(NAME, entry(NAME).port, build)
