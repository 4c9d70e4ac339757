"""Assertions several test files share."""

from __future__ import annotations

from typing import Any

from mcp import Client


async def assert_clear_errors(client: Client, tool: str, argument: str, cases: dict[str, str], **fixed: Any) -> None:
    """Calling `tool` with each input of `cases` as `argument` is an error whose text has the expected words
    and no traceback."""
    for value, expected in cases.items():
        result = await client.call_tool(tool, {argument: value, **fixed})
        text = result.content[0].text
        assert result.is_error and expected in text, (value, text)
        assert "Traceback" not in text, (value, text)
