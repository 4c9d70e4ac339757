"""A stdio server asked to stop (SIGTERM, as agent hosts send after every call) while a URL is still
downloading leaves no temporary file behind: the real server process, a body trickling from a server
on 127.0.0.1, the signal sent mid-download, then the process's temporary folder is looked at."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import anyio
import pytest
from mcp import Client

from tests import hostile_cases as hostile
from tests.checks import until
from tests.conftest import BIN
from tests.sigterm_stdio import SigtermStdio

pytestmark = pytest.mark.anyio


def _server_env(root: Path, tmp_path: Path, temporary: Path) -> dict[str, str]:
    inherited = {k: os.environ[k] for k in ("HOME", "PATH", "LANG") if k in os.environ}
    return {**inherited, "TMPDIR": str(temporary), "TOOLSUITE_ROOTS": str(root),
            "TOOLSUITE_CACHE_DIR": str(tmp_path / "cache"), "TOOLSUITE_ALLOWED_HOSTS": "127.0.0.1"}


@pytest.mark.parametrize(("server", "tool", "argument"), [
    ("tool-reader", "convert_to_markdown", "uri"),
    ("tool-transcribe", "audio_transcription", "audio_path_or_url"),
])
async def test_sigterm_during_a_download_leaves_no_temporary_file(root: Path, tmp_path: Path, server: str,
                                                                  tool: str, argument: str):
    temporary = tmp_path / "server-tmp"
    temporary.mkdir()
    transport = SigtermStdio([str(BIN / server)], _server_env(root, tmp_path, temporary))
    with hostile.hostile_site_process(trickle_interval=0.1, trickle_for=30) as base:
        async with Client(transport) as client, anyio.create_task_group() as group:
            async def call() -> None:
                with contextlib.suppress(Exception):  # the server goes away mid-call, as it is told to
                    await client.call_tool(tool, {argument: f"{base}/trickle-body"})

            group.start_soon(call)
            downloading = await until(lambda: list(temporary.iterdir()), 20)
            assert downloading, transport.stderr_text()[-2000:]  # the body is being written to a file
            await anyio.sleep(0.3)  # a few more bytes arrive: the download is under way, not starting
            assert transport.process is not None
            transport.process.send_signal(signal.SIGTERM)
            exited = await until(lambda: transport.process.returncode is not None, 10)
            group.cancel_scope.cancel()
    assert exited, transport.stderr_text()[-2000:]
    assert transport.process.returncode == 0, transport.stderr_text()[-2000:]
    assert list(temporary.iterdir()) == [], (downloading, transport.stderr_text()[-2000:])


def test_a_sandbox_file_half_copied_into_the_output_folder_goes_with_the_shutdown_sweep(tmp_path: Path,
                                                                                       monkeypatch):
    """download_file_from_sandbox_to_local writes under the file's final name in the output folder,
    so the sweep SIGTERM runs (scratch.remove_all) must remove a copy it cuts short, and only that."""
    from servers.python import files, outputs
    from shared import scratch

    monkeypatch.setenv("TOOLSUITE_ROOTS", str(tmp_path))
    folder = tmp_path / "toolsuite-output"
    folder.mkdir()
    source = tmp_path / "result.csv"
    source.write_bytes(b"x" * 100_000)
    seen: dict[str, object] = {}

    def copy_cut_short_by_sigterm(_source: int, target: int, _max_bytes: int) -> int:
        os.write(target, b"x" * 1_000)
        seen["during"] = sorted(os.listdir(folder))
        seen["swept"] = scratch.remove_all()
        seen["after"] = sorted(os.listdir(folder))
        return 1_000

    with monkeypatch.context() as patched:
        patched.setattr(files, "copy_capped", copy_cut_short_by_sigterm)
        with outputs.OutputFolder(folder) as out, source.open("rb") as handle:
            out.save(handle.fileno(), "result.csv", 10**6)
    assert seen == {"during": ["result.csv"], "swept": 1, "after": []}

    with outputs.OutputFolder(folder) as out, source.open("rb") as handle:
        out.save(handle.fileno(), "result.csv", 10**6)
    assert scratch.remove_all() == 0, "a whole copy is not the sweep's"
    assert (folder / "result.csv").read_bytes() == b"x" * 100_000
