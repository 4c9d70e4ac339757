"""Small documents made in code for the reader tests (no files from outside the repository)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

CHINESE = "直播电商高质量发展报告"
ENGLISH = "Quarterly revenue grew 12 percent"


def text_image_png(lines: list[str], scale: float = 2.0) -> bytes:
    """A PNG of black text on white, rendered by pymupdf with its bundled CJK font."""
    import pymupdf

    document = pymupdf.open()
    page = document.new_page(width=420, height=40 + 30 * len(lines))
    for index, line in enumerate(lines):
        font = "helv" if line.isascii() else "china-s"
        page.insert_text((20, 40 + 30 * index), line, fontname=font, fontsize=18)
    png = page.get_pixmap(matrix=pymupdf.Matrix(scale, scale)).tobytes("png")
    document.close()
    return png


def text_pdf(path: Path, pages: int = 3, with_table: bool = True, scanned_page: bool = True) -> Path:
    import pymupdf

    document = pymupdf.open()
    for number in range(1, pages + 1):
        page = document.new_page()
        page.insert_text((72, 72), f"Chapter {number}", fontname="helv", fontsize=24)
        page.insert_text((72, 110), f"Body text of page {number}. {ENGLISH}.", fontname="helv", fontsize=11)
        page.insert_text((72, 130), f"{CHINESE} 第{number}页", fontname="china-s", fontsize=11)
        if with_table and number == 2:
            top, left, width, height = 200, 72, 300, 60
            for row in range(4):
                page.draw_line((left, top + row * 20), (left + width, top + row * 20))
            for col in range(4):
                page.draw_line((left + col * 100, top), (left + col * 100, top + height))
            cells = [["Name", "Year", "Value"], ["alpha", "2023", "10"], ["beta", "2024", "20"]]
            for r, row_cells in enumerate(cells):
                for c, cell in enumerate(row_cells):
                    page.insert_text((left + c * 100 + 5, top + r * 20 + 14), cell, fontname="helv", fontsize=10)
    if scanned_page:
        page = document.new_page()
        png = text_image_png([CHINESE, ENGLISH], scale=3)
        page.insert_image(pymupdf.Rect(36, 36, 560, 200), stream=png)
    document.set_metadata({"title": "Test Report", "author": "Test Author"})
    document.set_toc([[1, "Chapter 1", 1], [1, "Chapter 2", 2]])
    document.subset_fonts()  # the CJK font is ~1 MB whole
    document.save(path, garbage=3, deflate=True)
    document.close()
    return path


def encrypted_pdf(path: Path) -> Path:
    import pymupdf

    document = pymupdf.open()
    document.new_page().insert_text((72, 72), "secret")
    document.save(path, encryption=pymupdf.PDF_ENCRYPT_AES_256, owner_pw="owner", user_pw="user")
    document.close()
    return path


def minimal_docx(path: Path, heading: str, paragraph: str) -> Path:
    content_types = (
        '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
        'content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
        'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/'
        'document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main'
        '+xml"/></Types>'
    )
    rels = (
        '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/'
        '2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
        'relationships/officeDocument" Target="word/document.xml"/></Relationships>'
    )
    body = (
        '<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="http://schemas.openxmlformats.org/'
        'wordprocessingml/2006/main"><w:body>'
        f'<w:p><w:pPr><w:pStyle w:val="Heading1"/></w:pPr><w:r><w:t>{heading}</w:t></w:r></w:p>'
        f'<w:p><w:r><w:t>{paragraph}</w:t></w:r></w:p></w:body></w:document>'
    )
    with zipfile.ZipFile(path, "w") as bundle:
        bundle.writestr("[Content_Types].xml", content_types)
        bundle.writestr("_rels/.rels", rels)
        bundle.writestr("word/document.xml", body)
    return path


def pptx(path: Path, titles: list[str]) -> Path:
    from pptx import Presentation

    deck = Presentation()
    for title in titles:
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = f"notes about {title}"
    deck.save(path)
    return path


def xlsx(path: Path, rows: int) -> Path:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "数据"
    sheet.append(["id", "name", "value"])
    for index in range(rows):
        sheet.append([index, f"row {index}", index * 1.5])
    book.create_sheet("Empty")
    book.save(path)
    return path


def zip_bomb(path: Path, megabytes: int = 300) -> Path:
    chunk = b"\0" * 2**20
    with (zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as bundle,
          bundle.open("zeros.txt", "w", force_zip64=True) as member):
        for _ in range(megabytes):
            member.write(chunk)
    return path


def small_zip(path: Path) -> Path:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("notes/readme.txt", "hello from inside the archive")
        bundle.writestr("data.json", '{"answer": 42}')
        bundle.writestr("picture.bin", b"\x00\x01\x02" * 10)
    path.write_bytes(buffer.getvalue())
    return path
