"""tool-python through the MCP in-memory client: notebook-like state, commands, files."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from mcp import Client

from servers.python import bwrap as bwrap_module
from tests.local_http import serving
from tests.sandboxes import create_sandbox, python_server, run_code

pytestmark = pytest.mark.anyio


@pytest.fixture
def sandbox_env(monkeypatch, tmp_path):
    monkeypatch.setenv("TOOLSUITE_SANDBOX_DIR", str(tmp_path / "sandboxes"))
    monkeypatch.setenv("TOOLSUITE_OUTPUT_DIR", str(tmp_path / "root" / "out"))
    monkeypatch.setenv("TOOLSUITE_SANDBOX_CALL_TIMEOUT", "20")


@pytest.fixture
def server(sandbox_env):
    with python_server() as built:
        yield built


async def test_state_persists_and_results_come_back(server):
    async with Client(server) as client:
        sid = await create_sandbox(client)
        first = await run_code(client, sid, "import sys\nvalues = [1, 2, 3]\nprint('to stdout')\n"
                                            "print('to stderr', file=sys.stderr)\nsum(values)")
        second = await run_code(client, sid, "values.append(4)\nvalues")
        failing = await run_code(client, sid, "def f():\n    return 1 / 0\nf()")
    data = first.structured_content
    assert (data["stdout"], data["stderr"], data["result"]) == ("to stdout\n", "to stderr\n", "6")
    assert "[stdout]\nto stdout" in first.content[0].text and "[result]\n6" in first.content[0].text
    assert second.structured_content["result"] == "[1, 2, 3, 4]"
    error = failing.structured_content["error"]
    assert error["name"] == "ZeroDivisionError"
    assert "return 1 / 0" in error["traceback"]
    assert "kernel.py" not in error["traceback"] and "interpreter.py" not in error["traceback"]


async def test_matplotlib_figures_return_as_png_images(server):
    async with Client(server) as client:
        sid = await create_sandbox(client)
        result = await run_code(client, sid, "import matplotlib.pyplot as plt\nplt.plot([1, 4, 9])\n"
                                             "plt.title('squares')")
    assert result.structured_content["images"] == 1
    image = next(block for block in result.content if block.type == "image")
    assert image.mime_type == "image/png"
    assert base64.b64decode(image.data).startswith(b"\x89PNG")


async def test_pandas_groupby_on_an_uploaded_csv(server, root: Path):
    (root / "scores.csv").write_text("group,score\na,1\na,3\nb,10\n")
    async with Client(server) as client:
        sid = await create_sandbox(client)
        uploaded = await client.call_tool("upload_file_from_local_to_sandbox",
                                          {"sandbox_id": sid, "local_file_path": "scores.csv"})
        assert uploaded.structured_content["sandbox_path"] == "/home/user/scores.csv"
        result = await run_code(client, sid, "import pandas as pd\npd.read_csv('scores.csv')"
                                             ".groupby('group').score.mean().to_dict()")
    assert result.structured_content["result"] == "{'a': 2.0, 'b': 10.0}"


async def test_run_command_quoting_exit_code_and_streams(server):
    async with Client(server) as client:
        sid = await create_sandbox(client)
        ok = await client.call_tool("run_command", {"sandbox_id": sid,
                                                    "command": "printf '%s|' \"a b\" 'c\"d' && echo err >&2"})
        bad = await client.call_tool("run_command", {"sandbox_id": sid, "command": "exit 3"})
        pwd = await client.call_tool("run_command", {"sandbox_id": sid, "command": "pwd; echo $HOME; id -un"})
    assert ok.structured_content["stdout"] == 'a b|c"d|' and ok.structured_content["stderr"] == "err\n"
    assert ok.structured_content["exit_code"] == 0
    assert bad.structured_content["exit_code"] == 3 and "[exit code] 3" in bad.content[0].text
    assert pwd.structured_content["stdout"] == "/home/user\n/home/user\nuser\n"


async def test_files_round_trip_and_downloads_never_overwrite(server, root: Path):
    async with Client(server) as client:
        sid = await create_sandbox(client)
        await run_code(client, sid, "import os\nos.makedirs('out', exist_ok=True)\n"
                                    "open('out/report.txt', 'w').write('你好 report')")
        first = await client.call_tool("download_file_from_sandbox_to_local",
                                       {"sandbox_id": sid, "sandbox_file_path": "/home/user/out/report.txt"})
        second = await client.call_tool("download_file_from_sandbox_to_local",
                                        {"sandbox_id": sid, "sandbox_file_path": "out/report.txt",
                                         "local_filename": "../../report.txt"})
    assert first.structured_content["local_path"] == "out/report.txt"
    assert second.structured_content["local_path"] == "out/report-1.txt"
    assert (root / "out" / "report.txt").read_text() == "你好 report"
    assert (root / "out" / "report-1.txt").read_text() == "你好 report"


async def test_download_from_the_internet_goes_through_the_host_fetcher(server, monkeypatch):
    with serving(b"col\n1\n2\n") as site:
        url = f"{site.url}/data/table.csv?x=1"
        async with Client(server) as client:
            sid = await create_sandbox(client)
            refused = await client.call_tool("download_file_from_internet_to_sandbox", {"sandbox_id": sid, "url": url})
            monkeypatch.setenv("TOOLSUITE_ALLOWED_HOSTS", "127.0.0.1")
            fetched = await client.call_tool("download_file_from_internet_to_sandbox",
                                             {"sandbox_id": sid, "url": url, "sandbox_file_path": "/home/user/in/"})
            read = await client.call_tool("run_command", {"sandbox_id": sid, "command": "cat in/table.csv"})
    assert refused.is_error and "private" in refused.content[0].text
    assert not fetched.is_error and fetched.structured_content["sandbox_path"] == "/home/user/in/table.csv"
    assert read.structured_content["stdout"] == "col\n1\n2\n"


async def test_annotations_tell_the_truth(server):
    async with Client(server) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    run = tools["run_python_code"].annotations
    assert (run.read_only_hint, run.destructive_hint, run.idempotent_hint) == (False, True, False)
    assert tools["run_command"].annotations.destructive_hint is True
    assert tools["download_file_from_internet_to_sandbox"].annotations.open_world_hint is True
    assert tools["download_file_from_sandbox_to_local"].annotations.read_only_hint is False


async def test_without_bwrap_create_refuses_and_explains(server, monkeypatch):
    monkeypatch.setattr(bwrap_module, "bwrap_path", lambda: None)
    async with Client(server) as client:
        result = await client.call_tool("create_sandbox", {})
    assert result.is_error
    text = result.content[0].text
    assert "bubblewrap" in text and "TOOLSUITE_SANDBOX_ISOLATION=process" in text


async def test_weaker_process_mode_works_when_chosen(server, monkeypatch):
    monkeypatch.setattr(bwrap_module, "bwrap_path", lambda: None)
    monkeypatch.setenv("TOOLSUITE_SANDBOX_ISOLATION", "process")
    async with Client(server) as client:
        created = await client.call_tool("create_sandbox", {})
        sid = created.structured_content["sandbox_id"]
        result = await run_code(client, sid, "6 * 7")
    assert created.structured_content["isolation"] == "process" and "weak isolation" in created.content[0].text
    assert result.structured_content["result"] == "42"


async def test_sandbox_limits_are_reported(server):
    async with Client(server) as client:
        created = await client.call_tool("create_sandbox", {"timeout": 300})
    data = created.structured_content
    assert data["network"] is False and data["isolation"] == "bwrap" and data["idle_timeout_seconds"] == 300
    assert data["limits"]["wall_seconds_per_call"] == 20 and data["limits"]["processes"] == 64
    assert data["sandbox_id"].startswith("sbx_") and len(data["sandbox_id"]) >= 24


async def test_bad_sandbox_arguments(server):
    async with Client(server) as client:
        too_short = await client.call_tool("create_sandbox", {"timeout": 5})
        no_code = await run_code(client, "x", "")
        unknown = await run_code(client, "sbx_nope", "1")
    assert too_short.is_error and "timeout" in too_short.content[0].text
    assert no_code.is_error and "code_block" in no_code.content[0].text
    assert unknown.is_error and "no such sandbox" in unknown.content[0].text
