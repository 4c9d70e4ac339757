"""tool-reader through the MCP in-memory client, on documents made in code."""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from mcp import Client

from servers.reader.server import build
from tests import documents
from tests.checks import assert_clear_errors
from tests.local_http import QuietHandler, serving

pytestmark = pytest.mark.anyio
HTML = "text/html; charset=utf-8"


async def convert(arguments: dict):
    async with Client(build()) as client:
        return await client.call_tool("convert_to_markdown", arguments)


async def test_pdf_has_page_markers_headings_tables_and_ocr(root: Path):
    documents.text_pdf(root / "report.pdf")
    result = await convert({"uri": "report.pdf"})
    assert not result.is_error, result.content[0].text
    text = result.content[0].text
    data = result.structured_content
    for number in (1, 2, 3):
        assert f"<!-- page {number} -->" in text
    assert "# Chapter 1" in text and documents.CHINESE in text
    assert "|Name|Year|Value|" in text.replace(" ", "") and "|beta|2024|20|" in text.replace(" ", "")
    assert "<!-- page 4 (OCR) -->" in text and data["ocr_pages"] == [4]
    ocr_part = text.split("<!-- page 4 (OCR) -->", 1)[1]
    assert "直播电商" in ocr_part and "revenue" in ocr_part
    assert data["total_pages"] == 4 and data["pages_returned"] == [1, 2, 3, 4] and data["format"] == "pdf"
    assert text.rstrip().endswith("characters]") and "end of document" in text


async def test_a_long_pdf_is_converted_only_as_far_as_the_part_returned(root: Path, monkeypatch):
    import os

    from servers.reader import engine
    from shared import budget
    from shared.inputs import open_input

    monkeypatch.setenv("TOOLSUITE_MAX_OUTPUT_TOKENS", "2000")  # about 40 of these pages a part
    documents.text_pdf(root / "many.pdf", pages=150, with_table=False, scanned_page=False)
    with open_input("many.pdf") as item:
        whole = engine.convert(item).markdown  # every page, as a call without a window converts them
    cache = Path(os.environ["TOOLSUITE_CACHE_DIR"]) / "reader"
    for folder in cache.iterdir():  # the reference conversion must not serve the calls below
        for page in folder.iterdir():
            page.unlink()
    async with Client(build()) as client:
        parts = [await client.call_tool("convert_to_markdown", {"uri": "many.pdf"})]
        converted_by_first = sum(1 for _ in cache.rglob("p*.md"))
        while (nxt := parts[-1].structured_content["next_start_index"]) is not None:
            parts.append(await client.call_tool("convert_to_markdown", {"uri": "many.pdf", "start_index": nxt}))
    first = parts[0].structured_content
    assert first["complete"] is False and 1 < len(first["pages_returned"]) < 60, first["pages_returned"]
    assert converted_by_first == len(first["pages_returned"])
    assert "read so far" in parts[0].content[0].text and first["total_pages"] == 150
    # Each part is the very window the whole document gives, and together they are the whole document.
    for part in parts:
        data = part.structured_content
        expected = budget.page_of(whole, data["start_index"], None, _reader_budget())
        assert data["markdown"] == expected.text and data["end_index"] == expected.end_index
    assert "".join(part.structured_content["markdown"] for part in parts) == whole
    last = parts[-1].structured_content
    assert len(parts) >= 3 and last["complete"] is True and last["pages_returned"] == list(range(1, 151))
    assert "end of document" in parts[-1].content[0].text


def _reader_budget() -> int:
    from servers.reader.server import _content_budget

    return _content_budget()


async def test_pdf_page_ranges_and_paging_with_continuation(root: Path):
    documents.text_pdf(root / "long.pdf", pages=6, scanned_page=False)
    async with Client(build()) as client:
        picked = await client.call_tool("convert_to_markdown", {"uri": "long.pdf", "pages": "2-3,5"})
        first = await client.call_tool("convert_to_markdown", {"uri": "long.pdf", "max_chars": 200})
        nxt = first.structured_content["next_start_index"]
        second = await client.call_tool("convert_to_markdown",
                                        {"uri": "long.pdf", "start_index": nxt, "max_chars": 200})
        whole = await client.call_tool("convert_to_markdown", {"uri": "long.pdf"})
        again = await client.call_tool("convert_to_markdown", {"uri": "long.pdf", "start_index": nxt})
    assert picked.structured_content["pages_returned"] == [2, 3, 5]
    assert "<!-- page 1 -->" not in picked.content[0].text and "<!-- page 5 -->" in picked.content[0].text
    assert nxt == 200 and f"start_index={nxt}" in first.content[0].text
    full = whole.structured_content["markdown"]
    assert first.structured_content["markdown"] + second.structured_content["markdown"] == full[:400]
    # The first part converted only the pages it needed; the pages read once come from the cache.
    assert first.structured_content["complete"] is False and whole.structured_content["complete"] is True
    assert again.structured_content["cached"] is True and again.structured_content["markdown"] == full[nxt:]


async def test_document_info_plans_reads(root: Path):
    documents.text_pdf(root / "report.pdf")
    async with Client(build()) as client:
        info = await client.call_tool("document_info", {"uri": "report.pdf"})
    data = info.structured_content
    assert (data["format"], data["pages"], data["title"], data["author"]) == ("pdf", 4, "Test Report", "Test Author")
    assert data["pages_needing_ocr"] == [4] and data["metadata"]["author"] == "Test Author"
    assert data["outline"][1] == {"level": 1, "title": "Chapter 2", "page": 2}
    assert "Pages without a text layer (OCR): 4" in info.content[0].text


async def test_office_formats(root: Path):
    documents.minimal_docx(root / "memo.docx", "会议纪要", "The budget was approved.")
    documents.pptx(root / "deck.pptx", ["Intro", "平台责任"])
    documents.xlsx(root / "sheet.xlsx", rows=5)
    async with Client(build()) as client:
        docx = await client.call_tool("convert_to_markdown", {"uri": "memo.docx"})
        deck = await client.call_tool("convert_to_markdown", {"uri": "deck.pptx"})
        sheet = await client.call_tool("convert_to_markdown", {"uri": "sheet.xlsx"})
    assert "# 会议纪要" in docx.content[0].text and "budget was approved" in docx.content[0].text
    assert deck.structured_content["format"] == "pptx" and "平台责任" in deck.content[0].text
    assert "<!-- Slide number: 2 -->" in deck.content[0].text
    assert "## Sheet: 数据" in sheet.content[0].text and "| 4 | row 4 | 6 |" in sheet.content[0].text


async def test_big_sheets_and_csvs_are_capped_with_a_note(root: Path):
    documents.xlsx(root / "big.xlsx", rows=2500)
    (root / "big.csv").write_text("a,b\n" + "".join(f"{i},{i * 2}\n" for i in range(3000)))
    async with Client(build()) as client:
        sheet = await client.call_tool("convert_to_markdown", {"uri": "big.xlsx", "max_chars": 500})
        table = await client.call_tool("convert_to_markdown", {"uri": "big.csv", "max_chars": 500})
    assert any("2000 rows" in note for note in sheet.structured_content["notes"])
    assert any("2000 rows" in note for note in table.structured_content["notes"])
    assert "| a | b |" in table.content[0].text


async def test_html_json_xml_and_text_encodings(root: Path):
    (root / "page.html").write_text(
        "<html><head><title>新闻</title><script>var x=1;</script></head><body><nav>Home | About</nav>"
        "<article><h1>Main story</h1>" + "<p>The main content paragraph is here with enough words to count. " * 8 +
        "</p></article><footer>Copyright</footer></body></html>")
    (root / "data.json").write_text('{"名字": "测试", "items": [1, 2]}', encoding="utf-8")
    (root / "feed.xml").write_text("<root><item id='1'>one</item></root>")
    (root / "gbk.txt").write_bytes("中文内容，GB18030 编码。".encode("gb18030"))
    (root / "broken.txt").write_bytes(b"valid start \xff\xfe end")
    async with Client(build()) as client:
        page = await client.call_tool("convert_to_markdown", {"uri": "page.html"})
        data = await client.call_tool("convert_to_markdown", {"uri": "data.json"})
        xml = await client.call_tool("convert_to_markdown", {"uri": "feed.xml"})
        gbk = await client.call_tool("convert_to_markdown", {"uri": "gbk.txt"})
        broken = await client.call_tool("convert_to_markdown", {"uri": "broken.txt"})
    assert "Main story" in page.content[0].text and "var x" not in page.content[0].text
    assert '"名字": "测试"' in data.content[0].text and "```json" in data.content[0].text
    assert '<item id="1">one</item>' in xml.content[0].text
    assert "中文内容，GB18030 编码。" in gbk.content[0].text
    assert "valid start" in broken.content[0].text and "replaced" in broken.content[0].text


async def test_images_are_ocred_with_size_and_the_type_comes_from_bytes(root: Path):
    png = documents.text_image_png([documents.CHINESE, documents.ENGLISH])
    (root / "scan.png").write_bytes(png)
    (root / "lies.pdf").write_bytes(png)
    async with Client(build()) as client:
        image = await client.call_tool("convert_to_markdown", {"uri": "scan.png"})
        lying = await client.call_tool("convert_to_markdown", {"uri": "lies.pdf"})
        data_uri = await client.call_tool("convert_to_markdown",
                                          {"uri": "data:image/png;base64," + base64.b64encode(png).decode()})
    assert "直播电商" in image.content[0].text and "revenue" in image.content[0].text
    assert "x" in image.content[0].text.split("pixels")[0]
    assert lying.structured_content["format"] == "image"
    assert any("ends in .pdf" in note for note in lying.structured_content["notes"])
    assert not data_uri.is_error and "直播电商" in data_uri.content[0].text


async def test_zip_lists_and_converts_members(root: Path):
    documents.small_zip(root / "bundle.zip")
    result = await convert({"uri": "bundle.zip"})
    text = result.content[0].text
    assert "notes/readme.txt" in text and "hello from inside the archive" in text and '"answer": 42' in text


async def test_conversions_are_cached_by_content(root: Path, tmp_path: Path):
    documents.text_pdf(root / "a.pdf", pages=2, scanned_page=False)
    first = await convert({"uri": "a.pdf"})
    (root / "b.pdf").write_bytes((root / "a.pdf").read_bytes())
    second = await convert({"uri": "b.pdf"})
    assert first.structured_content["cached"] is False and second.structured_content["cached"] is True
    assert list((tmp_path / "cache" / "reader").iterdir())
    assert not any(p.suffix == ".md" for p in root.iterdir())  # nothing written next to the data


# ---- bad input -----------------------------------------------------------------------------------

async def test_bad_inputs_are_clear_errors(root: Path, tmp_path: Path):
    (root / "empty.pdf").write_bytes(b"")
    (root / "folder").mkdir()
    documents.text_pdf(root / "whole.pdf", pages=2, scanned_page=False)
    (root / "truncated.pdf").write_bytes((root / "whole.pdf").read_bytes()[:300])
    documents.encrypted_pdf(root / "locked.pdf")
    documents.zip_bomb(root / "bomb.zip")
    (root / "blob.bin").write_bytes(bytes(range(256)) * 10)
    (tmp_path / "outside.txt").write_text("x")
    cases = {
        "missing.pdf": "file not found",
        "../outside.txt": "outside the allowed roots",
        "folder": "is a directory",
        "empty.pdf": "is empty",
        "truncated.pdf": "PDF",
        "locked.pdf": "encrypted",
        "bomb.zip": "ZIP bomb",
        "blob.bin": "unsupported format",
        "http://169.254.169.254/latest/meta-data/": "private",
    }
    async with Client(build()) as client:
        await assert_clear_errors(client, "convert_to_markdown", "uri", cases)
        bad_pages = await client.call_tool("convert_to_markdown", {"uri": "whole.pdf", "pages": "9"})
        bad_spec = await client.call_tool("convert_to_markdown", {"uri": "whole.pdf", "pages": "x-y"})
        assert bad_pages.is_error and "has 2 pages" in bad_pages.content[0].text
        assert bad_spec.is_error and "invalid pages" in bad_spec.content[0].text
        assert not (await client.call_tool("convert_to_markdown", {"uri": "whole.pdf"})).is_error


async def test_oversized_file_is_refused_without_reading_it(root: Path, monkeypatch):
    monkeypatch.setenv("TOOLSUITE_READER_MAX_MB", "1")
    with open(root / "huge.txt", "wb") as handle:
        handle.seek(3 * 2**20)
        handle.write(b"x")
    result = await convert({"uri": "huge.txt"})
    assert result.is_error and "limit is 1 MB" in result.content[0].text


async def test_a_url_that_never_answers_times_out(monkeypatch):
    class Hang(QuietHandler):
        def do_GET(self):
            time.sleep(5)

    site = ThreadingHTTPServer(("127.0.0.1", 0), Hang)
    site.daemon_threads = True
    threading.Thread(target=site.serve_forever, daemon=True).start()
    monkeypatch.setenv("TOOLSUITE_ALLOWED_HOSTS", "127.0.0.1")
    monkeypatch.setenv("TOOLSUITE_READ_TIMEOUT", "1")
    started = time.monotonic()
    try:
        result = await convert({"uri": f"http://127.0.0.1:{site.server_address[1]}/doc.html"})
    finally:
        site.shutdown()
    assert result.is_error and "timed out" in result.content[0].text.lower()
    assert time.monotonic() - started < 4


async def test_an_html_url_is_fetched_and_cleaned(monkeypatch):
    body = ("<html><head><title>Report</title></head><body><div class='ad'>Buy now</div><article><h2>Findings"
            "</h2>" + "<p>Real findings are described in this paragraph of the article text. " * 6 +
            "</p></article></body></html>").encode()

    monkeypatch.setenv("TOOLSUITE_ALLOWED_HOSTS", "127.0.0.1")
    with serving(body, content_type=HTML) as site:
        result = await convert({"uri": f"{site.url}/article"})
    assert not result.is_error, result.content[0].text
    assert "Findings" in result.content[0].text and result.structured_content["format"] == "html"


async def test_document_info_fetches_a_url_once(monkeypatch):
    body = b"<html><head><title>Plan</title></head><body><h1>Plan</h1><p>Steps of the plan.</p></body></html>"
    monkeypatch.setenv("TOOLSUITE_ALLOWED_HOSTS", "127.0.0.1")
    with serving(body, content_type=HTML) as site:
        async with Client(build()) as client:
            info = await client.call_tool("document_info", {"uri": f"{site.url}/p"})
    assert not info.is_error, info.content[0].text
    assert info.structured_content["format"] == "html" and info.structured_content["characters"]
    assert site.requests == ["/p"]


def test_pages_spec_parsing():
    from servers.reader.pdf import parse_pages
    from shared.errors import InputError

    assert parse_pages("3-5,1,4", 10) == [1, 3, 4, 5]
    assert parse_pages("8-", 10) == [8, 9, 10]
    assert parse_pages(None, 3) == [1, 2, 3]
    assert parse_pages("2-100", 5) == [2, 3, 4, 5]
    for bad in ("0", "5-2", "abc", "11"):
        with pytest.raises(InputError):
            parse_pages(bad, 10)


def test_both_ocr_engines_read_chinese_and_english():
    from shared import ocr

    png = documents.text_image_png([documents.CHINESE, documents.ENGLISH], scale=2.5)
    engines = ocr.available_engines()
    assert "rapidocr" in engines
    for name in engines:
        result = ocr.read(png, name)
        assert "直播电商" in result.text.replace(" ", ""), (name, result.text)
        assert "revenue" in result.text, (name, result.text)
        assert all(0 <= line.confidence <= 1 for line in result.lines)
        assert json.dumps([line.box for line in result.lines])


async def test_epub_is_converted(root: Path):
    import zipfile

    chapter = ("<?xml version='1.0' encoding='utf-8'?><html xmlns='http://www.w3.org/1999/xhtml'><head><title>One"
               "</title></head><body><h1>第一章 开始</h1><p>The story begins in a small harbour town.</p>"
               "</body></html>")
    opf = ("<?xml version='1.0' encoding='utf-8'?><package xmlns='http://www.idpf.org/2007/opf' version='3.0' "
           "unique-identifier='id'><metadata xmlns:dc='http://purl.org/dc/elements/1.1/'><dc:identifier id='id'>x"
           "</dc:identifier><dc:title>Harbour Tales</dc:title><dc:creator>Test Writer</dc:creator><dc:language>en"
           "</dc:language></metadata><manifest><item id='c1' href='c1.xhtml' media-type='application/xhtml+xml'/>"
           "</manifest><spine><itemref idref='c1'/></spine></package>")
    container = ("<?xml version='1.0'?><container version='1.0' xmlns='urn:oasis:names:tc:opendocument:xmlns:"
                 "container'><rootfiles><rootfile full-path='OEBPS/content.opf' media-type='application/oebps-"
                 "package+xml'/></rootfiles></container>")
    with zipfile.ZipFile(root / "book.epub", "w") as book:
        book.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        book.writestr("META-INF/container.xml", container)
        book.writestr("OEBPS/content.opf", opf)
        book.writestr("OEBPS/c1.xhtml", chapter)
    result = await convert({"uri": "book.epub"})
    assert not result.is_error, result.content[0].text
    assert result.structured_content["format"] == "epub"
    assert "第一章 开始" in result.content[0].text and "small harbour town" in result.content[0].text
