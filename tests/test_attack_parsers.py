"""Standing attack suite, bounded parsing: hostile files through the real tools. Each test fails if
a parser recurses, allocates or crashes without bound, or if its failure reaches the agent as an
"internal error" instead of a clear message. Never skipped on CI.

Covered (tool-reader): JSON, XML and HTML nested to 100,000 levels (and exactly at the limits),
XML with too many elements or entity declarations, ZIPs with huge file tables and unreadable
members, Office and EPUB containers holding bombs, images whose declared size is a decompression
bomb. tool-rag: collection files nested 200,000 levels deep (array, `{"documents": ...}`, JSON Lines,
and exactly at the limit), strings and numbers past their caps.
"""

from __future__ import annotations

import json
import time
import tracemalloc
from pathlib import Path

import pytest
from mcp import Client

from servers.rag import loader
from servers.rag.server import build as build_rag
from servers.reader import formats
from servers.reader.server import build
from tests import hostile_files
from tests.checks import assert_no_crash, call_once

pytestmark = pytest.mark.anyio


async def _read(uri: str, tool: str = "convert_to_markdown"):
    return await call_once(build(), tool, {"uri": uri})


# ---- JSON -------------------------------------------------------------------------------------------

DEEP_JSON = {
    "open.json": b"[" * 200_000,
    "closed.json": b"[" * 200_000 + b"]" * 200_000,
    "objects.json": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
}


@pytest.mark.parametrize("name", sorted(DEEP_JSON))
@pytest.mark.parametrize("tool", ["convert_to_markdown", "document_info"])
async def test_deep_json_is_shown_as_text_with_a_clear_note(root: Path, name: str, tool: str):
    (root / name).write_bytes(DEEP_JSON[name])
    result, text = await _read(name, tool)
    assert_no_crash(text)
    assert not result.is_error, text[:300]
    if tool == "convert_to_markdown":
        assert "levels deep (over 200); shown as text" in text


async def test_json_at_the_depth_limit_is_still_re_indented(root: Path):
    (root / "at.json").write_text("[" * 200 + "1" + "]" * 200)
    (root / "over.json").write_text("[" * 201 + "1" + "]" * 201)
    at, at_text = await _read("at.json")
    over, over_text = await _read("over.json")
    assert not at.is_error and "[\n  [\n    [" in at_text and "note" not in at_text
    assert not over.is_error and "201 levels deep" in over_text


# ---- XML and HTML -----------------------------------------------------------------------------------

XML_CASES = {
    "deep.xml": (b"<a>" * 100_000 + b"</a>" * 100_000, "more than 200 levels deep"),
    "wide.xml": (b"<r>" + b"<a/>" * 150_000 + b"</r>", "more than 100,000 elements"),
    "laughs.xml": (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
                   b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>'
                   b"<l>&c;</l>", "declares entities"),
}


@pytest.mark.parametrize("name", sorted(XML_CASES))
async def test_hostile_xml_is_shown_as_text_with_a_clear_note(root: Path, name: str):
    body, note = XML_CASES[name]
    (root / name).write_bytes(body)
    started = time.monotonic()
    result, text = await _read(name)
    assert_no_crash(text)
    assert not result.is_error and note in text and "shown as text" in text
    assert time.monotonic() - started < 20


async def test_xml_at_the_depth_limit_is_still_pretty_printed(root: Path):
    (root / "at.xml").write_text("<a>" * 200 + "x" + "</a>" * 200)
    result, text = await _read("at.xml")
    assert not result.is_error and "<a>\n  <a>\n    <a>" in text and "note" not in text


async def test_deep_html_becomes_plain_text_with_a_clear_note(root: Path):
    paragraph = "<p>" + "Real article text that the agent needs to read. " * 20 + "</p>"
    (root / "deep.html").write_text("<html><body>" + "<div>" * 100_000 + paragraph + "</div>" * 100_000 +
                                    "</body></html>")
    (root / "fine.html").write_text("<html><body>" + "<div>" * 150 + paragraph * 3 + "</div>" * 150 +
                                    "</body></html>")
    deep, deep_text = await _read("deep.html")
    fine, fine_text = await _read("fine.html")
    assert_no_crash(deep_text)
    assert not deep.is_error and "100,000 levels deep" in deep_text and "Real article text" in deep_text
    assert not fine.is_error and "Real article text" in fine_text and "levels deep" not in fine_text


# ---- ZIP containers ---------------------------------------------------------------------------------

async def test_a_huge_zip_file_table_is_refused_before_it_is_loaded(root: Path):
    (root / "many.zip").write_bytes(hostile_files.zip_with_many_entries(100_000))
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(Exception, match=r"declares 65,535 files; the limit is 1,000"):
            formats.archive(root / "many.zip", formats.member_converter)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 0.5 and peak < 8 * 2**20, f"{peak / 2**20:.0f} MB"
    result, text = await _read("many.zip")
    assert result.is_error and "ZIP bomb guard" in text


async def test_unreadable_zip_members_are_noted_and_the_rest_is_read(root: Path):
    (root / "odd.zip").write_bytes(hostile_files.zip_with_unreadable_members())
    result, text = await _read("odd.zip")
    assert_no_crash(text)
    assert not result.is_error, text
    assert "readable member text" in text
    assert "encrypted.txt: encrypted" in text and "method99.txt: compressed with a method" in text
    assert "badcrc.txt: damaged" in text and "lying.txt: damaged" in text


async def test_an_epub_mimetype_bomb_is_refused(root: Path):
    (root / "bomb.epub").write_bytes(hostile_files.zip_with_bomb_member("mimetype", 256 << 20, fill=b"\x00"))
    started = time.monotonic()
    result, text = await _read("bomb.epub")
    assert result.is_error and "ZIP bomb guard" in text and time.monotonic() - started < 3


@pytest.mark.parametrize(("name", "member", "extra"), [
    ("bomb.docx", "word/document.xml", {"[Content_Types].xml": b"<Types/>"}),
    ("bomb.pptx", "ppt/slides/slide1.xml", {"[Content_Types].xml": b"<Types/>"}),
    ("bomb.xlsx", "xl/sharedStrings.xml", {"[Content_Types].xml": b"<Types/>", "xl/workbook.xml": b"<w/>"}),
])
async def test_office_containers_holding_a_bomb_are_refused_before_conversion(root: Path, name: str, member: str,
                                                                            extra: dict[str, bytes]):
    (root / name).write_bytes(hostile_files.zip_with_bomb_member(member, 160 << 20, extra))
    started = time.monotonic()
    result, text = await _read(name)
    assert result.is_error and f"holds {member!r}, 160 MB unpacked" in text and "ZIP bomb guard" in text
    assert time.monotonic() - started < 5


# ---- images -----------------------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:Image size")  # Pillow's own warning for the 108 MP case
@pytest.mark.parametrize(("width", "height"), [(12_000, 9_000), (100_000, 100_000)])
async def test_an_image_over_the_pixel_cap_is_refused_before_decoding(root: Path, width: int, height: int):
    # 108 megapixels is over the 80 MP cap but under Pillow's own error threshold (twice its limit),
    # where Pillow only warns and decodes; 10 gigapixels declares its size and holds nothing.
    body = hostile_files.png(width, height) if width * height < 2e8 else hostile_files.png_header_only(width, height)
    (root / "big.png").write_bytes(body)
    started = time.monotonic()
    result, text = await _read("big.png")
    assert result.is_error and "megapixels (decompression bomb guard)" in text, text
    assert time.monotonic() - started < 3


# ---- tool-rag collections ----------------------------------------------------------------------------

_DEEP = b"[" * 200_000 + b"]" * 200_000
DEEP_COLLECTIONS = {
    "array.json": _DEEP,
    "documents.json": b'{"documents": ' + _DEEP + b"}",
    "objects.json": b"[" + b'{"a":' * 100_000 + b"1" + b"}" * 100_000 + b"]",
    "first-line.jsonl": b'{"content": ' + _DEEP + b"}\n",
    "second-line.jsonl": b'{"content": "fine"}\n{"content": ' + _DEEP + b"}\n",
}


async def _stats(name: str):
    return await call_once(build_rag(), "rag_document_stats", {"json_path": name})


@pytest.mark.parametrize("name", sorted(DEEP_COLLECTIONS))
async def test_a_deeply_nested_collection_is_refused_before_parsing(root: Path, name: str, lexical_only):
    (root / name).write_bytes(DEEP_COLLECTIONS[name])
    tracemalloc.start()
    try:
        result, text = await _stats(name)
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert_no_crash(text)
    assert result.is_error and f"more than {loader.MAX_DEPTH} levels deep" in text, text
    assert peak < 64 * 2**20, peak  # unbounded, 200,000 levels took 5.8 GB


async def test_a_collection_at_the_depth_limit_is_indexed(root: Path, lexical_only):
    # The array and the record are two levels; brackets and escaped quotes inside strings do not nest.
    nested = "[" * (loader.MAX_DEPTH - 2) + "]" * (loader.MAX_DEPTH - 2)
    record = {"title": 'brackets [[{ and \\" quotes', "content": "depth limit " + "[[[{{{" * 30_000, "meta": nested}
    (root / "at.json").write_text(json.dumps([record]))
    (root / "over.json").write_text(json.dumps([{**record, "meta": [json.loads(nested)]}]))
    at, at_text = await _stats("at.json")
    over, over_text = await _stats("over.json")
    assert not at.is_error and "Documents: 1" in at_text, at_text
    assert over.is_error and f"more than {loader.MAX_DEPTH} levels deep" in over_text, over_text


@pytest.mark.parametrize(("name", "data", "expected"), [
    ("string.json", b'[{"content": "' + b"x" * (loader.MAX_VALUE_BYTES + 2**20) + b'"}]',
     "a string of more than 16 MB"),
    ("number.json", b'[{"content": ' + b"1" * (8 * 2**20) + b"}]", "a number or literal of more than"),
    ("line.jsonl", b'{"content": "a"}\n{"content": "' + b"x" * (loader.MAX_VALUE_BYTES + 10) + b'"}\n',
     "line 2 of the JSON Lines file is over 16 MB"),
])
async def test_a_collection_value_past_its_cap_is_refused(root: Path, name: str, data: bytes, expected: str,
                                                                  lexical_only):
    (root / name).write_bytes(data)
    result, text = await _stats(name)
    assert_no_crash(text)
    assert result.is_error and expected in text, text


# ---- the server keeps serving ---------------------------------------------------------------------

async def test_after_the_hostile_files_a_normal_document_still_converts(root: Path):
    (root / "deep.json").write_bytes(DEEP_JSON["closed.json"])
    (root / "ok.txt").write_text("still serving")
    async with Client(build()) as client:
        await client.call_tool("convert_to_markdown", {"uri": "deep.json"})
        result = await client.call_tool("convert_to_markdown", {"uri": "ok.txt"})
    assert not result.is_error and "still serving" in result.content[0].text
