"""Standing attack suite, path policy through tool-reader: each test fails if a file outside the
allowed roots is read, or if an odd spelling makes the tool fail with an internal error instead of
a clear refusal. Never skipped on CI.

Covered: `file://localhost/`, other hosts in file:// URIs, percent-encoded `..` (single, mixed
case, encoded slashes, double-encoded), NUL bytes, a root that is a prefix of another folder,
symlinked files and folders pointing out, `~`, and /proc.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from mcp import Client

from servers.reader.server import build

pytestmark = pytest.mark.anyio

SECRET = "the-secret-outside-the-root"


@pytest.fixture
def layout(root: Path, tmp_path: Path) -> Path:
    (root / "a.txt").write_text("inside the root")
    (root / "sub").mkdir()
    (tmp_path / "secret.txt").write_text(SECRET)
    evil = tmp_path / (root.name + "-evil")  # a folder whose name starts with the root's
    evil.mkdir()
    (evil / "secret.txt").write_text(SECRET)
    return root


async def _call(uri: str, tool: str = "convert_to_markdown"):
    async with Client(build()) as client:
        return await client.call_tool(tool, {"uri": uri})


def _assert_refused(result, *expected: str) -> None:
    text = result.content[0].text
    assert result.is_error, f"read instead of refused: {text[:200]}"
    assert SECRET not in text
    assert "internal error" not in text, text
    assert any(word in text for word in expected), text


async def test_file_localhost_names_the_local_file(layout: Path):
    result = await _call(f"file://localhost{layout / 'a.txt'}")
    assert not result.is_error and "inside the root" in result.content[0].text


@pytest.mark.parametrize("tool", ["convert_to_markdown", "document_info"])
async def test_file_localhost_outside_the_roots_is_refused(layout: Path, tool: str):
    for uri in (f"file://localhost{layout.parent / 'secret.txt'}", "file://localhost/etc/passwd",
                "file://localhost/proc/self/environ"):
        _assert_refused(await _call(uri, tool), "outside the allowed roots")


async def test_file_uris_naming_another_host_are_refused(layout: Path):
    for host in ("evil.example", "127.0.0.1", "localhost:80", "user@localhost"):
        _assert_refused(await _call(f"file://{host}{layout / 'a.txt'}"), "must name a local file")


@pytest.mark.parametrize("tail", ["%2e%2e/secret.txt", "%2E%2E/secret.txt", "sub/%2e%2e/%2e%2e/secret.txt",
                                  "%2e%2e%2fsecret.txt", "sub%2f%2e%2e%2f%2e%2e%2fsecret.txt", ".%2e/secret.txt",
                                  "%2e./secret.txt", "sub/..%2F..%2Fsecret.txt"])
async def test_percent_encoded_dotdot_in_file_uris_is_refused(layout: Path, tail: str):
    _assert_refused(await _call(f"file://{layout}/{tail}"), "outside the allowed roots")


async def test_double_encoded_dotdot_is_a_name_not_a_step_up(layout: Path):
    _assert_refused(await _call(f"file://{layout}/%252e%252e/secret.txt"), "not found")


async def test_a_root_that_is_a_prefix_of_another_folder_does_not_cover_it(layout: Path):
    evil = layout.parent / (layout.name + "-evil") / "secret.txt"
    for uri in (str(evil), f"file://{evil}", f"../{evil.parent.name}/secret.txt"):
        _assert_refused(await _call(uri), "outside the allowed roots")


async def test_symlinks_out_of_the_root_are_refused(layout: Path):
    os.symlink(layout.parent / "secret.txt", layout / "link.txt")
    os.symlink(layout.parent, layout / "up")
    for uri in ("link.txt", "up/secret.txt", f"file://{layout}/up/secret.txt", "sub/../up/secret.txt"):
        _assert_refused(await _call(uri), "outside the allowed roots")


async def test_home_and_proc_paths_are_refused(layout: Path):
    for uri in ("~/.bashrc", "~root/.profile", "/proc/self/environ", "/proc/self/root/etc/passwd",
                "file:///proc/1/cwd/etc/hostname", "file:////etc/passwd", "file:/etc/passwd"):
        # /proc/1/cwd cannot even be resolved without privileges: refused as a file that cannot be opened.
        _assert_refused(await _call(uri), "outside the allowed roots", "not found", "could not open a file")


async def test_a_nul_byte_in_a_path_is_refused_clearly(layout: Path):
    _assert_refused(await _call("a.txt\x00.pdf"), "NUL")


@pytest.mark.parametrize("uri", ["file://{root}/a.txt%00.pdf", "file://{root}/%00"])
async def test_a_percent_encoded_nul_in_a_file_uri_is_refused_clearly(layout: Path, uri: str):
    _assert_refused(await _call(uri.format(root=layout)), "NUL")
