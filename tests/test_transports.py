"""Real processes: every console script over stdio, one server over Streamable HTTP, both protocol eras."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from servers.registry import SERVERS
from tests.conftest import BIN

pytestmark = pytest.mark.anyio

EXPECTED_TOOLS = {
    "tool-rag": ["rag_search", "rag_get_context", "rag_document_stats", "rag_get_document", "rag_get_neighbours",
                 "rag_list_collections"],
    "tool-reader": ["convert_to_markdown", "document_info"],
    "tool-python": ["create_sandbox", "run_python_code", "run_command", "upload_file_from_local_to_sandbox",
                    "download_file_from_internet_to_sandbox", "download_file_from_sandbox_to_local"],
    "tool-vqa": ["visual_question_answering"],
    "tool-vqa-enhanced": ["vision_understanding_advanced", "vision_quick_answer", "vision_extract_metadata",
                          "vision_comparative_analysis"],
    "tool-transcribe": ["audio_transcription", "audio_question_answering"],
    "tool-audio-enhanced": ["audio_understanding_advanced", "audio_quick_transcription", "audio_extract_metadata",
                            "audio_question_answering_enhanced"],
    "tool-video-enhanced": ["video_understanding_advanced", "video_quick_analysis", "video_extract_keyframes",
                            "video_temporal_qa"],
    "tool-reasoning": ["reasoning"],
}


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "REASONING_", "VISION_"))}


@pytest.mark.parametrize("name", [entry.name for entry in SERVERS])
async def test_every_console_script_lists_its_tools_over_stdio(name):
    params = StdioServerParameters(command=str(BIN / name), args=[], env=_env())
    started = time.monotonic()
    async with Client(params, mode="legacy") as client:
        tools = (await client.list_tools()).tools
    elapsed = time.monotonic() - started
    assert [t.name for t in tools] == EXPECTED_TOOLS[name]
    assert elapsed < 10, f"{name} took {elapsed:.1f} s to list its tools"
    for tool in tools:
        assert tool.description and tool.annotations is not None and tool.output_schema is not None
        for field, schema in tool.input_schema.get("properties", {}).items():
            assert schema.get("description"), f"{name}.{tool.name}.{field} has no description"


async def test_modern_era_over_stdio_lists_and_calls():
    params = StdioServerParameters(command=str(BIN / "tool-reasoning"), args=[], env=_env())
    async with Client(params, mode="2026-07-28") as client:
        tools = (await client.list_tools()).tools
        result = await client.call_tool("reasoning", {"question": "x"})
    assert [t.name for t in tools] == ["reasoning"]
    assert result.is_error and "TOOLSUITE_REASONING_MODEL" in result.content[0].text


def test_stdout_carries_only_json_rpc_and_the_server_exits_when_stdin_closes():
    process = subprocess.Popen([str(BIN / "tool-reasoning")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=_env())
    messages = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize",
         "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "reasoning", "arguments": {}}},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/list"},
    ]
    assert process.stdin and process.stdout
    process.stdin.write("".join(json.dumps(m) + "\n" for m in messages).encode())
    process.stdin.flush()
    lines = []
    while len([m for m in lines if "id" in m]) < 3:
        raw = process.stdout.readline()
        assert raw, "the server closed stdout before answering"
        lines.append(json.loads(raw))  # every stdout line must be JSON-RPC
    assert all(line.get("jsonrpc") == "2.0" for line in lines)
    by_id = {line["id"]: line for line in lines if "id" in line}
    assert by_id[2]["result"]["isError"] is True
    assert by_id[3]["result"]["tools"][0]["name"] == "reasoning"
    process.stdin.close()
    assert process.wait(timeout=10) == 0
    assert process.stdout.read() == b""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_http(*extra: str) -> tuple[subprocess.Popen, str]:
    """tool-reasoning over HTTP on a free port, once /healthz answers."""
    port = _free_port()
    process = subprocess.Popen([str(BIN / "tool-reasoning"), "--transport", "http", "--port", str(port), *extra],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    pytest.fail("HTTP server did not come up: " + process.stderr.read().decode()[-2000:])


@pytest.fixture
def http_server():
    process, base = _start_http()
    yield base
    process.terminate()
    process.wait(10)


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_http_transport_lists_and_calls_in_both_eras(http_server, mode):
    health = httpx.get(f"{http_server}/healthz").json()
    assert health == {"status": "ok", "server": "tool-reasoning", "version": health["version"]}
    async with Client(f"{http_server}/mcp", mode=mode) as client:
        tools = (await client.list_tools()).tools
        result = await client.call_tool("reasoning", {"question": "x"})
    assert [t.name for t in tools] == ["reasoning"]
    assert result.is_error and "TOOLSUITE_REASONING_MODEL" in result.content[0].text


def test_http_transport_checks_origin_and_host(http_server):
    client_info = {"name": "t", "version": "1"}
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": client_info}}
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    good = httpx.post(f"{http_server}/mcp", json=body, headers={**headers, "origin": "http://localhost:3000"})
    assert good.status_code == 200
    evil_origin = httpx.post(f"{http_server}/mcp", json=body, headers={**headers, "origin": "http://evil.example"})
    assert evil_origin.status_code == 403
    evil_host = httpx.post(f"{http_server}/mcp", json=body, headers={**headers, "host": "evil.example"})
    assert evil_host.status_code in (400, 421)


def test_python_dash_m_cli_is_importable_without_heavy_engines():
    code = ("import sys, servers.registry as r\n"
            "[e.build() for e in r.SERVERS]\n"
            "names = ('openai', 'cv2', 'onnxruntime', 'faster_whisper', 'numpy', 'fitz')\n"
            "heavy = [m for m in names if m in sys.modules]\n"
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=_env())
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_library_prints_to_stdout_do_not_corrupt_the_stdio_protocol(tmp_path):
    script = tmp_path / "noisy_server.py"
    script.write_text(
        "import os\n"
        "from pydantic import BaseModel\n"
        "from shared.server import READ_ONLY_LOCAL, ToolResult, add_tool, create_server\n"
        "class Out(BaseModel):\n    ok: bool\n"
        "def noisy() -> ToolResult:\n"
        "    '''Prints the way some libraries do.'''\n"
        "    print('python-level noise')\n"
        "    os.write(1, b'fd-level noise\\n')\n"
        "    return ToolResult(text='clean', data=Out(ok=True))\n"
        "server = create_server('noisy', 'test')\n"
        "add_tool(server, noisy, title='noisy', output=Out, annotations=READ_ONLY_LOCAL)\n"
        "server.run()\n"
    )
    process = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=_env(), cwd=str(tmp_path))
    messages = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize",
         "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                    "clientInfo": {"name": "t", "version": "1"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "noisy", "arguments": {}}},
    ]
    assert process.stdin and process.stdout
    process.stdin.write("".join(json.dumps(m) + "\n" for m in messages).encode())
    process.stdin.flush()
    replies = []
    while len(replies) < 2:
        line = process.stdout.readline()
        assert line, "server closed stdout"
        replies.append(json.loads(line))  # noise on stdout would fail to parse here
    process.stdin.close()
    process.wait(timeout=10)
    err = process.stderr.read()
    assert replies[1]["result"]["content"][0]["text"] == "clean"
    assert b"python-level noise" in err and b"fd-level noise" in err


def test_stateless_http_serves_both_eras_without_sessions():
    process, base = _start_http("--stateless")
    try:

        async def both_eras() -> list[str]:
            texts = []
            for mode in ("legacy", "2026-07-28"):
                async with Client(f"{base}/mcp", mode=mode) as client:
                    result = await client.call_tool("reasoning", {"question": "x"})
                    texts.append(result.content[0].text)
            return texts

        import anyio

        texts = anyio.run(both_eras)
        assert all("TOOLSUITE_REASONING_MODEL" in text for text in texts)
        init = httpx.post(f"{base}/mcp", headers={"accept": "application/json, text/event-stream",
                                                  "content-type": "application/json"},
                          json={"jsonrpc": "2.0", "id": 1, "method": "initialize",
                                "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                                           "clientInfo": {"name": "t", "version": "1"}}})
        assert init.status_code == 200 and "mcp-session-id" not in {k.lower() for k in init.headers}
    finally:
        process.terminate()
        process.wait(10)
