"""Every non-PDF format to Markdown, each with its caps. Libraries do the parsing: markitdown's
converters for Office/EPUB/notebooks, readability + markdownify for web pages, openpyxl/xlrd/csv
streamed for tables (so a million-row sheet is never loaded whole), defusedxml for XML."""

from __future__ import annotations

import csv
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servers.reader.detail import safe_detail
from shared.bounds import check_zip_directory, html_depth, json_depth, xml_problem
from shared.errors import InputError, NotConfigured
from shared.inputs import LocalInput
from shared.mime import FileType, sniff_bytes
from shared.text import decode

MAX_TABLE_ROWS = 2000
MAX_TABLE_COLUMNS = 60
MAX_CELL_CHARS = 300
MAX_STRUCTURED_BYTES = 20 * 2**20  # JSON/XML pretty-printed up to this size, shown raw beyond
ZIP_MAX_MEMBERS = 1000
ZIP_MAX_TOTAL = 200 * 2**20
ZIP_MAX_RATIO = 100
ZIP_MAX_MEMBER = 50 * 2**20
# Structure caps, checked before a parser can recurse or allocate per node (shared/bounds.py).
MAX_JSON_DEPTH = 200  # json.dumps(indent=...) recurses in Python once per level
MAX_XML_DEPTH = 200  # minidom's toprettyxml recurses once per level
MAX_XML_ELEMENTS = 100_000  # minidom costs about 1 KB of memory per node
MAX_HTML_DEPTH = 150  # markdownify recurses per element; lxml silently drops what is nested past 255
OFFICE_MAX_MEMBER = 100 * 2**20  # one unpacked member of a DOCX/PPTX/XLSX/EPUB (each is parsed whole)
OFFICE_MAX_TOTAL = 1024 * 2**20


@dataclass
class Converted:
    markdown: str
    title: str | None = None
    units: int | None = None  # sheets, slides, members...
    unit_name: str | None = None
    notes: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


OFFICE_EXTENSIONS = {
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": ".pptx",
    "application/epub+zip": ".epub",
}


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    text = text.replace("|", "\\|").replace("\r", " ").replace("\n", "<br>")
    return text if len(text) <= MAX_CELL_CHARS else text[:MAX_CELL_CHARS] + "…"


def rows_to_markdown(rows: Any, max_rows: int = MAX_TABLE_ROWS) -> tuple[str, int, bool]:
    """A Markdown table from an iterator of rows; returns (markdown, rows read, cut)."""
    lines: list[str] = []
    width = 0
    count = 0
    cut = False
    for row in rows:
        cells = [_cell(value) for value in list(row)[:MAX_TABLE_COLUMNS]]
        if count == 0:
            width = max(len(cells), 1)
            lines.append("| " + " | ".join(cells + [""] * (width - len(cells))) + " |")
            lines.append("|" + "---|" * width)
        elif count > max_rows:
            cut = True
            break
        else:
            cells = (cells + [""] * width)[:width]
            lines.append("| " + " | ".join(cells) + " |")
        count += 1
    return "\n".join(lines), max(count - 1, 0), cut


def csv_file(path: Path) -> Converted:
    with open(path, "rb") as handle:
        head = handle.read(65536)
    decoded = decode(head)
    encoding = decoded.encoding if decoded.encoding != "utf-8-sig" else "utf-8-sig"
    try:
        dialect = csv.Sniffer().sniff(decoded.text[:8192], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    with open(path, encoding=encoding, errors="replace", newline="") as handle:
        table, rows, cut = rows_to_markdown(csv.reader(handle, dialect))
    notes = [f"only the first {MAX_TABLE_ROWS} rows are shown; the file has more"] if cut else []
    text = table + (f"\n\n[table cut after {MAX_TABLE_ROWS} rows]" if cut else "")
    return Converted(text, units=rows, unit_name="rows", notes=notes)


def check_container(path: Path, kind: str) -> None:
    """Office files and EPUBs are ZIPs whose members their converters unpack and parse whole; zipfile
    never inflates past a member's declared size, so the declared sizes bound the memory used."""
    check_zip_directory(path)
    try:
        with zipfile.ZipFile(path) as bundle:
            members = bundle.infolist()
    except Exception:
        raise InputError(f"the {kind.upper()} file is damaged: its ZIP structure cannot be read") from None
    total = 0
    for member in members:
        if kind == "xlsx" and member.filename.startswith("xl/worksheets/"):
            continue  # sheets are streamed row by row and cut at MAX_TABLE_ROWS
        total += member.file_size
        if member.file_size > OFFICE_MAX_MEMBER:
            raise InputError(f"the {kind.upper()} file holds {member.filename[:100]!r}, "
                             f"{member.file_size / 2**20:,.0f} MB unpacked; the limit is "
                             f"{OFFICE_MAX_MEMBER // 2**20} MB a member (ZIP bomb guard)")
    if total > OFFICE_MAX_TOTAL:
        raise InputError(f"the {kind.upper()} file unpacks to {total / 2**20:,.0f} MB; the limit is "
                         f"{OFFICE_MAX_TOTAL // 2**20} MB (ZIP bomb guard)")


def spreadsheet(path: Path, kind: str) -> Converted:
    if kind != "xlsx":
        return _spreadsheet(path, kind, None)
    # openpyxl refuses a file name that does not end in .xlsx; inputs are opened files
    # (/proc/self/fd/N) or unnamed downloads, so it reads from a file object instead.
    with open(path, "rb") as handle:
        return _spreadsheet(path, kind, handle)


def _spreadsheet(path: Path, kind: str, handle: Any) -> Converted:
    parts: list[str] = []
    notes: list[str] = []
    if kind == "xlsx":
        import openpyxl

        check_container(path, kind)

        try:
            book = openpyxl.load_workbook(handle, read_only=True, data_only=True)
        except Exception as exc:
            raise InputError(f"the spreadsheet cannot be opened ({type(exc).__name__})") from None
        sheets = [(sheet.title, sheet.iter_rows(values_only=True)) for sheet in book.worksheets]
    else:
        import xlrd

        try:
            book = xlrd.open_workbook(str(path), on_demand=True)
        except Exception as exc:
            raise InputError(f"the spreadsheet cannot be opened ({type(exc).__name__})") from None
        sheets = [(sheet.name, (sheet.row_values(i) for i in range(sheet.nrows))) for sheet in book.sheets()]
    for name, rows in sheets:
        table, _count, cut = rows_to_markdown(row for row in rows if any(v not in (None, "") for v in row))
        parts.append(f"## Sheet: {name}\n\n{table or '(empty sheet)'}")
        if cut:
            parts.append(f"[sheet {name!r} cut after {MAX_TABLE_ROWS} rows]")
            notes.append(f"sheet {name!r} has more than {MAX_TABLE_ROWS} rows; only the first are shown")
    return Converted("\n\n".join(parts), units=len(sheets), unit_name="sheets", notes=notes)


def office(path: Path, extension: str) -> Converted:
    try:
        from markitdown import MarkItDown
    except ModuleNotFoundError:
        raise NotConfigured("Office formats need markitdown: pip install 'toolsuite[reader]'") from None
    check_container(path, extension[1:])
    try:
        result = MarkItDown(enable_plugins=False).convert_local(str(path), file_extension=extension)
    except Exception as exc:
        raise InputError(f"the {extension[1:].upper()} file cannot be converted ({type(exc).__name__}: "
                         f"{safe_detail(exc)})") from None
    markdown = result.markdown or ""
    units = markdown.count("<!-- Slide number:") if extension == ".pptx" else None
    return Converted(markdown, title=result.title, units=units or None, unit_name="slides" if units else None)


def _html_as_text(text: str, title: str | None, why: str) -> Converted:
    """A page too deep to convert safely, as its plain text (tags dropped, no tree built)."""
    import html as entities

    body = re.sub(r"(?is)<(script|style)\b.*?</\1\s*>", " ", text)
    body = entities.unescape(re.sub(r"<[^>]*>", " ", body))
    body = "\n".join(" ".join(line.split()) for line in body.splitlines())
    body = re.sub(r"\n{3,}", "\n\n", body).strip()
    return Converted(body, title=title, notes=[f"{why}; shown as plain text, without structure"])


def html(data: bytes, base_title: str | None = None) -> Converted:
    from markdownify import markdownify

    text = decode(data).text
    title = base_title
    depth = html_depth(text)
    if depth > MAX_HTML_DEPTH:
        return _html_as_text(text, title, f"the page nests elements {depth:,} levels deep (over {MAX_HTML_DEPTH})")
    try:
        from readability import Document

        document = Document(text)
        title = document.short_title() or title
        main = document.summary(html_partial=True)
    except Exception:  # readability gives up on fragments; convert the whole page instead
        main = text
    try:
        markdown = markdownify(main, heading_style="ATX", strip=["script", "style", "img"])
    except RecursionError:  # the depth estimate is a heuristic; never let the recursion reach the agent
        return _html_as_text(text, title, "the page nests elements too deeply to convert")
    markdown = "\n".join(line.rstrip() for line in markdown.splitlines())
    while "\n\n\n" in markdown:
        markdown = markdown.replace("\n\n\n", "\n\n")
    body = markdown.strip()
    if title and not body.startswith("#"):
        body = f"# {title}\n\n{body}"
    return Converted(body, title=title)


def json_file(path: Path) -> Converted:
    size = path.stat().st_size
    raw = decode(path.read_bytes()) if size <= MAX_STRUCTURED_BYTES else None
    if raw is None:
        with open(path, "rb") as handle:
            head = decode(handle.read(MAX_STRUCTURED_BYTES)).text
        return Converted(f"```json\n{head}\n```", notes=[f"the JSON is over {MAX_STRUCTURED_BYTES // 2**20} MB; "
                                                        "shown as raw text, not re-indented"])
    depth = json_depth(raw.text)
    if depth > MAX_JSON_DEPTH:  # checked before parsing: json.loads and json.dumps recurse per level
        return Converted(f"```\n{raw.text}\n```", notes=[f"the JSON nests {depth:,} levels deep (over "
                                                       f"{MAX_JSON_DEPTH}); shown as text, not re-indented"])
    try:
        parsed = json.loads(raw.text)
    except json.JSONDecodeError as exc:
        return Converted(f"```\n{raw.text}\n```", notes=[f"not valid JSON ({exc.msg} at line {exc.lineno}); shown "
                                                       "as text"])
    pretty = json.dumps(parsed, ensure_ascii=False, indent=2)
    return Converted(f"```json\n{pretty}\n```")


def xml_file(path: Path) -> Converted:
    size = path.stat().st_size
    data = path.read_bytes() if size <= MAX_STRUCTURED_BYTES else None
    if data is None:
        with open(path, "rb") as handle:
            head = decode(handle.read(MAX_STRUCTURED_BYTES)).text
        return Converted(f"```xml\n{head}\n```", notes=["the XML is too large to re-indent; shown raw"])
    problem = xml_problem(data, MAX_XML_DEPTH, MAX_XML_ELEMENTS)  # one streaming pass, no tree built
    if problem:
        return Converted(f"```xml\n{decode(data).text}\n```", notes=[f"the XML is not re-indented: {problem}; "
                                                                     "shown as text"])
    try:
        from defusedxml import minidom

        pretty = minidom.parseString(data).toprettyxml(indent="  ")
        pretty = "\n".join(line for line in pretty.splitlines() if line.strip())
    except Exception as exc:  # includes entity-expansion attacks refused by defusedxml
        return Converted(f"```xml\n{decode(data).text}\n```",
                         notes=[f"the XML could not be parsed safely ({type(exc).__name__}); shown as text"])
    return Converted(f"```xml\n{pretty}\n```")


def text_file(path: Path) -> Converted:
    decoded = decode(path.read_bytes())
    notes = [decoded.note] if decoded.note else []
    return Converted(decoded.text, notes=notes, metadata={"encoding": decoded.encoding})


def image(item: LocalInput) -> Converted:
    """OCR text, size and EXIF of an image, decoded by the suite's one image decoder."""
    from shared import images, ocr

    picture = images.decode(item)
    result = ocr.read(picture.image)
    lines = [f"# Image ({item.file_type.extension.upper()}, {picture.width} x {picture.height} pixels)", ""]
    if picture.exif:
        lines += ["## EXIF", "", *[f"- {k}: {v}" for k, v in sorted(picture.exif.items())], ""]
    lines += [f"## Text found by OCR ({result.engine}, {len(result.lines)} lines)", ""]
    lines.append(result.text or "(no text found)")
    return Converted("\n".join(lines), notes=picture.notes,
                     metadata={"width": picture.width, "height": picture.height, "exif": picture.exif,
                               "ocr_engine": result.engine})


def _unreadable(exc: BaseException) -> str:
    if isinstance(exc, RuntimeError) and "encrypt" in str(exc).lower():
        return "encrypted (password-protected), not read"
    if isinstance(exc, NotImplementedError):
        return "compressed with a method this reader does not support, not read"
    return f"damaged, not read ({type(exc).__name__})"


def archive(path: Path, convert_member: Any) -> Converted:
    """A listing plus the converted members, within the ZIP bomb caps."""
    check_zip_directory(path, max_entries=ZIP_MAX_MEMBERS)  # before zipfile loads the whole file table
    try:
        bundle = zipfile.ZipFile(path)
    except Exception:  # BadZipFile, and odd values in the headers (ValueError, OverflowError...)
        raise InputError("the ZIP archive is damaged or truncated") from None
    with bundle:
        members = [m for m in bundle.infolist() if not m.is_dir()]
        if len(members) > ZIP_MAX_MEMBERS:
            raise InputError(f"the archive has {len(members)} files; the limit is {ZIP_MAX_MEMBERS}")
        total = sum(m.file_size for m in members)
        if total > ZIP_MAX_TOTAL:
            raise InputError(f"the archive unpacks to {total / 2**20:.0f} MB; the limit is {ZIP_MAX_TOTAL // 2**20} MB "
                             "(ZIP bomb guard)")
        listing = ["| File | Size (bytes) | Compressed |", "|---|---|---|"]
        listing += [f"| {_cell(m.filename)} | {m.file_size} | {m.compress_size} |" for m in members]
        parts = [f"# ZIP archive: {len(members)} files, {total} bytes unpacked", "", *listing]
        notes: list[str] = []
        for member in members:
            if member.file_size > ZIP_MAX_MEMBER or member.file_size > max(member.compress_size, 1) * ZIP_MAX_RATIO:
                notes.append(f"{member.filename}: skipped (size or compression ratio over the limits)")
                continue
            if member.filename.lower().endswith(".zip"):
                notes.append(f"{member.filename}: nested archive not opened")
                continue
            try:
                with bundle.open(member) as handle:
                    data = handle.read(ZIP_MAX_MEMBER + 1)
            except Exception as exc:  # encrypted, unsupported method, bad CRC, damaged stream
                notes.append(f"{member.filename}: {_unreadable(exc)}")
                continue
            file_type = sniff_bytes(data[:8192])
            try:
                converted = convert_member(data, file_type, member.filename)
            except (InputError, NotConfigured) as exc:
                notes.append(f"{member.filename}: {exc}")
                continue
            if converted is not None:
                parts += ["", f"## {member.filename}", "", converted.markdown.strip()]
        if notes:
            parts += ["", "## Notes", "", *[f"- {note}" for note in notes]]
    return Converted("\n".join(parts), units=len(members), unit_name="files", notes=notes)


def member_converter(data: bytes, file_type: FileType, name: str) -> Converted | None:
    """Convert one archive member from memory (text-like formats only; binaries are listed)."""
    if file_type.mime == "application/json":
        return Converted(f"```json\n{decode(data).text}\n```")
    if file_type.mime == "text/html":
        return html(data)
    if file_type.is_text:
        return Converted(decode(data).text)
    return None


def sniff_csv(name: str, file_type: FileType, head: bytes) -> bool:
    if not file_type.is_text or file_type.mime != "text/plain":
        return False
    if name.lower().endswith((".csv", ".tsv")):
        return True
    sample = decode(head).text.splitlines()[:5]
    return len(sample) >= 2 and all(line.count(",") >= 1 for line in sample) and \
        len({line.count(",") for line in sample}) == 1
