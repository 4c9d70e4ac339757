"""A client that calls our servers the way MiroThinker's tool manager does, for tests and bench/host_calls.py.

Habits reproduced, as read in the host's `miroflow_tools/manager.py` and the MCP SDK 1.10.1 stdio client
it pins:
- a new stdio process for each listing and for each call, its environment only HOME, LOGNAME, PATH,
  SHELL, TERM and USER plus the `env` of the server's configuration;
- `initialize` (protocol 2025-06-18, no client capabilities), `notifications/initialized`, one request;
- after a call whose result is not an error, the SDK lists the tools and validates `structuredContent`
  against the tool's `outputSchema`; a mismatch fails the call on the host side;
- the host hands the model `content[-1].text` only and never looks at `isError`;
- at the end the process gets SIGTERM (stdin still open) and the host waits for it to exit.

A long-lived session (one process, many calls) is here too, for the benchmark's comparison.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import jsonschema
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

PROTOCOL_VERSION = "2025-06-18"  # what SDK 1.10.1 sends
HOST_INHERITED = ("HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER")
CALL_TIMEOUT = 300.0  # the host wraps each call in a 300 s timeout
EXIT_GRACE = 10.0  # how long we wait after SIGTERM before calling the exit unclean
MAX_MESSAGE = 256 * 1024 * 1024


class HostFailure(Exception):
    """What the host reports instead of a result: its "Tool execution failed: ..." path."""


def host_environment(env: dict[str, str]) -> dict[str, str]:
    """The environment SDK 1.10.1 gives a stdio server: a few inherited names plus the configured ones."""
    inherited = {k: os.environ[k] for k in HOST_INHERITED if k in os.environ and not os.environ[k].startswith("()")}
    return {**inherited, **env}


@dataclass
class HostCall:
    """One tool call as the host made it."""

    server: str
    tool: str
    text: str | None = None  # what the model is given: content[-1].text
    host_error: str | None = None  # set when the host's own handling failed instead
    is_error: bool = False  # kept for the tests; the host ignores it
    block_types: list[str] = field(default_factory=list)
    structured: Any = None
    returncode: int | None = None
    exit_seconds: float | None = None  # SIGTERM -> process gone
    seconds: float = 0.0  # spawn -> process gone, as long as the host waits
    stderr: str = ""

    @property
    def exited_cleanly(self) -> bool:
        """Gone promptly after SIGTERM, by a normal exit or by the signal's default action."""
        return self.returncode in (0, -signal.SIGTERM) and (self.exit_seconds or 0) < EXIT_GRACE


class StdioSession:
    """One server process spoken to over stdio with newline-delimited JSON-RPC."""

    def __init__(self, command: list[str], env: dict[str, str], cwd: Path | None = None) -> None:
        self.command = command
        self.env = host_environment(env)
        self.cwd = cwd
        self.process: Process | None = None
        self._reader: BufferedByteReceiveStream | None = None
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stderr_text() after the process ends
        self._next_id = 0
        self.tools: dict[str, dict[str, Any]] | None = None

    async def start(self) -> None:
        self.process = await anyio.open_process(self.command, env=self.env, cwd=self.cwd, stderr=self._stderr)
        assert self.process.stdout is not None
        self._reader = BufferedByteReceiveStream(self.process.stdout)
        await self.request("initialize", {"protocolVersion": PROTOCOL_VERSION, "capabilities": {},
                                          "clientInfo": {"name": "mcp", "version": "0.1.0"}})
        await self._send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    async def _send(self, message: dict[str, Any]) -> None:
        assert self.process is not None and self.process.stdin is not None
        await self.process.stdin.send((json.dumps(message, ensure_ascii=False) + "\n").encode())

    async def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a request and wait for its response, answering what the server asks in between."""
        self._next_id += 1
        wanted = self._next_id
        await self._send({"jsonrpc": "2.0", "id": wanted, "method": method, **({"params": params} if params else {})})
        assert self._reader is not None
        while True:
            try:
                line = await self._reader.receive_until(b"\n", MAX_MESSAGE)
            except (anyio.EndOfStream, anyio.IncompleteRead):
                raise HostFailure(f"Connection closed while waiting for {method}") from None
            if not line.strip():
                continue
            message = json.loads(line)
            if "method" in message and "id" in message:  # a request from the server
                reply: dict[str, Any] = {"jsonrpc": "2.0", "id": message["id"]}
                if message["method"] == "ping":
                    reply["result"] = {}
                else:
                    reply["error"] = {"code": -32601, "message": "Method not found"}
                await self._send(reply)
                continue
            if message.get("id") != wanted:
                continue  # notifications (progress, logs)
            if "error" in message:
                raise HostFailure(message["error"].get("message", "JSON-RPC error"))
            return message["result"]

    async def list_tools(self) -> dict[str, dict[str, Any]]:
        result = await self.request("tools/list")
        self.tools = {tool["name"]: tool for tool in result["tools"]}
        return self.tools

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """`tools/call`, then SDK 1.10.1's check of the structured result against the output schema."""
        result = await self.request("tools/call", {"name": name, "arguments": arguments})
        if not result.get("isError"):
            tools = self.tools if self.tools and name in self.tools else await self.list_tools()
            schema = tools.get(name, {}).get("outputSchema")
            if schema is not None:
                if result.get("structuredContent") is None:
                    raise HostFailure(f"Tool {name} has an output schema but did not return structured content")
                try:
                    jsonschema.validate(result["structuredContent"], schema)
                except jsonschema.ValidationError as exc:
                    raise HostFailure(f"Invalid structured content returned by tool {name}: {exc.message}") from None
        return result

    async def terminate(self) -> tuple[int | None, float]:
        """SIGTERM, as the host's stdio client sends it, then wait; returns (returncode, seconds to exit)."""
        assert self.process is not None
        started = time.perf_counter()
        with contextlib.suppress(ProcessLookupError):
            self.process.terminate()
        code: int | None = None
        with anyio.move_on_after(EXIT_GRACE):
            code = await self.process.wait()
        waited = time.perf_counter() - started
        if code is None:  # did not exit: do not leave it behind
            self.process.kill()
            await self.process.wait()
        await self.process.aclose()
        return code, waited

    def stderr_text(self) -> str:
        self._stderr.seek(0)
        text = self._stderr.read().decode("utf-8", "replace")
        self._stderr.close()
        return text


def host_text(result: dict[str, Any]) -> str:
    """`result.content[-1].text`, failing as the host does when the last block has no text."""
    content = result.get("content") or []
    if not content:
        return ""
    last = content[-1]
    if last.get("type") != "text":
        kind = {"image": "ImageContent", "audio": "AudioContent", "resource": "EmbeddedResource",
                "resource_link": "ResourceLink"}.get(last.get("type"), "Content")
        raise HostFailure(f"'{kind}' object has no attribute 'text'")
    return last["text"]


async def host_call(command: list[str] | str, tool: str, arguments: dict[str, Any], env: dict[str, str],
                    cwd: Path | None = None, timeout: float = CALL_TIMEOUT, server: str | None = None) -> HostCall:
    """One call the host's way: new process, call, last block's text, SIGTERM, wait."""
    argv = [command] if isinstance(command, str) else command
    call = HostCall(server=server or Path(argv[0]).name, tool=tool)
    started = time.perf_counter()
    session = StdioSession(argv, env, cwd)
    try:
        with anyio.fail_after(timeout):
            await session.start()
            result = await session.call_tool(tool, arguments)
            call.is_error = bool(result.get("isError"))
            call.block_types = [block.get("type", "?") for block in result.get("content") or []]
            call.structured = result.get("structuredContent")
            call.text = host_text(result)
    except HostFailure as exc:
        call.host_error = f"Tool execution failed: {exc}"
    except TimeoutError:
        call.host_error = f"Tool call timed out after {timeout:.0f} s"
    finally:
        if session.process is not None:
            with anyio.CancelScope(shield=True):
                call.returncode, call.exit_seconds = await session.terminate()
        call.seconds = time.perf_counter() - started
        call.stderr = session.stderr_text()
    return call


async def host_list(command: list[str] | str, env: dict[str, str], cwd: Path | None = None) -> dict[str, Any]:
    """The host's listing: its own process too."""
    argv = [command] if isinstance(command, str) else command
    session = StdioSession(argv, env, cwd)
    try:
        with anyio.fail_after(CALL_TIMEOUT):
            await session.start()
            return await session.list_tools()
    finally:
        if session.process is not None:
            with anyio.CancelScope(shield=True):
                await session.terminate()
        session.stderr_text()
