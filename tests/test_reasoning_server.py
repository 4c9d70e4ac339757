"""tool-reasoning end to end through the in-memory MCP client, against a fake local model server
(checks our wire format and behaviour, not model quality)."""

from __future__ import annotations

import pytest
from mcp import Client

from servers.reasoning.server import build
from tests.fake_openai import Scripted

pytestmark = pytest.mark.anyio


@pytest.fixture
def reasoning_model(model_role):
    return model_role("REASONING", "fake-thinker", api_key="sk-reasoning-secret-000")


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_wire_reasoning_returns_final_answer_without_hidden_thinking(reasoning_model, mode):
    reasoning_model.chat_reply = "<think>secret chain of thought</think>\nThe answer is 42."
    async with Client(build(), mode=mode) as client:
        result = await client.call_tool("reasoning", {"question": "What is 6 x 7?"})
    assert not result.is_error
    assert result.content[0].text == "The answer is 42."
    data = result.structured_content
    assert data["answer"] == "The answer is 42." and data["model"] == "fake-thinker"
    assert data["usage"]["completion_tokens"] == 7
    sent = reasoning_model.requests[-1].json()
    assert sent["messages"][-1] == {"role": "user", "content": "What is 6 x 7?"}
    assert "reasoning_effort" not in sent


async def test_wire_reasoning_effort_and_thinking_budget_are_sent(reasoning_model, monkeypatch):
    monkeypatch.setenv("TOOLSUITE_REASONING_EFFORT", "high")
    monkeypatch.setenv("TOOLSUITE_REASONING_THINKING_BUDGET", "2048")
    async with Client(build()) as client:
        result = await client.call_tool("reasoning", {"question": "hard one"})
    assert not result.is_error
    sent = reasoning_model.requests[-1].json()
    assert sent["reasoning_effort"] == "high"
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048}


async def test_wire_reasoning_retries_then_reports_progress(reasoning_model):
    reasoning_model.script.extend([Scripted(429, {"error": {"message": "busy"}}, headers={"retry-after": "0.1"}),
                                   Scripted(200, None, delay=2.5)])
    updates: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done, total, message):
        updates.append((done, total, message))

    async with Client(build(), mode="legacy") as client:
        result = await client.call_tool("reasoning", {"question": "slow one"}, progress_callback=on_progress)
    assert not result.is_error and result.structured_content["usage"]["retries"] == 1
    assert len(updates) >= 2 and all(total == 900 for _, total, _ in updates)
    assert "waiting for the reasoning model" in (updates[0][2] or "")


async def test_reasoning_total_time_limit_is_enforced(reasoning_model, monkeypatch):
    monkeypatch.setenv("TOOLSUITE_REASONING_TOTAL_TIMEOUT", "5")
    reasoning_model.script.extend([Scripted(200, None, delay=8)] * 3)
    async with Client(build()) as client:
        result = await client.call_tool("reasoning", {"question": "never answered"})
    assert result.is_error and "did not answer within" in result.content[0].text


async def test_reasoning_without_a_model_names_the_settings():
    async with Client(build()) as client:
        result = await client.call_tool("reasoning", {"question": "anything"})
    assert result.is_error
    text = result.content[0].text
    assert "TOOLSUITE_REASONING_MODEL" in text and "REASONING_MODEL_NAME" in text


async def test_reasoning_endpoint_down_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("TOOLSUITE_REASONING_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("TOOLSUITE_REASONING_MODEL", "m")
    monkeypatch.setenv("TOOLSUITE_MODEL_RETRIES", "0")
    async with Client(build()) as client:
        result = await client.call_tool("reasoning", {"question": "anything"})
    assert result.is_error and "cannot reach the reasoning model" in result.content[0].text


async def test_reasoning_bad_input_and_known_extra_arguments(reasoning_model):
    async with Client(build()) as client:
        empty = await client.call_tool("reasoning", {"question": ""})
        missing = await client.call_tool("reasoning", {})
        wrong = await client.call_tool("reasoning", {"question": ["a"]})
        huge = await client.call_tool("reasoning", {"question": "x" * 300_000})
        extra = await client.call_tool("reasoning", {"question": "ok?", "enable_verification": True})
    assert empty.is_error and "question" in empty.content[0].text
    assert missing.is_error and "question: required field is missing" in missing.content[0].text
    assert wrong.is_error and "valid string" in wrong.content[0].text
    assert huge.is_error and "question" in huge.content[0].text and len(huge.content[0].text) < 500
    assert not extra.is_error and extra.content[0].text == "fake answer"


async def test_tool_definition_is_complete():
    async with Client(build()) as client:
        tools = (await client.list_tools()).tools
    (tool,) = tools
    assert tool.name == "reasoning" and tool.title
    assert "reasoning model" in tool.description
    question = tool.input_schema["properties"]["question"]
    assert question["description"] and question["minLength"] == 1 and question["maxLength"] == 200_000
    assert tool.output_schema["properties"]["answer"]
    a = tool.annotations
    assert (a.read_only_hint, a.destructive_hint, a.idempotent_hint, a.open_world_hint) == (True, False, False, True)
