"""What the tool-python security and attack tests share: a locked-down server and a client session
with an attacker sandbox and a witness sandbox that must keep working."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from mcp import Client
from mcp.server import MCPServer
from mcp_types import CallToolResult

from servers.python.client import SandboxClient
from servers.python.server import build

WALL = 4


@pytest.fixture
def hardened(monkeypatch, tmp_path):
    monkeypatch.setenv("TOOLSUITE_SANDBOX_DIR", str(tmp_path / "sandboxes"))
    monkeypatch.setenv("TOOLSUITE_OUTPUT_DIR", str(tmp_path / "root" / "out"))
    monkeypatch.setenv("TOOLSUITE_SANDBOX_CALL_TIMEOUT", str(WALL))
    monkeypatch.setenv("TOOLSUITE_SANDBOX_MEMORY_MB", "256")
    monkeypatch.setenv("TOOLSUITE_VISION_API_KEY", "sk-host-secret-never-in-sandbox")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-secret-never-in-sandbox")
    with python_server() as server:
        yield server


@contextlib.contextmanager
def python_server() -> Iterator[MCPServer]:
    """A tool-python server built from the current environment; its sandboxes go when the block ends."""
    server = build()
    try:
        yield server
    finally:
        server._sandbox_engine.shutdown()  # type: ignore[attr-defined]


async def create_sandbox(client: Client, **arguments: Any) -> str:
    """The id of a sandbox created through `client` (the call must succeed)."""
    created = await client.call_tool("create_sandbox", arguments)
    assert not created.is_error, created.content[0].text
    return created.structured_content["sandbox_id"]


async def run_code(client: Client, sandbox_id: str, code: str) -> CallToolResult:
    """`code` run in a sandbox through `client`: the whole result (a failure of the code is in its data)."""
    return await client.call_tool("run_python_code", {"sandbox_id": sandbox_id, "code_block": code})


# Code for inside a sandbox (needs `os`): every descriptor of every process the sandbox can see,
# as (pid, fd, its /proc path); "self" is the process running the code.
EVERY_DESCRIPTOR = r"""
def every_descriptor():
    for pid in [p for p in os.listdir("/proc") if p.isdigit()] + ["self"]:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            yield pid, fd, f"/proc/{pid}/fd/{fd}"
"""

class Session:
    """A client with an attacker sandbox and a witness sandbox that must keep working."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.attacker = ""
        self.witness = ""

    async def start(self) -> Session:
        self.attacker = await create_sandbox(self.client)
        self.witness = await create_sandbox(self.client)
        return self

    async def run(self, code: str, sandbox: str | None = None):
        result = await run_code(self.client, sandbox or self.attacker, code)
        assert not result.is_error, result.content[0].text
        return result.structured_content

    async def command(self, command: str, sandbox: str | None = None):
        result = await self.client.call_tool("run_command", {"sandbox_id": sandbox or self.attacker,
                                                             "command": command})
        assert not result.is_error, result.content[0].text
        return result.structured_content

    async def call(self, tool: str, **arguments):
        return await self.client.call_tool(tool, {"sandbox_id": self.attacker, **arguments})

    async def witness_still_serves(self) -> None:
        assert (await self.run("21 * 2", self.witness))["result"] == "42"


@contextlib.asynccontextmanager
async def attack_session(server: MCPServer) -> AsyncIterator[Session]:
    """An in-memory client of `server` with its attacker and witness sandboxes created."""
    async with Client(server) as client:
        yield await Session(client).start()


def stop_service(env: dict[str, str]) -> bool:
    """Stop the sandbox service that servers run with `env` use (host-style runs start one in their own
    folder, and it would otherwise wait out its sandboxes' idle timeouts)."""
    with mock.patch.dict(os.environ, env):
        return SandboxClient().stop()


def host_env(root: Path, sandboxes: Path, **extra: str) -> dict[str, str]:
    """What an agent host gives a tool-python process: a few inherited names plus its configured ones."""
    env = {k: os.environ[k] for k in ("HOME", "PATH", "LANG") if k in os.environ}
    return {**env, "TOOLSUITE_ROOTS": str(root), "TOOLSUITE_SANDBOX_DIR": str(sandboxes),
            "TOOLSUITE_OUTPUT_DIR": str(root / "out"), **extra}


def processes_mentioning(*texts: str) -> list[int]:
    """Live processes whose command line holds every one of `texts` (a sandbox service names its folder;
    bubblewrap names the sandbox folders it binds). Processes that end while being looked at are
    left out."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError):
            alive = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
            argv = (entry / "cmdline").read_bytes()
            if alive and all(text.encode() in argv for text in texts):
                found.append(int(entry.name))
    return found


def services_of(sandboxes: Path) -> list[int]:
    return processes_mentioning(str(sandboxes), "servers.python.daemon")
