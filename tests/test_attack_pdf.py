"""Standing attack suite, PDFs through tool-reader: a hostile PDF must neither crash the server
(MuPDF's recursive outline loader overflows the C stack), nor make MuPDF allocate without bound
(giant pages and images rendered for OCR), nor end as an internal error (lying page trees).
Never skipped on CI."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from servers.reader.server import build
from tests import hostile_files
from tests.checks import assert_no_crash, call_once

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parent.parent


async def _read(uri: str, tool: str = "convert_to_markdown"):
    return await call_once(build(), tool, {"uri": uri})


def test_a_deep_pdf_outline_does_not_crash_the_server(root: Path, tmp_path: Path):
    # MuPDF loads outlines recursively: 70,000 levels overflow the C stack and kill the process, so
    # this runs the real tool in a child process and requires it to come back.
    (root / "outline.pdf").write_bytes(hostile_files.pdf_deep_outline(70_000))
    script = (
        "import anyio\n"
        "from mcp import Client\n"
        "from servers.reader.server import build\n"
        "async def main():\n"
        "    async with Client(build()) as client:\n"
        "        for tool in ('convert_to_markdown', 'document_info'):\n"
        "            result = await client.call_tool(tool, {'uri': 'outline.pdf'})\n"
        "            print(tool, result.is_error, repr(result.content[0].text[:300]))\n"
        "anyio.run(main)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"the server died (exit {done.returncode}): {done.stderr[-500:]}"
    convert, info = done.stdout.splitlines()
    assert convert.startswith("convert_to_markdown False") and "Hello page" in convert
    assert info.startswith("document_info False") and "outline not read" in info and "64 levels deep" in info


async def test_a_page_tree_that_lies_about_its_count_is_a_clear_error(root: Path):
    (root / "absurd.pdf").write_bytes(hostile_files.pdf_page_count(1_000_000_000))
    (root / "short.pdf").write_bytes(hostile_files.pdf_page_count(3))
    for tool in ("convert_to_markdown", "document_info"):
        result, text = await _read("absurd.pdf", tool)
        assert_no_crash(text)
        assert result.is_error and "page tree is damaged" in text
    result, text = await _read("short.pdf")
    assert_no_crash(text)
    assert not result.is_error and "Hello page" in text


@pytest.mark.parametrize(("page_points", "image_side", "bits", "reason"), [
    (14_400, 10, 8, "200 x 200 inches, too large to render for OCR"),
    (612, 60_000, 1, "60,000 x 60,000 image, over the 80 megapixel limit"),
])
async def test_scanned_pages_too_large_to_render_are_not_ocred(root: Path, page_points: int, image_side: int,
                                                               bits: int, reason: str):
    (root / "scan.pdf").write_bytes(hostile_files.pdf_scanned_page(page_points, image_side, bits))
    started = time.monotonic()
    result, text = await _read("scan.pdf")
    assert_no_crash(text)
    assert not result.is_error and "not OCRed" in text and reason in text, text[:300]
    assert time.monotonic() - started < 10
