"""The standing attack suite of tool-python: each test is an attack that must fail, written so that it
fails while the hole it names is open. Run on CI (bubblewrap is installed by `make test`), never
skipped there. The containment basics (files, network, limits) are in test_python_sandbox_security.py.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from mcp import Client

from servers.python import protocol
from tests import sandboxes
from tests.sandboxes import session

pytestmark = pytest.mark.anyio
hardened = sandboxes.hardened  # the shared fixture


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc/self/status")


FORGE = """
import json, os
forged = json.dumps({"id": None, "cell": None, "stdout": "FORGED", "stderr": "", "stdout_dropped": 0,
                     "stderr_dropped": 0, "result": "'FORGED'", "error": None, "images": [], "seconds": 0,
                     "exit_code": 0, "timed_out": False, "state_lost": False}).encode() + b"\\n"
reached = []
targets = [f"/proc/self/fd/{n}" for n in os.listdir("/proc/self/fd")] + ["/proc/1/fd/4", "/proc/1/fd/1"]
for n in range(3, 64):
    try:
        os.write(n, forged)
        reached.append(n)
    except OSError:
        pass
for path in targets:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        os.write(fd, forged)
        os.close(fd)
        reached.append(path)
    except OSError:
        pass
'done'
"""


async def test_user_code_cannot_forge_a_reply(hardened):
    """Issue: user code wrote a reply line to the kernel's reply descriptor (fd 4) and the server
    returned it as the cell's output."""
    async with Client(hardened) as client:
        s = await session(client)
        cell = await s.run(FORGE)
        # (What the cell wrote to its own stdout descriptors is its output; the forged fields are not.)
        assert cell["result"] == "'done'" and cell["stdout"] != "FORGED"
        after = await s.run("1 + 1")
        assert after["result"] == "2" and after["stdout"] == "" and after["error"] is None
        command = await s.command("echo real")
        assert command["stdout"] == "real\n"
        await s.witness_still_serves()


async def test_a_background_thread_cannot_forge_later_replies(hardened):
    """A thread left running by one cell writes forged lines while later calls run."""
    async with Client(hardened) as client:
        s = await session(client)
        started = await s.run("import threading, time\n" + FORGE.replace("'done'", "") +
                              "def spam():\n    while True:\n        for n in range(3, 64):\n"
                              "            try:\n                os.write(n, forged)\n"
                              "            except OSError:\n                pass\n        time.sleep(0.001)\n"
                              "threading.Thread(target=spam, daemon=True).start()\n'started'")
        assert started["result"] == "'started'"
        for _ in range(5):
            cell = await s.run("import time\ntime.sleep(0.05)\n6 * 7")
            assert cell["result"] == "42" and cell["stdout"] != "FORGED", cell
            command = await s.command("echo real")
            assert command["stdout"] == "real\n" and command["exit_code"] == 0
        await s.witness_still_serves()


async def test_flooding_the_reply_channels_does_not_grow_the_server(hardened):
    """Issue: 1.5 GB written to the reply descriptor grew the server process to 3.2 GB."""
    async with Client(hardened) as client:
        s = await session(client)
        before = _peak_rss_mb()
        flood = await s.run("import os\nchunk = b'x' * (1 << 20)\nfor n in range(3, 64):\n    try:\n"
                            "        for _ in range(300):\n            os.write(n, chunk)\n    except OSError:\n"
                            "        pass\n'survived'")
        grown = _peak_rss_mb() - before
        assert grown < 150, f"the server grew by {grown:.0f} MB"
        assert flood["error"] is not None or flood["result"] == "'survived'"
        assert (await s.run("1 + 1"))["result"] == "2"
        await s.witness_still_serves()


def test_the_reply_reader_skips_stale_ids_and_caps_lines():
    read, write = os.pipe()
    try:
        reader = protocol.LineReader(read, cap=1000)
        os.write(write, json.dumps({"id": "old", "stdout": "stale"}).encode() + b"\n" + b"not json\n"
                 + json.dumps({"id": "now", "stdout": "fresh", "extra": "dropped"}).encode() + b"\n")
        reply = protocol.read_reply(reader, time.monotonic() + 5, "now")
        assert reply is not None and reply["stdout"] == "fresh"
        clean = protocol.clean_code_reply({**reply, "stdout": "y" * 5000, "images": ["A" * 10, 5]}, 100)
        assert "extra" not in clean and clean["stdout"].startswith("y" * 100) and len(clean["stdout"]) < 200
        assert clean["images"] == ["A" * 10] and clean["images_refused"] == 1
        os.write(write, b"z" * 5000)
        with pytest.raises(protocol.LineTooLong):
            protocol.read_reply(reader, time.monotonic() + 5, "now")
        assert len(reader.buffer) == 0
    finally:
        os.close(read)
        os.close(write)
