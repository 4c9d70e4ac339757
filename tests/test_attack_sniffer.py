"""Standing attack suite, MIME sniffing: the sniffer reads every input of every server first, so it
must never recurse, inflate or fail on hostile bytes. Never skipped on CI."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest

from shared.mime import sniff_bytes, sniff_file
from tests import hostile_files

DEEP_JSON = {
    "open.json": b"[" * 200_000,
    "closed.json": b"[" * 200_000 + b"]" * 200_000,
    "objects.json": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
}


def test_deep_json_is_sniffed_as_json_without_recursion(root: Path):
    # json.loads on the 8 KB sample raised RecursionError, which reached agents as "internal error".
    for name, body in DEEP_JSON.items():
        (root / name).write_bytes(body)
        assert sniff_file(root / name).mime == "application/json"
    assert sniff_bytes(b"[1, 2]").mime == "application/json"
    assert sniff_bytes(b"[note] plain text").mime == "text/plain"


def _peak(action) -> tuple[object, int]:
    tracemalloc.start()
    try:
        value = action()
        return value, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_an_epub_mimetype_bomb_is_not_inflated(root: Path):
    (root / "bomb.epub").write_bytes(hostile_files.zip_with_bomb_member("mimetype", 256 << 20, fill=b"\x00"))
    sniffed, peak = _peak(lambda: sniff_file(root / "bomb.epub"))
    assert sniffed.mime == "application/zip" and peak < 8 * 2**20, f"sniffing took {peak / 2**20:.0f} MB"


def test_a_huge_zip_file_table_is_not_loaded(root: Path):
    (root / "many.docx").write_bytes(hostile_files.zip_with_many_entries(100_000))
    started = time.monotonic()
    sniffed, peak = _peak(lambda: sniff_file(root / "many.docx"))
    assert sniffed.mime == "application/zip"
    assert time.monotonic() - started < 0.5 and peak < 8 * 2**20, f"sniffing took {peak / 2**20:.0f} MB"


@pytest.mark.parametrize("name", ["encrypted", "method99", "badcrc"])
def test_odd_zip_members_never_make_the_sniffer_fail(root: Path, name: str):
    import zipfile

    # mimetype second, so that the magic bytes say ZIP and the sniffer has to open the member.
    body = hostile_files.zip_members({"META-INF/container.xml": b"<container/>",
                                      "mimetype": b"application/epub+zip"}, zipfile.ZIP_STORED)
    patched = {"encrypted": hostile_files.patch_member(body, "flags", 1, index=1),
               "method99": hostile_files.patch_member(body, "method", 99, index=1),
               "badcrc": body.replace(b"application/epub+zip", b"applicatioN/epub+zip", 1)}[name]
    (root / "odd.epub").write_bytes(patched)
    assert sniff_file(root / "odd.epub").mime == "application/zip"
