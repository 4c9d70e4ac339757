"""Standing attack suite, check-then-open race: while another process keeps swapping what a name
inside the root points at (a file for a symlink to a secret outside, a folder for a symlink to an
outside folder), the secret must never come back, not once in thousands of opens, directly, through
the descriptor helper and through a tool. Never skipped on CI.

When the input policy resolved the path with realpath and opened it again by name, these tests saw
the secret within the first few dozen opens (9 of 1,500 tool calls here).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from mcp import Client

from servers.reader.server import build as build_reader
from shared import beneath
from shared.errors import InputError
from shared.inputs import open_input, open_local

SECRET = b"the-secret-outside-the-roots"
INSIDE = b"harmless text inside the root"


# The attacker: a separate process (so it races truly in parallel, not by GIL turns) swapping names
# with renames until told to stop, then printing how many rounds it made.
_FLIPPER = r"""
import os, signal, sys
root, outside, spare = sys.argv[1:4]
rounds = 0
def done(*_):
    print(rounds, flush=True)
    os._exit(0)
signal.signal(signal.SIGTERM, done)
def link(target):
    staged = os.path.join(spare, "link")
    os.symlink(target, staged)
    return staged
def inside_folder(name):
    folder = os.path.join(spare, name)
    os.mkdir(folder)
    with open(os.path.join(folder, "f.txt"), "wb") as out:
        out.write(b"harmless text inside the root")
    return folder
print("ready", flush=True)
while True:
    os.replace(link(os.path.join(outside, "secret.txt")), os.path.join(root, "f.txt"))
    os.rename(os.path.join(root, "d"), os.path.join(spare, "old"))
    os.replace(link(outside), os.path.join(root, "d"))
    with open(os.path.join(spare, "file"), "wb") as out:
        out.write(b"harmless text inside the root")
    os.replace(os.path.join(spare, "file"), os.path.join(root, "f.txt"))
    fresh = inside_folder("fresh")
    os.unlink(os.path.join(root, "d"))
    os.rename(fresh, os.path.join(root, "d"))
    os.unlink(os.path.join(spare, "old", "f.txt"))
    os.rmdir(os.path.join(spare, "old"))
    rounds += 1
"""


@contextmanager
def _flipping(root: Path, outside: Path) -> Iterator[dict[str, int]]:
    """`root/f.txt` alternates between a regular file and a symlink to `outside/secret.txt`;
    `root/d` between a folder holding `f.txt` and a symlink to `outside` (which holds an `f.txt`
    with the secret). Each swap is a rename, as an attacker would do it."""
    (outside / "secret.txt").write_bytes(SECRET)
    (outside / "f.txt").write_bytes(SECRET)
    spare = root.parent / "spare"
    spare.mkdir()
    (root / "f.txt").write_bytes(INSIDE)
    (root / "d").mkdir()
    (root / "d" / "f.txt").write_bytes(INSIDE)
    counts = {"swaps": 0}
    flipper = subprocess.Popen([sys.executable, "-c", _FLIPPER, str(root), str(outside), str(spare)],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert flipper.stdout is not None and flipper.stdout.readline().strip() == "ready"
        yield counts
    finally:
        flipper.terminate()
        out, _err = flipper.communicate(timeout=10)
        counts["swaps"] = int(out.strip() or 0)


@pytest.mark.parametrize("resolution", ["openat2", "walk"])
def test_open_input_never_returns_the_outside_secret(root: Path, tmp_path: Path, monkeypatch, resolution: str):
    if resolution == "walk":  # the fallback where the kernel has no openat2
        monkeypatch.setitem(beneath._openat2_state, "call", None)
    outside = tmp_path / "outside"
    outside.mkdir()
    opened = refused = 0
    with _flipping(root, outside) as counts:
        for attempt in range(6000):
            name = "f.txt" if attempt % 2 else "d/f.txt"
            try:
                with open_input(name) as item:
                    data = item.path.read_bytes()
            except InputError:
                refused += 1
                continue
            assert SECRET not in data, f"the outside secret came back on attempt {attempt}"
            opened += 1
    assert counts["swaps"] > 20, counts  # the race really ran (checked once the attacker has stopped)
    assert opened > 100 and refused > 100, (opened, refused)


def test_open_local_never_returns_the_outside_secret(root: Path, tmp_path: Path):
    """The helper tool-python's upload uses: the same guarantee through a descriptor."""
    outside = tmp_path / "outside"
    outside.mkdir()
    with _flipping(root, outside):
        for attempt in range(3000):
            try:
                with open_local("d/f.txt" if attempt % 2 else "f.txt") as held:
                    data = os.pread(held.fd, 4096, 0)
            except InputError:
                continue
            assert SECRET not in data, f"the outside secret came back on attempt {attempt}"


@pytest.mark.anyio
async def test_a_tool_never_returns_the_outside_secret(root: Path, tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    answered = 0
    with _flipping(root, outside):
        async with Client(build_reader()) as client:
            for attempt in range(3000):
                result = await client.call_tool("convert_to_markdown",
                                                {"uri": "d/f.txt" if attempt % 2 else "f.txt"})
                text = result.content[-1].text
                assert SECRET.decode() not in text, f"the outside secret came back on call {attempt}"
                assert "internal error" not in text, text
                answered += not result.is_error
    assert answered > 20
