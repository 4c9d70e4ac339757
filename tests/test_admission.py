"""Load that holds: the tool-call gate, over HTTP (503 + Retry-After) and stdio (isError), under floods."""

from __future__ import annotations

import json
import sys

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from shared.admission import Busy, Gate, Limits
from tests.http_process import SLOW_SERVER, environment, start

pytestmark = pytest.mark.anyio

JSON_RPC = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


def _limits(concurrent: int, queued: int, timeout: float = 30, **extra: str) -> dict[str, str]:
    return {"TOOLSUITE_MAX_CONCURRENT_CALLS": str(concurrent), "TOOLSUITE_MAX_QUEUED_CALLS": str(queued),
            "TOOLSUITE_QUEUE_TIMEOUT": str(timeout), **extra}


def _call(request_id: int, seconds: float) -> dict:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
            "params": {"name": "slow", "arguments": {"tag": f"call-{request_id}", "seconds": seconds}}}


def _sse_result(text: str) -> dict:
    data = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
    return json.loads(data[-1])["result"]


# --- the gate itself ----------------------------------------------------------------------------

async def test_a_burst_splits_exactly_into_running_waiting_and_refused_in_arrival_order():
    gate = Gate("tool-x", Limits(concurrent=2, queued=3, queue_timeout=10))
    started: list[int] = []
    refused: list[int] = []
    release = anyio.Event()

    async def call(n: int) -> None:
        try:
            async with gate.slot():
                started.append(n)
                await release.wait()
        except Busy:
            refused.append(n)

    async with anyio.create_task_group() as group:
        for n in range(10):
            group.start_soon(call, n)
        await anyio.wait_all_tasks_blocked()
        assert (gate.running, gate.waiting, sorted(refused)) == (2, 3, [5, 6, 7, 8, 9])
        release.set()
    assert started == [0, 1, 2, 3, 4]  # FIFO
    assert (gate.running, gate.waiting, gate.full) == (0, 0, False)


async def test_a_queued_call_that_times_out_or_is_cancelled_leaves_no_trace():
    gate = Gate("tool-x", Limits(concurrent=1, queued=2, queue_timeout=0.2))
    hold = anyio.Event()
    outcomes: list[str] = []

    async def holder() -> None:
        async with gate.slot():
            await hold.wait()

    async def waiter() -> None:
        try:
            async with gate.slot():
                outcomes.append("ran")
        except Busy as busy:
            outcomes.append(str(busy))

    async with anyio.create_task_group() as group:
        group.start_soon(holder)
        await anyio.wait_all_tasks_blocked()
        async with anyio.create_task_group() as cancelled:  # a client cancelling its queued call
            cancelled.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            assert gate.waiting == 1
            cancelled.cancel_scope.cancel()
        assert gate.waiting == 0 and outcomes == []
        group.start_soon(waiter)
        await anyio.sleep(0.4)  # this one times out in the queue
        assert gate.waiting == 0 and gate.running == 1
        hold.set()
    assert len(outcomes) == 1 and "TOOLSUITE_QUEUE_TIMEOUT" in outcomes[0] and "not started" in outcomes[0]
    assert gate.running == 0
    async with gate.slot():
        assert gate.running == 1
    assert gate.running == 0


# --- over HTTP ----------------------------------------------------------------------------------

async def test_an_http_flood_gets_503_busy_with_nothing_lost_or_half_done_and_memory_bounded(tmp_path):
    log = tmp_path / "ran.log"
    log.touch()
    server = start("tool-slow", tmp_path, "--stateless",
                   env=environment(SLOW_LOG=str(log), **_limits(concurrent=2, queued=3)))
    try:
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=400)) as client:
            warm = await client.post(server.url, json=_call(0, 0), headers=JSON_RPC)
            assert warm.status_code == 200
            rss_before = server.rss_kb()
            answers: dict[int, httpx.Response] = {}

            async def call(n: int) -> None:
                answers[n] = await client.post(server.url, json=_call(n, 0.3), headers=JSON_RPC)

            for flood in range(3):
                async with anyio.create_task_group() as group:
                    for n in range(1 + flood * 300, 1 + (flood + 1) * 300):
                        group.start_soon(call, n)
            rss_after = server.rss_kb()

        assert len(answers) == 900  # every call got an answer
        done, busy = set(), 0
        for n, response in answers.items():
            assert response.status_code in (200, 503), response.text
            if response.status_code == 200:
                result = _sse_result(response.text)
                assert not result["isError"] and result["structuredContent"] == {"tag": f"call-{n}"}
                done.add(f"call-{n}")
            else:
                busy += 1
                assert 1 <= int(response.headers["retry-after"]) <= 60
                error = response.json()
                assert error["id"] == n and error["error"]["code"] == -32000
                assert "busy" in error["error"]["message"] and "Retry in about" in error["error"]["message"]
                assert "TOOLSUITE_MAX_CONCURRENT_CALLS=2" in error["error"]["message"]
        assert busy >= 800 and len(done) >= 15  # each burst: 2 run + 3 queue, the rest refused
        ran = log.read_text().split()
        assert sorted(ran) == sorted(["call-0", *done])  # every admitted call finished; no refused one ran
        assert rss_after - rss_before < 40_000, f"RSS grew {rss_after - rss_before} kB"
        assert server.process.poll() is None
        assert "Traceback" not in server.log()
        assert httpx.post(server.url, json=_call(9999, 0), headers=JSON_RPC, timeout=30).status_code == 200
    finally:
        server.stop()


async def test_the_mcp_client_hears_busy_as_an_error_and_its_session_survives(tmp_path):
    log = tmp_path / "ran.log"
    server = start("tool-slow", tmp_path, env=environment(SLOW_LOG=str(log), **_limits(concurrent=1, queued=1)))
    outcomes: list[str] = []
    try:
        async with (httpx2.AsyncClient(timeout=httpx2.Timeout(30, read=60)) as http,
                    Client(streamable_http_client(server.url, http_client=http), mode="legacy") as client):

            async def call(n: int) -> None:
                try:
                    result = await client.call_tool("slow", {"tag": f"c{n}", "seconds": 1})
                    outcomes.append("done" if not result.is_error else result.content[0].text)
                except MCPError as exc:
                    outcomes.append(str(exc))

            async with anyio.create_task_group() as group:
                for n in range(6):
                    group.start_soon(call, n)
            after = await client.call_tool("slow", {"tag": "after", "seconds": 0})
    finally:
        server.stop()
    assert outcomes.count("done") == 2
    assert all("busy" in o and "Retry in about" in o for o in outcomes if o != "done")
    assert not after.is_error  # the same session works after refusals
    ran = log.read_text().split()
    assert len(ran) == 3 and ran[-1] == "after"  # the two admitted calls and the one after; no refused one


async def test_an_unauthenticated_flood_gets_401_never_a_hint_about_load(tmp_path):
    token = "t" * 40
    log = tmp_path / "ran.log"
    server = start("tool-slow", tmp_path, "--stateless", env=environment(
        SLOW_LOG=str(log), TOOLSUITE_HTTP_TOKENS=token, **_limits(concurrent=1, queued=0)))
    try:
        async with httpx.AsyncClient(timeout=60) as client:
            authorized = {**JSON_RPC, "authorization": f"Bearer {token}"}
            answers: list[int] = []

            async def call(n: int, headers: dict) -> None:
                answers.append((await client.post(server.url, json=_call(n, 1), headers=headers)).status_code)

            async with anyio.create_task_group() as group:
                group.start_soon(call, 1, authorized)
                await anyio.sleep(0.5)  # the one slot is taken
                for n in range(2, 12):
                    group.start_soon(call, n, JSON_RPC)
                group.start_soon(call, 99, authorized)
    finally:
        server.stop()
    assert sorted(answers) == [200] + [401] * 10 + [503]
    assert log.read_text().split() == ["call-1"]


def test_past_the_connection_cap_requests_get_503_not_a_pile_up(tmp_path):
    log = tmp_path / "ran.log"
    log.touch()
    server = start("tool-slow", tmp_path, "--stateless", env=environment(
        SLOW_LOG=str(log), TOOLSUITE_HTTP_MAX_CONNECTIONS="5", **_limits(concurrent=50, queued=50)))
    try:
        async def flood() -> list[int]:
            statuses: list[int] = []
            async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=40)) as client:

                async def call(n: int) -> None:
                    statuses.append((await client.post(server.url, json=_call(n, 0.5), headers=JSON_RPC)).status_code)

                async with anyio.create_task_group() as group:
                    for n in range(40):
                        group.start_soon(call, n)
            return statuses

        statuses = anyio.run(flood)
        after = httpx.post(server.url, json=_call(999, 0), headers=JSON_RPC, timeout=30)
    finally:
        server.stop()
    assert len(statuses) == 40 and set(statuses) <= {200, 503} and statuses.count(503) >= 20
    assert after.status_code == 200  # connections closed, the server serves again
    assert len(log.read_text().split()) == statuses.count(200) + 1


# --- over stdio ---------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_stdio_flood_gets_is_error_busy_results(tmp_path, mode):
    log = tmp_path / "ran.log"
    params = StdioServerParameters(command=sys.executable, args=[str(SLOW_SERVER)],
                                   env=environment(SLOW_LOG=str(log), **_limits(concurrent=1, queued=1)))
    results = []
    async with Client(params, mode=mode) as client:

        async def call(n: int) -> None:
            results.append(await client.call_tool("slow", {"tag": f"s{n}", "seconds": 0.5}))

        async with anyio.create_task_group() as group:
            for n in range(6):
                group.start_soon(call, n)
    done = [r for r in results if not r.is_error]
    busy = [r for r in results if r.is_error]
    assert len(done) == 2 and len(busy) == 4
    assert all("busy" in r.content[0].text and "nothing was done" in r.content[0].text for r in busy)
    assert sorted(log.read_text().split()) == sorted(r.structured_content["tag"] for r in done)
