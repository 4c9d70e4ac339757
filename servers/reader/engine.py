"""Any opened input to Markdown: type from its bytes, the right converter, a cache.

Knows nothing about MCP. Conversions are cached under `TOOLSUITE_CACHE_DIR/reader`, keyed by the
file's SHA-256 and the converter version (and mode), so paging through a long document converts it
once. PDFs are cached page by page: a call for pages 40-45 converts (and OCRs) only those, and an
interrupted conversion keeps the pages it finished. A call that says which part of the Markdown it
returns (a `Window`) converts pages only until that part is covered; the next part's call reads
those pages from the cache and converts on from there.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servers.reader import formats, pdf
from shared import budget, cache, settings
from shared.errors import InputError
from shared.inputs import LocalInput
from shared.mime import FileType
from shared.worker import ProgressFn, StopFlag

log = logging.getLogger("toolsuite.reader")

ENGINE_VERSION = "reader-1"

FORMAT_NAMES = {
    "application/pdf": "pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": "pptx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "application/vnd.ms-excel": "xls",
    "application/epub+zip": "epub",
    "application/zip": "zip",
    "text/html": "html",
    "application/json": "json",
    "application/xml": "xml",
    "text/plain": "text",
}


@dataclass(kw_only=True)
class Described:
    """What is known of any opened document."""

    format: str
    mime: str
    label: str
    size_bytes: int
    title: str | None = None
    units: int | None = None  # sheets, slides, rows or archive members, as unit_name says
    unit_name: str | None = None


@dataclass(kw_only=True)
class Document(Described):
    markdown: str
    total_pages: int | None = None
    pages: list[int] | None = None
    ocr_pages: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cached: bool = False
    seconds: float = 0.0
    complete: bool = True  # False: conversion stopped once the call's window was covered (PDFs)


# Tokens converted past a window's end before conversion stops: the tokenizer's cut then falls where
# it falls in the whole text (its last few tokens can merge with what follows).
TOKEN_MARGIN = 64


@dataclass(frozen=True)
class Window:
    """The part of the Markdown a call returns, as `budget.page_of` cuts it."""

    start_index: int = 0
    max_chars: int | None = None
    max_tokens: int | None = None  # None: the output budget


class _Coverage:
    """Whether the PDF pages converted so far already hold a call's whole window and a little more,
    so that cutting the window from them gives what cutting it from the whole document would."""

    def __init__(self, window: Window) -> None:
        self.window = window
        self.limit = settings.max_output_tokens() if window.max_tokens is None else window.max_tokens
        self.length = 0  # characters of the pages so far, joined as the document joins them
        self.tokens = 0  # tokens past start_index, counted page by page (a page is counted once)

    def add(self, texts: list[str]) -> bool:
        """Take in the page just appended to `texts`; True once the window is covered."""
        joined_at = self.length + (2 if self.length else 0)  # "\n\n" between pages
        self.length = joined_at + len(texts[-1])
        after = self.length - self.window.start_index
        if after <= 0:
            return False
        if self.window.max_chars is not None and after > self.window.max_chars:
            return True
        self.tokens += budget.count_tokens(texts[-1][max(self.window.start_index - joined_at, 0):]) + 1
        if self.tokens <= self.limit + TOKEN_MARGIN:
            return False
        # Pages counted apart can differ from the joined text by a token a page: confirm on the text.
        return budget.count_tokens("\n\n".join(texts)[self.window.start_index:]) > self.limit + TOKEN_MARGIN


def max_input_bytes() -> int:
    return int(settings.number("TOOLSUITE_READER_MAX_MB", 512, minimum=1) * 2**20)


def _check_size(item: LocalInput) -> None:
    if item.size == 0:
        raise InputError(f"{item.label!r} is empty (0 bytes)")
    if item.size > max_input_bytes():
        raise InputError(f"{item.label!r} is {item.size / 2**20:.0f} MB; the reader's limit is "
                         f"{max_input_bytes() // 2**20} MB (TOOLSUITE_READER_MAX_MB)")


def format_name(file_type: FileType) -> str:
    if file_type.mime.startswith("image/"):
        return "image"
    return FORMAT_NAMES.get(file_type.mime, file_type.extension)


def _extension_note(item: LocalInput, name: str) -> list[str]:
    suffix = Path(item.label.split("?", 1)[0]).suffix.lower().lstrip(".")
    aliases = {"jpg": "image", "jpeg": "image", "png": "image", "gif": "image", "webp": "image", "bmp": "image",
               "tif": "image", "tiff": "image", "htm": "html", "txt": "text", "md": "text", "csv": "text",
               "tsv": "text", "markdown": "text", "ipynb": "json"}
    expected = aliases.get(suffix, suffix)
    if suffix and expected != name and not (name == "text" and suffix in ("log", "py", "rst")):
        return [f"the file's name ends in .{suffix} but its bytes are {item.file_type.mime}; read as {name}"]
    return []


def _cache_dir(digest: str, mode: str) -> Path:
    return cache.area("reader") / cache.cache_key(digest, ENGINE_VERSION, pdf.ENGINE_VERSION, mode)


def _convert_other(item: LocalInput, name: str) -> formats.Converted:
    mime = item.file_type.mime
    if name == "image":
        return formats.image(item)
    if name in ("xlsx", "xls"):
        return formats.spreadsheet(item.path, name)
    if mime in formats.OFFICE_EXTENSIONS:
        return formats.office(item.path, formats.OFFICE_EXTENSIONS[mime])
    if name == "zip":
        return formats.archive(item.path, formats.member_converter)
    if name == "html":
        return formats.html(item.path.read_bytes())
    if name == "json":
        return formats.json_file(item.path)
    if name == "xml":
        return formats.xml_file(item.path)
    if name == "text":
        with open(item.path, "rb") as handle:
            head = handle.read(8192)
        if formats.sniff_csv(item.label, item.file_type, head):
            return formats.csv_file(item.path)
        return formats.text_file(item.path)
    raise InputError(f"unsupported format: the bytes of {item.label!r} are {mime}; supported are PDF, DOCX, PPTX, "
                     "XLSX/XLS/CSV, HTML, EPUB, JSON, XML, text, images and ZIP")


def _whole_document(item: LocalInput, name: str, digest: str) -> Document:
    target = _cache_dir(digest, "whole") / "document.json"
    stored = cache.read(target)
    if stored is not None:
        data = json.loads(stored)
        return Document(**data, cached=True)
    converted = _convert_other(item, name)
    document = Document(markdown=converted.markdown, format=name, mime=item.file_type.mime, label=item.label,
                        size_bytes=item.size, title=converted.title, units=converted.units,
                        unit_name=converted.unit_name, notes=converted.notes)
    payload = {k: v for k, v in document.__dict__.items() if k not in ("cached", "seconds")}
    cache.write_atomic(target, json.dumps(payload, ensure_ascii=False).encode())
    return document


def _pdf_document(item: LocalInput, digest: str, pages_spec: str | None, mode: str,
                  progress: ProgressFn | None, stop: StopFlag | None, window: Window | None) -> Document:
    document = pdf.open_pdf(item.path)
    try:
        total = document.page_count
        wanted = pdf.parse_pages(pages_spec, total)
        folder = _cache_dir(digest, mode)
        ocr_budget = int(settings.number("TOOLSUITE_READER_OCR_PAGES", 20, minimum=1))
        texts: list[str] = []
        ocr_pages: list[int] = []
        skipped: list[int] = []
        all_cached = True
        coverage = _Coverage(window) if window is not None else None
        converted, complete = wanted, True
        for done, number in enumerate(wanted, start=1):
            if stop is not None:
                stop.check("the conversion")
            target = folder / f"p{number:05d}.md"
            stored = cache.read(target)
            if stored is not None:
                text = stored.decode("utf-8")
                if text.startswith(f"<!-- page {number} (OCR)"):
                    ocr_pages.append(number)
            else:
                all_cached = False
                page = pdf.convert_page(document, number, mode, allow_ocr=len(ocr_pages) < ocr_budget)
                text = page.markdown
                if page.ocr:
                    ocr_pages.append(number)
                if "not OCRed in this call" in text:
                    skipped.append(number)
                else:
                    cache.write_atomic(target, text.encode("utf-8"))
            texts.append(text)
            if progress is not None:
                progress(done, len(wanted), f"page {number} of {total}")
            if coverage is not None and done < len(wanted) and coverage.add(texts):
                converted, complete = wanted[:done], False
                break
        notes = []
        if skipped:
            notes.append(f"{len(skipped)} scanned pages were not OCRed in this call (at most {ocr_budget} per "
                         f"call, TOOLSUITE_READER_OCR_PAGES); ask for them with pages=\"{skipped[0]}-{skipped[-1]}\"")
        metadata = document.metadata or {}
        return Document(markdown="\n\n".join(texts), format="pdf", mime="application/pdf", label=item.label,
                        size_bytes=item.size, title=metadata.get("title") or None, total_pages=total,
                        pages=converted, ocr_pages=ocr_pages, notes=notes, cached=all_cached,
                        complete=complete)
    finally:
        document.close()


def convert(item: LocalInput, pages: str | None = None, mode: str = "fast", progress: ProgressFn | None = None,
            stop: StopFlag | None = None, window: Window | None = None) -> Document:
    """The opened input as Markdown (PDFs: the pages asked for), from the cache when it was converted before.
    With a `window`, a PDF's pages are converted only as far as that part of the Markdown needs."""
    if mode not in ("fast", "layout"):
        raise InputError(f"mode must be 'fast' or 'layout', not {mode!r}")
    started = time.perf_counter()
    _check_size(item)
    name = format_name(item.file_type)
    digest = cache.file_digest(item.path)
    if name == "pdf":
        document = _pdf_document(item, digest, pages, mode, progress, stop, window)
    else:
        if pages and pages.strip() not in ("1", "1-1"):
            raise InputError(f"pages applies to PDFs only; this file is {name}: use start_index/max_chars")
        document = _whole_document(item, name, digest)
    document.label = item.label
    document.notes = _extension_note(item, name) + document.notes
    document.seconds = round(time.perf_counter() - started, 3)
    return document


@dataclass(kw_only=True)
class Info(Described):
    author: str | None = None
    pages: int | None = None
    outline: list[dict[str, Any]] = field(default_factory=list)
    pages_needing_ocr: list[int] = field(default_factory=list)
    encrypted: bool = False
    characters: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)


def info(item: LocalInput, stop: StopFlag | None = None) -> Info:
    """What the opened input is: PDFs from their metadata without converting; other formats converted once
    (and cached) to count their units and find their headings."""
    _check_size(item)
    name = format_name(item.file_type)
    result = Info(format=name, mime=item.file_type.mime, label=item.label, size_bytes=item.size)
    if name == "pdf":
        with pdf.open_pdf(item.path, to_describe=True) as document:
            if document.needs_pass:
                result.encrypted = True
                return result
            metadata = document.metadata or {}
            result.title = metadata.get("title") or None
            result.author = metadata.get("author") or None
            result.metadata = {k: str(v)[:300] for k, v in metadata.items() if v}
            result.pages = document.page_count
            result.outline = pdf.outline(document)
            result.pages_needing_ocr = pdf.pages_needing_ocr(document)
        return result
    document = convert(item, stop=stop)
    result.title = document.title
    result.units, result.unit_name = document.units, document.unit_name
    result.characters = len(document.markdown)
    result.outline = [
        {"level": len(line) - len(line.lstrip("#")), "title": line.lstrip("#").strip()}
        for line in document.markdown.splitlines()
        if line.startswith("#") and line.lstrip("#").startswith(" ")
    ][:200]
    return result
