"""PDF to Markdown with pymupdf, one page at a time, so pages can be cached and OCRed on demand.

Fast path (`mode="fast"`): text blocks in reading order; lines set in a clearly larger font than
the page's body become headings; tables become Markdown tables, looked for only on pages whose
vector drawings include enough ruling lines (pymupdf's line-based finder, without its layout
model, which costs ~170 ms a page); pages with no text layer are rendered and OCRed.
Layout path (`mode="layout"`): pymupdf4llm's Markdown for the page (multi-column order, richer
structure) at a higher cost. Every page starts with a `<!-- page N -->` marker.
"""

from __future__ import annotations

import itertools
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servers.reader.detail import safe_detail
from shared import cjk
from shared.errors import InputError

ENGINE_VERSION = "pdf-1"
OCR_DPI = 200
MIN_TEXT_CHARS = 12
# Structure caps, checked before MuPDF recurses or allocates without bound.
MAX_PAGES = 100_000
MAX_OUTLINE_DEPTH = 64
MAX_OUTLINE_ITEMS = 20_000
MAX_RENDER_PIXELS = 25_000_000  # the OCR bitmap of one page (A4 at 200 dpi is 3.9 million)
MIN_RENDER_DPI = 50  # below this OCR reads nothing, so the page is not rendered at all
MAX_IMAGE_PIXELS = 80_000_000  # an image on a scanned page, decoded whole by MuPDF when rendered


@dataclass
class PageText:
    number: int  # 1-based
    markdown: str
    ocr: bool = False


def _reference(value: tuple[str, str]) -> int | None:
    """The object number of an indirect reference as pymupdf's xref_get_key gives it, e.g. ('xref', '12 0 R')."""
    kind, text = value
    if kind != "xref":
        return None
    number = text.split(" ", 1)[0]
    return int(number) if number.isdigit() else None


def outline_problem(document: Any) -> str | None:
    """Why the outline must not be loaded, found by walking it iteratively; None when it may be."""
    root = _reference(document.xref_get_key(-1, "Root"))
    outlines = _reference(document.xref_get_key(root, "Outlines")) if root else None
    if outlines is None:
        return None
    first = document.xref_get_key(outlines, "First")
    if first[0] == "dict":  # outline items must be indirect objects; inline ones cannot be walked safely
        return "its outline is written inline"
    stack = [(_reference(first), 1)]
    seen: set[int] = set()
    limit = document.xref_length()
    while stack:
        item, depth = stack.pop()
        if item is None or item in seen or not 0 < item < limit:
            continue
        seen.add(item)
        if depth > MAX_OUTLINE_DEPTH:
            return f"its outline is nested more than {MAX_OUTLINE_DEPTH} levels deep"
        if len(seen) > MAX_OUTLINE_ITEMS:
            return f"its outline has more than {MAX_OUTLINE_ITEMS:,} entries"
        following, child = document.xref_get_key(item, "Next"), document.xref_get_key(item, "First")
        if "dict" in (following[0], child[0]):
            return "its outline is written inline"
        stack.append((_reference(following), depth))
        stack.append((_reference(child), depth + 1))
    return None


def _document_class() -> type:
    import pymupdf

    class BoundedDocument(pymupdf.Document):
        """pymupdf loads the outline while opening a PDF, with MuPDF's recursive loader: an outline
        nested 60,000 levels deep (a 9 MB file) overflows the C stack and kills the server. The
        outline is walked iteratively first and loaded only within the caps."""

        outline_note: str | None = None

        def _loadOutline(self) -> Any:  # overrides pymupdf.Document._loadOutline
            try:
                problem = outline_problem(self)
            except Exception:  # a damaged trailer or catalog: no outline rather than no document
                problem = "its outline cannot be read"
            if problem:
                self.outline_note = problem
                return None
            return super()._loadOutline()

    return BoundedDocument


_BOUNDED: type | None = None


def open_pdf(path: Path, *, to_describe: bool = False) -> Any:
    """The one way a PDF is opened, within the structure caps. A damaged file is refused; so are
    encrypted and page-less ones, unless the document is only to be described (document_info reports
    those instead)."""
    import pymupdf

    global _BOUNDED
    if _BOUNDED is None:
        _BOUNDED = _document_class()
    try:
        document = _BOUNDED(path, filetype="pdf")
    except (pymupdf.FileDataError, RuntimeError, ValueError) as exc:
        raise InputError(f"the PDF is damaged and cannot be opened ({safe_detail(exc, 120)})") from None
    if document.needs_pass:
        if to_describe:
            return document
        document.close()
        raise InputError("the PDF is encrypted (password-protected): it cannot be read without its password")
    try:
        count = document.page_count
    except Exception:  # MuPDF refuses a page tree whose /Count is absurd
        document.close()
        raise InputError("the PDF's page tree is damaged: its pages cannot be counted") from None
    if count > MAX_PAGES:
        document.close()
        raise InputError(f"the PDF declares {count:,} pages; the limit is {MAX_PAGES:,}")
    if count == 0 and not to_describe:
        document.close()
        raise InputError("the PDF has no pages (it may be truncated)")
    return document


def page_needs_ocr(page: Any) -> bool:
    return len(page.get_text("text").strip()) < MIN_TEXT_CHARS and bool(page.get_images(full=False))


def _ruled_region(page: Any) -> tuple[float, float, float, float] | None:
    """Where the page's vector drawings could form a table grid (at least three distinct horizontal
    rules and two distinct vertical ones; decorative lines rarely are both), or None. The table
    finder then looks only there: it costs ~50 ms on a whole dense page and ~4 ms on the region."""
    rows: set[tuple[int, int, int]] = set()
    columns: set[int] = set()
    box = [float("inf"), float("inf"), float("-inf"), float("-inf")]
    for path in page.get_cdrawings():
        for item in path.get("items", ()):
            if item[0] == "l":
                (x0, y0), (x1, y1) = item[1], item[2]
            elif item[0] == "re":
                x0, y0, x1, y1 = item[1]
                if y1 - y0 >= 2 and x1 - x0 >= 2:
                    continue  # a filled box, not a rule
            else:
                continue
            if abs(y0 - y1) < 2 and abs(x1 - x0) > 20:
                rows.add((round(y0), round(min(x0, x1) / 5), round(max(x0, x1) / 5)))
            elif abs(x0 - x1) < 2 and abs(y1 - y0) > 8:
                columns.add(round(x0))
            else:
                continue
            box = [min(box[0], x0, x1), min(box[1], y0, y1), max(box[2], x0, x1), max(box[3], y0, y1)]
    if len(rows) >= 3 and len(columns) >= 2:
        return (box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2)
    return None


def _tables(page: Any) -> list[tuple[tuple[float, float, float, float], str]]:
    region = _ruled_region(page)
    if region is None:
        return []
    found = []
    try:
        for table in page.find_tables(use_layout=False, clip=region).tables:
            if table.row_count < 2 or table.col_count < 2:
                continue
            markdown = table.to_markdown(clean=False).strip()
            if markdown:
                found.append((tuple(table.bbox), markdown))
    except Exception:  # a table the finder cannot parse is left as text
        return []
    return found


def _inside(box: tuple[float, float, float, float], outer: tuple[float, float, float, float]) -> bool:
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return outer[0] - 1 <= cx <= outer[2] + 1 and outer[1] - 1 <= cy <= outer[3] + 1


def _fast_page(page: Any, content: dict[str, Any]) -> str:
    tables = _tables(page)
    lines: list[tuple[float, float, str]] = []  # (y, size, text)
    sizes: list[float] = []
    for block in content.get("blocks", ()):
        if block.get("type") != 0 or any(_inside(tuple(block["bbox"]), t[0]) for t in tables):
            continue
        for line in block.get("lines", ()):
            spans = [s for s in line.get("spans", ()) if s.get("text", "").strip()]
            if not spans:
                continue
            text = "".join(s["text"] for s in line["spans"]).strip()
            size = max(s["size"] for s in spans)
            for span in spans:  # the body size is the size most characters are set in
                sizes.extend([span["size"]] * len(span["text"].strip()))
            lines.append((line["bbox"][1], size, text))
    body = statistics.median(sizes) if sizes else 0.0
    steps = [b[0] - a[0] for a, b in itertools.pairwise(lines) if 0 < b[0] - a[0] < 4 * max(a[1], 1)]
    usual_step = statistics.median(steps) if steps else 0.0
    pieces: list[tuple[float, str]] = []
    paragraph: list[str] = []
    paragraph_y = 0.0
    last_y = None
    for y, size, text in lines:
        heading = body and size >= body * 1.25 and len(text) <= 80
        gap = last_y is not None and (y - last_y > usual_step * 1.4 + 0.5 or y < last_y)
        if (heading or gap) and paragraph:
            pieces.append((paragraph_y, _join_lines(paragraph)))
            paragraph = []
        if heading:
            level = "#" if size >= body * 1.8 else "##" if size >= body * 1.5 else "###"
            pieces.append((y, f"{level} {text}"))
        else:
            if not paragraph:
                paragraph_y = y
            paragraph.append(text)
        last_y = y
    if paragraph:
        pieces.append((paragraph_y, _join_lines(paragraph)))
    pieces.extend((bbox[1], markdown) for bbox, markdown in tables)
    pieces.sort(key=lambda item: item[0])
    return "\n\n".join(text for _, text in pieces)


def _join_lines(lines: list[str]) -> str:
    """Join wrapped lines as `cjk.join` does, except that a line ending in a hyphen continues its word."""
    out = lines[0]
    for line in lines[1:]:
        if out.endswith("-"):
            out = (out[:-1] if out[-2:-1].isalpha() else out) + line
            continue
        out = cjk.join((out, line))
    return out


def _render_dpi(page: Any) -> float:
    """OCR_DPI, lowered so that the page's bitmap stays within MAX_RENDER_PIXELS."""
    area = max(page.rect.width * page.rect.height, 1.0)  # in points
    return min(float(OCR_DPI), 72 * math.sqrt(MAX_RENDER_PIXELS / area))


def ocr_refusal(page: Any) -> str | None:
    """Why a scanned page must not be rendered for OCR, or None."""
    for image in page.get_images(full=True):
        width, height = image[2], image[3]
        if width * height > MAX_IMAGE_PIXELS:
            return (f"it holds a {width:,} x {height:,} image, over the {MAX_IMAGE_PIXELS / 1e6:g} megapixel "
                    "limit (decompression bomb guard)")
    if _render_dpi(page) < MIN_RENDER_DPI:
        inches = f"{page.rect.width / 72:,.0f} x {page.rect.height / 72:,.0f} inches"
        return f"the page is {inches}, too large to render for OCR"
    return None


def _ocr_page(page: Any) -> str:
    from shared import ocr

    pixmap = page.get_pixmap(dpi=round(_render_dpi(page)), colorspace="rgb", alpha=False)
    import numpy as np

    array = np.frombuffer(pixmap.samples, dtype=np.uint8).reshape(pixmap.height, pixmap.width, 3)
    result = ocr.read(array)
    return result.text


def _layout_page(document: Any, index: int) -> str:
    import pymupdf4llm

    # Scanned pages never reach here (they take the OCR path), so pymupdf4llm's own OCR stays off.
    return pymupdf4llm.to_markdown(document, pages=[index], show_progress=False, use_ocr=False).strip()


def _text_chars(content: dict[str, Any]) -> int:
    return sum(len(span.get("text", "").strip()) for block in content.get("blocks", ()) if block.get("type") == 0
               for line in block.get("lines", ()) for span in line.get("spans", ()))


def convert_page(document: Any, number: int, mode: str = "fast", allow_ocr: bool = True) -> PageText:
    """One page as Markdown; a page MuPDF cannot read becomes a marker saying so, never an exception
    that loses the pages around it."""
    try:
        return _convert_page(document, number, mode, allow_ocr)
    except (RuntimeError, ValueError, IndexError) as exc:  # MuPDF's errors are RuntimeError subclasses
        return PageText(number, f"<!-- page {number} (cannot be read: {safe_detail(exc, 120)}) -->")


def _convert_page(document: Any, number: int, mode: str, allow_ocr: bool) -> PageText:
    import pymupdf

    page = document[number - 1]
    # One text extraction serves both the scanned-page test and the conversion.
    content = page.get_text("dict", sort=True, flags=pymupdf.TEXTFLAGS_TEXT)
    if _text_chars(content) < MIN_TEXT_CHARS and page.get_images(full=False):
        if not allow_ocr:
            return PageText(number, f"<!-- page {number} (scanned; not OCRed in this call) -->", ocr=False)
        refusal = ocr_refusal(page)
        if refusal:
            return PageText(number, f"<!-- page {number} (scanned; not OCRed: {refusal}) -->", ocr=False)
        text = _ocr_page(page)
        body = text.strip() or "(no text found on this scanned page)"
        return PageText(number, f"<!-- page {number} (OCR) -->\n\n{body}", ocr=True)
    body = _layout_page(document, number - 1) if mode == "layout" else _fast_page(page, content)
    return PageText(number, f"<!-- page {number} -->\n\n{body}".rstrip())


def outline(document: Any) -> list[dict[str, Any]]:
    note = getattr(document, "outline_note", None)
    if note:  # shown where the outline would be, so the agent knows why there is none
        return [{"level": 1, "title": f"(outline not read: {note})", "page": None}]
    return [{"level": level, "title": title, "page": page} for level, title, page in document.get_toc(simple=True)]


def pages_needing_ocr(document: Any) -> list[int]:
    """The 1-based numbers of pages without a text layer; unreadable pages are left out."""
    found = []
    for index in range(document.page_count):
        try:
            if page_needs_ocr(document[index]):
                found.append(index + 1)
        except (RuntimeError, ValueError, IndexError):
            continue
    return found


def parse_pages(spec: str | None, page_count: int) -> list[int]:
    """'3-7,10' -> [3, 4, 5, 6, 7, 10]; None -> every page."""
    if spec is None or not spec.strip():
        return list(range(1, page_count + 1))
    chosen: set[int] = set()
    for part in spec.replace(" ", "").split(","):
        if not part:
            continue
        start, sep, end = part.partition("-")
        try:
            first = int(start) if start else 1
            last = (int(end) if end else page_count) if sep else first
        except ValueError:
            raise InputError(f"invalid pages {spec!r}: use numbers and ranges like \"3-7,10\"") from None
        if first < 1 or last < first:
            raise InputError(f"invalid page range {part!r}: pages start at 1 and ranges go upwards")
        if first > page_count:
            raise InputError(f"page {first} does not exist: the document has {page_count} pages")
        chosen.update(range(first, min(last, page_count) + 1))
    if not chosen:
        raise InputError(f"invalid pages {spec!r}")
    return sorted(chosen)
