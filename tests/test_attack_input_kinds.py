"""Standing attack suite, what a path may be: only regular files, for every tool of every server that
takes a path. FIFOs, sockets, devices, folders, files of /proc and /sys are refused at once with a
message naming what the path is; a sparse 5 GB file is refused from its size before anything reads
it; files that shrink or are rewritten while being read give a clear error. Never skipped on CI:
the device cases use a node made with mknod where the user may, and /dev itself as a root always.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from mcp import Client

from servers.registry import BY_NAME
from shared import beneath, inputs
from shared.errors import InputError
from tests.hostile_cases import make_char_device, make_fifo, make_socket, make_sparse, path_targets

pytestmark = pytest.mark.anyio

REFUSAL_SECONDS = 1.0


async def _refusals(cases: dict[str, str]) -> list[str]:
    """Every case thrown at every path argument of every tool: the problems found."""
    problems = []
    targets = await path_targets()
    by_server: dict[str, list] = {}
    for target in targets:
        by_server.setdefault(target.server, []).append(target)
    for server, group in by_server.items():
        async with Client(BY_NAME[server].build()) as client:
            for target in group:
                if target.argument == "url":  # tool-python's URL argument takes URLs only
                    continue
                for value, expected in cases.items():
                    started = time.monotonic()
                    result = await client.call_tool(target.tool, target.arguments(value))
                    seconds = time.monotonic() - started
                    text = result.content[-1].text
                    if not result.is_error or expected not in text or seconds > REFUSAL_SECONDS:
                        problems.append(f"{target.name}({value!r}): {seconds:.2f} s, {text[:160]!r}")
                    if "Traceback" in text or "internal error" in text:
                        problems.append(f"{target.name}({value!r}): {text[:160]!r}")
    return problems


async def test_fifo_socket_folder_and_devices_are_refused_by_every_tool(root: Path, monkeypatch):
    monkeypatch.setenv("TOOLSUITE_ROOTS", f"{root}{os.pathsep}/dev")
    make_fifo(root / "pipe.mp3")
    _path, listening = make_socket(root / "socket.wav")
    (root / "folder.pdf").mkdir()
    cases = {"pipe.mp3": "is a FIFO (named pipe)", "socket.wav": "is a unix socket",
             "folder.pdf": "is a directory", "/dev/zero": "is a character device",
             "/dev/null": "is a character device", f"file://{root}/pipe.mp3": "is a FIFO (named pipe)"}
    if make_char_device(root / "zero.mp4") is not None:
        cases["zero.mp4"] = "is a character device"
    try:
        problems = await _refusals(cases)
    finally:
        listening.close()
    assert not problems, "\n".join(problems)


async def test_a_sparse_5_gb_file_is_refused_from_its_size_before_any_read(root: Path):
    make_sparse(root / "huge.wav")
    problems = await _refusals({"huge.wav": "TOOLSUITE_MAX_INPUT_MB"})
    assert not problems, "\n".join(problems)


def _first_sysfs_file() -> Path | None:
    for folder, _dirs, files in os.walk("/sys/kernel"):
        for name in files:
            candidate = Path(folder) / name
            if candidate.is_file() and not candidate.is_symlink() and os.access(candidate, os.R_OK):
                return candidate
    return None


async def test_proc_and_sys_files_inside_a_root_are_refused(monkeypatch):
    sysfs = _first_sysfs_file()
    roots = ["/proc/self", "/proc"] + ([str(sysfs.parent)] if sysfs else [])
    monkeypatch.setenv("TOOLSUITE_ROOTS", os.pathsep.join(roots))
    cases = {"/proc/self/environ": "kernel's proc filesystem", "/proc/self/status": "kernel's proc filesystem",
             "/proc/self/fd": "is a directory", "/proc/self/root/etc/passwd": "outside the allowed roots",
             "/proc/self/cwd/x": "outside the allowed roots", "/proc/kmsg": "kernel's proc filesystem"}
    if sysfs is not None:
        cases[str(sysfs)] = "kernel's sysfs filesystem"
    problems = await _refusals(cases)
    assert not problems, "\n".join(problems)


def test_a_fifo_never_blocks_the_opener_even_without_a_writer(root: Path):
    make_fifo(root / "pipe")
    started = time.monotonic()
    with pytest.raises(InputError, match="FIFO"), inputs.open_input("pipe"):
        pass
    with pytest.raises(InputError, match="FIFO"):
        inputs.resolve_local_path("pipe")
    with pytest.raises(InputError, match="FIFO"), inputs.open_local("pipe"):
        pass
    assert time.monotonic() - started < REFUSAL_SECONDS


def test_a_file_that_shrinks_while_read_is_a_clear_error(root: Path):
    (root / "a.txt").write_bytes(b"x" * 10_000)
    shrank = r"'a.txt' shrank from 10000 to 10 bytes while it was being read"
    with pytest.raises(InputError, match=shrank), inputs.open_input("a.txt") as item:
        assert item.size == 10_000
        os.truncate(root / "a.txt", 10)
    with pytest.raises(InputError, match="shrank"), inputs.open_input("a.txt") as item:
        os.truncate(root / "a.txt", 0)
        raise ValueError("the engine failed on the partial file")  # the change is named, not this


def test_a_file_rewritten_in_place_is_a_clear_error_and_one_that_grows_is_read(root: Path):
    (root / "a.txt").write_bytes(b"x" * 100)
    with pytest.raises(InputError, match="rewritten in place"), inputs.open_input("a.txt"):
        time.sleep(0.01)
        with open(root / "a.txt", "r+b") as handle:
            handle.write(b"y" * 100)
    with inputs.open_input("a.txt") as item:
        with open(root / "a.txt", "ab") as handle:
            handle.write(b"more")
        assert item.size == 100
        assert item.path.read_bytes().startswith(b"y" * 100)


@pytest.fixture(params=["openat2", "walk"])
def resolution(request, monkeypatch) -> str:
    """Both ways `shared.beneath` resolves: the kernel's openat2 (where it exists) and the walk."""
    if request.param == "walk":
        monkeypatch.setitem(beneath._openat2_state, "call", None)
    return request.param


def test_symlinks_that_stay_inside_the_roots_keep_working(root: Path, tmp_path: Path, monkeypatch, resolution):
    other = tmp_path / "other-root"
    other.mkdir()
    monkeypatch.setenv("TOOLSUITE_ROOTS", f"{root}{os.pathsep}{other}")
    (root / "docs").mkdir()
    (root / "docs" / "a.txt").write_text("inside")
    (other / "b.txt").write_text("in the other root")
    os.symlink("docs/a.txt", root / "relative.txt")
    os.symlink(root / "docs" / "a.txt", root / "absolute.txt")
    os.symlink(root / "docs", root / "folder-link")
    os.symlink("../relative.txt", root / "docs" / "chain.txt")
    os.symlink(other / "b.txt", root / "cross-root.txt")
    for name, text in [("relative.txt", "inside"), ("absolute.txt", "inside"), ("folder-link/a.txt", "inside"),
                       ("docs/chain.txt", "inside"), ("cross-root.txt", "in the other root"),
                       ("docs/../docs/a.txt", "inside"), (f"{root}/folder-link/../docs/a.txt", "inside")]:
        with inputs.open_input(name) as item:
            assert item.path.read_text() == text, name
    with inputs.open_input("relative.txt") as item:
        assert item.label == "docs/a.txt"  # labels show where the file really is


def test_symlinks_that_leave_the_roots_are_refused(root: Path, tmp_path: Path, resolution):
    (tmp_path / "secret.txt").write_text("secret")
    os.symlink(tmp_path / "secret.txt", root / "out.txt")
    os.symlink("../secret.txt", root / "out-relative.txt")
    os.symlink(tmp_path, root / "up")
    os.symlink("/proc/self/root/etc/passwd", root / "magic.txt")
    os.symlink("loop-b", root / "loop-a")
    os.symlink("loop-a", root / "loop-b")
    (root / "docs").mkdir()
    for name in ("out.txt", "out-relative.txt", "up/secret.txt", "magic.txt", "docs/../../secret.txt"):
        with pytest.raises(InputError, match="outside the allowed roots"), inputs.open_input(name):
            pass
    with pytest.raises(InputError, match="symbolic links"), inputs.open_input("loop-a"):
        pass


def test_a_percent_encoded_nul_in_a_file_uri_is_refused_clearly(root: Path):
    (root / "a.txt").write_text("x")
    for uri in (f"file://{root}/a.txt%00.pdf", f"file://{root}/%00", "a.txt\x00.pdf"):
        with pytest.raises(InputError, match="NUL"), inputs.open_input(uri):
            pass


def test_an_overlong_path_is_refused_briefly(root: Path):
    for raw in ("y" * 100_000, "a/" * 3000 + "b"):
        with pytest.raises(InputError) as refused, inputs.open_input(raw):
            pass
        message = str(refused.value)
        assert len(message) < 1000 and ("too long" in message or "not found" in message), message
