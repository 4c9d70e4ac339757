"""Bad input to every tool of every server gives isError with a cause, and the server keeps serving."""

from __future__ import annotations

import pytest
from mcp import Client

from servers.registry import SERVERS

pytestmark = pytest.mark.anyio


def _sample_value(schema: dict) -> object:
    arms = [s.get("type") for s in schema.get("anyOf", []) if s.get("type") != "null"]
    kind = schema.get("type") or (arms[0] if arms else "string")
    return {"string": "x", "integer": 1, "number": 1.0, "boolean": True}.get(kind, "x")


@pytest.mark.parametrize("entry", SERVERS, ids=[e.name for e in SERVERS])
async def test_bad_arguments_are_errors_and_the_server_keeps_serving(entry):
    async with Client(entry.build()) as client:
        tools = (await client.list_tools()).tools
        unknown = await client.call_tool("no_such_tool", {})
        assert unknown.is_error and "unknown tool 'no_such_tool'" in unknown.content[0].text
        for tool in tools:
            properties = tool.input_schema.get("properties", {})
            required = tool.input_schema.get("required", [])
            if required:
                missing = await client.call_tool(tool.name, {})
                assert missing.is_error
                assert f"{required[0]}: required field is missing" in missing.content[0].text
            wrong_types = {name: {"nested": ["object"]} for name in properties}
            if wrong_types:
                wrong = await client.call_tool(tool.name, wrong_types)
                assert wrong.is_error and tool.name in wrong.content[0].text
            strings = [name for name in required if properties[name].get("type") == "string"]
            if not strings:
                continue
            valid = {name: _sample_value(properties[name]) for name in required}
            huge = {**valid, **{name: "y" * 100_000 for name in strings}}
            answer = await client.call_tool(tool.name, huge)
            assert answer.is_error and len(answer.content[0].text) < 2000
            assert "Traceback" not in answer.content[0].text
        # still serving after all of the above
        assert [t.name for t in (await client.list_tools()).tools] == [t.name for t in tools]
