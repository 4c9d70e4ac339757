"""Calls and assertions several test files share."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio
from mcp import Client
from mcp.server import MCPServer
from mcp_types import CallToolResult


async def call_once(server: MCPServer, tool: str, arguments: dict[str, Any]) -> tuple[CallToolResult, str]:
    """`tool` called once through a fresh in-memory client: the result and its text."""
    async with Client(server) as client:
        result = await client.call_tool(tool, arguments)
    return result, result.content[0].text


def assert_no_crash(text: str) -> None:
    """No crash reached the agent: no internal error, RecursionError or traceback in `text`."""
    # A MemoryError named as the cause of a refusal (FFmpeg's ENOMEM for absurd headers) is allowed;
    # one that escaped as an internal error is not.
    for leak in ("internal error", "RecursionError", "Traceback"):
        assert leak not in text, text[:300]


async def assert_clear_errors(client: Client, tool: str, argument: str, cases: dict[str, str], **fixed: Any) -> None:
    """Calling `tool` with each input of `cases` as `argument` is an error whose text has the expected words
    and no traceback."""
    for value, expected in cases.items():
        result = await client.call_tool(tool, {argument: value, **fixed})
        text = result.content[0].text
        assert result.is_error and expected in text, (value, text)
        assert "Traceback" not in text, (value, text)


async def until(check: Callable[[], Any], seconds: float) -> Any:
    """`check()` once it is truthy, or its last value after `seconds` (the async form of
    hostile_cases.settle, for tests that must keep the event loop running while they wait)."""
    deadline = time.monotonic() + seconds
    while not (value := check()) and time.monotonic() < deadline:
        await anyio.sleep(0.02)
    return value
