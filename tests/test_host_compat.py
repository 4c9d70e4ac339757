"""Every tool of every server, tried as the MiroThinker agent host calls it (tests/host_client.py).

A new stdio process per listing and per call with only the configured environment, the last content
block's text read and isError ignored, SIGTERM at the end. Models are the fake OpenAI-compatible
server on 127.0.0.1 reached through the host's own settings names where the host has them
(`ANTHROPIC_*` for tool-reasoning and tool-vqa, `VLLM_*` for tool-vqa-enhanced); these tests check the
wire format and what the host can read, not model quality. All calls run once per module, servers
side by side (the calls of one server in order, so its caches are reused), and each check is its own test.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import anyio
import pytest

from servers.registry import SERVERS
from shared.errors import failure_marker
from tests.fake_openai import FakeOpenAI
from tests.host_cases import BIN, CASES, FAKE_KEY, Case, HostRun, make_root
from tests.host_client import HostCall, host_list
from tests.sandboxes import stop_service

PARALLEL_SERVERS = 2  # one per core: spawn is mostly import time, so more at once only thrashes
# Longest first, so the two lanes finish together (video and image tools run OCR in every new process).
HEAVY_FIRST = ("tool-video-enhanced", "tool-vqa-enhanced", "tool-reader", "tool-vqa")
# The calls run once, in the first test's setup: 43 processes (9 listings, 34 calls), about three
# minutes at a load average of 10.
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def host_run(tmp_path_factory: pytest.TempPathFactory):
    root, cache = make_root(tmp_path_factory.mktemp("host"))
    fake = FakeOpenAI().start()
    run = HostRun(root, cache, fake.base_url, fake)

    async def one_server(server: str, limiter: anyio.CapacityLimiter) -> None:
        async with limiter:
            run.listings[server] = await host_list(str(BIN / server), run.env(server), cwd=root)
            for case in (c for c in CASES if c.server == server):
                run.calls[case.id] = await run.call(case)

    async def everything() -> None:
        limiter = anyio.CapacityLimiter(PARALLEL_SERVERS)
        async with anyio.create_task_group() as group:
            names = [e.name for e in SERVERS]
            for name in sorted(names, key=lambda n: HEAVY_FIRST.index(n) if n in HEAVY_FIRST else len(HEAVY_FIRST)):
                group.start_soon(one_server, name, limiter)

    try:
        anyio.run(everything)
        yield run
    finally:
        fake.stop()
        stop_service(run.env("tool-python"))


def test_every_tool_of_every_server_is_tried(host_run: HostRun):
    listed = {(server, name) for server, tools in host_run.listings.items() for name in tools}
    tried = {(case.server, case.tool) for case in CASES}
    assert len(host_run.listings) == len(SERVERS)
    assert listed == tried, f"untried: {listed - tried}; unknown: {tried - listed}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_host_reads_the_whole_answer_from_the_last_text_block_wire_format(host_run: HostRun, case: Case):
    call = host_run.calls[case.id]
    assert call.host_error is None, f"{case.id}: {call.host_error}\n{call.stderr[-2000:]}"
    assert call.block_types[-1] == "text" and call.block_types.count("text") == 1, call.block_types
    assert call.text and call.text.strip(), f"{case.id}: empty text"
    assert case.expect is None or case.expect in call.text, f"{case.id}: {case.expect!r} not in {call.text[:1500]!r}"
    assert "Traceback" not in call.text


@pytest.mark.parametrize("case", [c for c in CASES if c.error], ids=[c.id for c in CASES if c.error])
def test_a_failure_says_so_in_the_text_the_host_reads(host_run: HostRun, case: Case):
    call = host_run.calls[case.id]
    assert call.is_error, f"{case.id} should fail: {call.text!r}"
    assert call.text is not None and call.text.startswith(failure_marker(case.server)), call.text


def test_successes_carry_no_failure_marker(host_run: HostRun):
    for case in (c for c in CASES if not c.error):
        call = host_run.calls[case.id]
        assert not call.is_error and not (call.text or "").startswith(("Error:", "[ERROR]")), (case.id, call.text)


def test_every_process_exits_promptly_after_sigterm_without_a_traceback(host_run: HostRun):
    for name, call in host_run.calls.items():
        assert call.exited_cleanly, (name, call.returncode, call.exit_seconds)
        assert "Traceback" not in call.stderr, (name, call.stderr[-3000:])


def test_images_come_before_the_text_for_the_video_tools(host_run: HostRun):
    keyframes = host_run.calls["tool-video-enhanced/video_extract_keyframes"]
    assert keyframes.block_types[:-1] and set(keyframes.block_types[:-1]) == {"image"}
    assert keyframes.block_types[-1] == "text"


def test_host_settings_names_reach_the_model_endpoint_wire_format(host_run: HostRun):
    assert host_run.fake is not None
    chats = [r for r in host_run.fake.requests if r.path.endswith("/chat/completions")]
    by_model: dict[str, list[Any]] = {}
    for request in chats:
        by_model.setdefault(request.json()["model"], []).append(request)
    # tool-reasoning and tool-vqa through ANTHROPIC_*: /v1 added, the reference's model, the key sent.
    claude = by_model.get("claude-3-7-sonnet-20250219", [])
    assert len(claude) >= 2 and all(r.path == "/v1/chat/completions" for r in claude)
    assert all(r.headers["authorization"] == f"Bearer {FAKE_KEY}" for r in claude)
    reasoning = next(r.json() for r in claude if r.json()["messages"][-1]["content"] == "Is 2^31-1 prime?")
    assert reasoning["max_tokens"] == 21000 and reasoning["thinking"] == {"type": "enabled", "budget_tokens": 19000}
    # tool-vqa-enhanced through VLLM_*.
    assert by_model.get("fake-vision") and any(
        r.headers["authorization"] == f"Bearer {FAKE_KEY}" for r in by_model["fake-vision"])


def test_rag_search_shows_the_source_file_as_the_agent_passed_it(host_run: HostRun):
    text = host_run.calls["tool-rag/rag_search"].text or ""
    assert text.startswith("=== RAG Search Results ===\nQuery: '直播 平台责任'\nSource File: collection.json\n")


# Issue 17 item 2: state that outlives the process of one call.

def test_a_sandbox_created_in_one_host_call_runs_code_in_the_next(tmp_path: Path):
    run = HostRun(*make_root(tmp_path / "host"))

    async def scenario() -> tuple[HostCall, HostCall]:
        created = await run.call(Case("tool-python", "create_sandbox", {}))
        match = re.search(r"sandbox_id: (\S+)", created.text or "")  # the reference's wording
        assert match, created.text
        ran = await run.call(Case("tool-python", "run_python_code", {"code_block": "6 * 7", "sandbox_id": match[1]}))
        return created, ran

    try:
        created, ran = anyio.run(scenario)
    finally:
        stop_service(run.env("tool-python"))
    assert created.exited_cleanly and ran.exited_cleanly
    assert not ran.is_error and "42" in (ran.text or ""), ran.text


def test_a_collections_semantic_index_completes_across_short_lived_host_calls(tmp_path: Path):
    run = HostRun(*make_root(tmp_path / "host"))
    stats = Case("tool-rag", "rag_document_stats", {"json_path": "collection.json"})

    async def scenario() -> str:
        text = ""
        # The whole build takes about a second in one long-lived process; allow six short calls, a second apart.
        for _ in range(6):
            call = await run.call(stats)
            assert call.exited_cleanly and call.host_error is None, call.host_error
            text = call.text or ""
            if re.search(r"Semantic index \(.*\): complete", text):
                return text
            await anyio.sleep(1.0)
        return text

    text = anyio.run(scenario)
    assert re.search(r"Semantic index \(.*\): complete", text), text
