"""tool-reader: the MCP face of `servers.reader.engine`."""

from __future__ import annotations

from typing import Annotated, Literal

from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field

from servers import registry
from servers.reader import engine
from shared import budget, worker
from shared.inputs import LocalInput
from shared.outputs import from_engine, mirrors
from shared.params import PathOrUrl
from shared.server import READ_ONLY_OPEN, Progress, ToolResult, add_tool, create_server
from shared.worker import Job


@mirrors(engine.Document, leave_out={"label": "shown as source", "pages": "shown as pages_returned",
                                     "size_bytes": "in document_info", "units": "in document_info",
                                     "unit_name": "in document_info"})
class ConvertOutput(BaseModel):
    source: str = Field(description="The path (relative to its root) or URL that was read.")
    format: str = Field(description="Format found from the file's bytes (pdf, docx, pptx, xlsx, image...).")
    mime: str
    title: str | None
    total_pages: int | None = Field(description="Pages in the whole PDF (PDFs only).")
    pages_returned: list[int] | None = Field(description="The PDF pages whose Markdown this call read (all "
                                             "the pages asked for, unless complete is false).")
    ocr_pages: list[int] = Field(description="Pages whose text came from OCR.")
    total_chars: int = Field(description="Characters of Markdown for the pages asked for (complete is true), "
                             "or for the pages read so far (complete is false).")
    start_index: int
    end_index: int
    next_start_index: int | None = Field(description="Pass as start_index to read on; null at the end.")
    markdown: str
    notes: list[str]
    cached: bool = Field(description="True when the conversion came from the cache.")
    seconds: float
    complete: bool = Field(description="False when a long PDF was converted only as far as this part needs; "
                           "reading on (next_start_index) converts further.")


@mirrors(engine.Info, leave_out={"label": "shown as source"})
class InfoOutput(BaseModel):
    source: str
    format: str
    mime: str
    size_bytes: int
    title: str | None
    author: str | None
    pages: int | None = Field(description="PDF page count.")
    units: int | None = Field(description="Sheets, slides, rows or archive members, as unit_name says.")
    unit_name: str | None
    outline: list[dict] = Field(description="PDF bookmarks (level, title, page) or the document's headings.")
    pages_needing_ocr: list[int] = Field(description="PDF pages without a text layer (they will be OCRed).")
    encrypted: bool
    characters: int | None = Field(description="Length of the Markdown conversion (non-PDF formats).")
    metadata: dict[str, str] = Field(description="The PDF's own metadata fields (producer, creator, dates...).")


async def convert_to_markdown(
    uri: PathOrUrl,
    ctx: Context,
    pages: Annotated[str | None, Field(description="PDF pages to convert, 1-based, e.g. \"3-7,10\" (default: all).",
                                       max_length=200)] = None,
    start_index: Annotated[int, Field(description="First character of the Markdown to return (for paging).",
                                      ge=0)] = 0,
    max_chars: Annotated[int | None, Field(description="Most characters to return (default: as much as the "
                                           "output budget allows, about 20,000 tokens).",
                                           ge=100, le=2_000_000)] = None,
    mode: Annotated[Literal["fast", "layout"], Field(description="PDF only: 'fast' (default, text + tables + "
                                                     "OCR) or 'layout' (pymupdf4llm, richer structure, slower).")
                    ] = "fast",
) -> ToolResult:
    """Convert a document to Markdown: PDF (page markers <!-- page N -->, tables, OCR for scanned pages), DOCX,
    PPTX, XLSX/XLS/CSV (tables, row caps), HTML (main content), EPUB, JSON, XML, text in any common encoding,
    images (OCR text, size, EXIF) and ZIP (listing and members).

    Accepts a local path or file:// URI inside the allowed roots, an http(s) URL (fetched safely) or a data:
    URI. The type comes from the file's bytes, not its name. Long documents come back in parts: the text ends
    with the next start_index to ask for; `pages` picks PDF pages. Cite PDF content as [file.pdf, page N].
    Use document_info first to plan reads of a long document.
    """
    window = engine.Window(start_index, max_chars, _content_budget())

    def work(item: LocalInput, job: Job) -> engine.Document:
        return engine.convert(item, pages=pages, mode=mode, progress=job.progress, stop=job.stop, window=window)

    document, _label = await worker.run_on_input(uri, work, progress=Progress(ctx))
    page = budget.page_of(document.markdown, window.start_index, window.max_chars, max_tokens=window.max_tokens)
    footer = _footer(document, page)
    data = from_engine(ConvertOutput, document, source=document.label, pages_returned=document.pages,
                       total_chars=page.total_chars, start_index=page.start_index, end_index=page.end_index,
                       next_start_index=page.end_index if page.has_more else None, markdown=page.text)
    notes = "".join(f"[note: {note}]\n" for note in document.notes)
    return ToolResult(text=f"{notes}{page.text}\n\n{footer}", data=data)


def _content_budget() -> int:
    from shared import settings

    return max(settings.max_output_tokens() - 300, 200)  # room for the footer and notes


def _footer(document: engine.Document, page: budget.Page) -> str:
    where = ""
    if document.total_pages:
        shown = document.pages or []
        span = f"pages {shown[0]}-{shown[-1]}" if len(shown) > 1 else f"page {shown[0]}" if shown else "no pages"
        where = f"{span} of {document.total_pages}; "
    if page.has_more or not document.complete:  # an incomplete part: later pages convert when read on
        so_far = "" if document.complete else "read so far: "
        return (f"[{where}{so_far}characters {page.start_index}-{page.end_index} of {page.total_chars}; call "
                f"convert_to_markdown again with start_index={page.end_index} for the next part]")
    return f"[{where}end of document: {page.total_chars} characters]"


async def document_info(uri: PathOrUrl) -> ToolResult:
    """Describe a document before reading it: format (from its bytes), size, page/sheet/slide count, title
    and author, the outline (PDF bookmarks or headings), which PDF pages need OCR, and whether it is
    encrypted. Cheap for PDFs (no conversion); other formats are converted once and cached."""
    info, _label = await worker.run_on_input(uri, lambda item, job: engine.info(item, stop=job.stop))
    data = from_engine(InfoOutput, info, source=info.label)
    lines = [f"Source: {info.label}", f"Format: {info.format} ({info.mime})", f"Size: {info.size_bytes} bytes"]
    if info.encrypted:
        lines.append("Encrypted: yes (password-protected; cannot be read)")
    if info.title:
        lines.append(f"Title: {info.title}")
    if info.author:
        lines.append(f"Author: {info.author}")
    if info.pages is not None:
        lines.append(f"Pages: {info.pages}")
    if info.units is not None:
        lines.append(f"{(info.unit_name or 'units').capitalize()}: {info.units}")
    if info.characters is not None:
        lines.append(f"Markdown length: {info.characters} characters")
    if info.pages_needing_ocr:
        lines.append(f"Pages without a text layer (OCR): {_ranges(info.pages_needing_ocr)}")
    if info.outline:
        lines.append("Outline:")
        for entry in info.outline[:100]:
            indent = "  " * max(entry.get("level", 1) - 1, 0)
            page = f" (page {entry['page']})" if entry.get("page") else ""
            lines.append(f"{indent}- {entry['title']}{page}")
    return ToolResult(text="\n".join(lines), data=data)


def _ranges(numbers: list[int]) -> str:
    parts, start = [], None
    for index, number in enumerate(numbers):
        if start is None:
            start = number
        if index + 1 == len(numbers) or numbers[index + 1] != number + 1:
            parts.append(str(start) if start == number else f"{start}-{number}")
            start = None
    return ",".join(parts)


def build():
    server = create_server(registry.name_of(__name__),
                           "Reads any document (local path, URL or data: URI) as Markdown, in pages.")
    add_tool(server, convert_to_markdown, title="Convert a document to Markdown", output=ConvertOutput,
             annotations=READ_ONLY_OPEN)
    add_tool(server, document_info, title="Describe a document", output=InfoOutput, annotations=READ_ONLY_OPEN)
    return server
