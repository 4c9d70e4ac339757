"""Standing attack suite, data: URIs: each test fails if the attack works. Never skipped on CI.

The cap (50 MB) is on the decoded size; a URI over it is refused quickly and without being copied
or decoded whole; whatever fails, no temporary file stays and no message names one.
"""

from __future__ import annotations

import base64
import io
import time
import tracemalloc
import zipfile
from pathlib import Path
from urllib.parse import quote_from_bytes

import pytest
from mcp import Client

from servers.reader.server import build
from shared import inputs
from shared.errors import InputError
from shared.inputs import open_input

MB = 2**20


def leftovers(folder: Path) -> list[str]:
    """Our temporary files still there (other libraries may keep caches in the same folder)."""
    return [path.name for path in folder.iterdir() if path.name.startswith("toolsuite-")]


def _refused_quickly(uri: str) -> tuple[float, int, str]:
    """Seconds, peak bytes allocated and the message of refusing `uri`."""
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(InputError) as caught, open_input(uri):
            pass
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return elapsed, peak, str(caught.value)


@pytest.mark.parametrize("kind", ["plain", "base64", "percent"])
def test_a_200_mb_data_uri_is_refused_quickly_without_copying_it(temp_dir: Path, kind: str):
    payload = {"plain": "a" * (200 * MB), "base64": "QUJD" * (50 * MB), "percent": "%41" * (70 * MB)}[kind]
    uri = ("data:application/octet-stream;base64," if kind == "base64" else "data:text/plain,") + payload
    elapsed, peak, message = _refused_quickly(uri)
    assert "more than 50 MB" in message
    assert elapsed < 1.0, f"refusing took {elapsed:.2f} s"
    assert peak < 4 * MB, f"refusing allocated {peak / MB:.0f} MB"
    assert leftovers(temp_dir) == []


def test_the_cap_is_on_the_decoded_size_not_the_length(temp_dir: Path):
    # 60 MB of plain text is 60 MB decoded: over the 50 MB cap although shorter than 4/3 of it.
    with pytest.raises(InputError, match="more than 50 MB"), open_input("data:text/plain," + "a" * (60 * MB)):
        pass
    # 120 M characters of %XX escapes are 40 MB decoded: under the cap, so accepted.
    with open_input("data:text/plain," + "%41" * (40 * MB)) as item:
        assert item.size == 40 * MB
    assert leftovers(temp_dir) == []


@pytest.fixture
def small_cap(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(inputs, "MAX_DATA_URI_BYTES", 1000)
    return 1000


@pytest.mark.parametrize("size", [999, 1000])
def test_exactly_at_the_cap_is_accepted(small_cap: int, temp_dir: Path, size: int):
    body = bytes(range(256)) * 4
    body = body[:size]
    for uri in ("data:application/octet-stream;base64," + base64.b64encode(body).decode(),
                "data:application/octet-stream," + quote_from_bytes(body)):
        with open_input(uri) as item:
            assert item.path.read_bytes() == body
    assert leftovers(temp_dir) == []


def test_one_byte_over_the_cap_is_refused_in_every_encoding(small_cap: int, temp_dir: Path):
    body = b"\xe4\xb8\xad" * 334  # 1,002 bytes
    uris = ["data:application/octet-stream;base64," + base64.b64encode(body).decode(),
            "data:text/plain," + quote_from_bytes(body),
            "data:text/plain," + body.decode(),  # 334 characters that are 1,002 bytes in UTF-8
            "data:;base64," + "\n".join(base64.b64encode(body).decode()[i:i + 76] for i in range(0, 1400, 76))]
    for uri in uris:
        with pytest.raises(InputError, match="more than"), open_input(uri):
            pass
    assert leftovers(temp_dir) == []


def test_base64_variants_decode_and_garbage_is_malformed(temp_dir: Path):
    body = bytes(range(256)) * 50
    standard = base64.b64encode(body).decode()
    variants = {
        "wrapped": "\r\n".join(standard[i:i + 76] for i in range(0, len(standard), 76)),
        "urlsafe": base64.urlsafe_b64encode(body).decode(),
        "percent": standard.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D"),
        "unpadded": standard.rstrip("="),
    }
    for name, payload in variants.items():
        with open_input("data:application/octet-stream;base64," + payload) as item:
            assert item.path.read_bytes() == body, name
    for bad in ("QUJD*QUJD", "QQ==QUJD", "QUJD\x00", "中文"):
        with pytest.raises(InputError, match="malformed data: URI"), open_input("data:;base64," + bad):
            pass
    with pytest.raises(InputError, match="malformed data: URI"), open_input("data:" + "x" * 5000):
        pass
    for bad in ("100%", "%zz", "%4", "a%%41", "%\n41"):
        with pytest.raises(InputError, match="does not start a %XX escape"), open_input("data:text/plain," + bad):
            pass
    assert leftovers(temp_dir) == []


def test_a_percent_escape_across_a_slice_boundary_decodes(temp_dir: Path, monkeypatch: pytest.MonkeyPatch):
    from shared import data_uri

    monkeypatch.setattr(data_uri, "STEP", 7)
    body = "中文 data, with 100% escapes".encode()
    for uri in ("data:text/plain," + quote_from_bytes(body),
                "data:;base64," + quote_from_bytes(base64.b64encode(body), safe="")):
        with open_input(uri) as item:
            assert item.path.read_bytes() == body



@pytest.mark.anyio
async def test_through_the_reader_a_data_uri_over_the_cap_is_a_clear_error(temp_dir: Path):
    async with Client(build()) as client:
        over = await client.call_tool("convert_to_markdown", {"uri": "data:text/plain," + "a" * (55 * MB)})
        huge = await client.call_tool("convert_to_markdown", {"uri": "data:text/plain," + "a" * (200 * MB)})
        fine = await client.call_tool("convert_to_markdown", {"uri": "data:text/plain,hello%20world"})
    assert over.is_error and "more than 50 MB" in over.content[0].text
    assert huge.is_error and ("more than 50 MB" in huge.content[0].text or "at most" in huge.content[0].text)
    assert not fine.is_error and "hello world" in fine.content[0].text
    assert leftovers(temp_dir) == []


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return buffer.getvalue()


DAMAGED = {
    "zip": b"PK\x03\x04" + b"\x00" * 200,
    "pdf": b"%PDF-1.7\n" + b"\x00" * 200,
    "png": b"\x89PNG\r\n\x1a\n" + b"\x00" * 200,
    "gif": b"GIF89a" + b"\xff" * 100,
    "docx": _zip({"[Content_Types].xml": b"<Types", "word/document.xml": b"<w:document"}),
    "xlsx": _zip({"[Content_Types].xml": b"<Types", "xl/workbook.xml": b"<workbook"}),
    "pptx": _zip({"[Content_Types].xml": b"<Types", "ppt/presentation.xml": b"<p:presentation"}),
    "epub": _zip({"mimetype": b"application/epub+zip", "META-INF/container.xml": b"<container"}),
}


@pytest.mark.anyio
@pytest.mark.parametrize("kind", sorted(DAMAGED))
async def test_failure_messages_name_no_temporary_file_or_host_path(temp_dir: Path, kind: str):
    body = DAMAGED[kind]
    uri = "data:application/octet-stream;base64," + base64.b64encode(body).decode()
    async with Client(build()) as client:
        for tool in ("convert_to_markdown", "document_info"):
            result = await client.call_tool(tool, {"uri": uri})
            text = result.content[0].text
            assert result.is_error, text
            assert "toolsuite-" not in text and str(temp_dir) not in text and "/tmp" not in text, text
    assert leftovers(temp_dir) == []
