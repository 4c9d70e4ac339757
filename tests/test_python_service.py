"""tool-python's sandbox service: sandboxes outlive the server processes that create and use them.

Driven as agent hosts drive the server (a fresh `tool-python` stdio process per call, ended with
SIGTERM, stdin still open), and through the in-memory client where a call must be interrupted. The
attacks on the service's socket are in test_python_service_attacks.py.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import anyio
import pytest
from mcp import Client

from servers.python.client import SandboxClient
from tests.conftest import BIN
from tests.sandboxes import (
    create_sandbox,
    host_env,
    processes_mentioning,
    python_server,
    run_code,
    services_of,
    stop_service,
)
from tests.sigterm_stdio import SigtermStdio, group_members

pytestmark = pytest.mark.anyio


@pytest.fixture
def sandboxes(tmp_path: Path):
    folder = tmp_path / "sandboxes"
    yield folder
    for pid in services_of(folder):  # whatever a test left running
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def env(root: Path, sandboxes: Path):
    values = host_env(root, sandboxes, TOOLSUITE_SANDBOX_CALL_TIMEOUT="20")
    yield values
    stop_service(values)


@pytest.fixture
def in_process(setenv: Callable[..., None], root: Path, sandboxes: Path) -> None:
    """This process configured as a host configures tool-python, for a server run in it (calls that
    must be interrupted go through the in-memory client)."""
    setenv(**host_env(root, sandboxes))


async def host_call(env: dict[str, str], tool: str, arguments: dict[str, Any]) -> tuple[Any, SigtermStdio]:
    transport = SigtermStdio([str(BIN / "tool-python")], env)
    async with Client(transport) as client:
        result = await client.call_tool(tool, arguments)
    return result, transport


def text(result: Any) -> str:
    return result.content[-1].text


def assert_exited_cleanly(transport: SigtermStdio) -> None:
    assert transport.returncode == 0 and transport.exit_seconds is not None and transport.exit_seconds < 3, (
        transport.returncode, transport.exit_seconds, transport.stderr_text()[-2000:])
    assert group_members(transport.process.pid) == []  # nothing of the server's own is left behind
    assert "Traceback" not in transport.stderr_text()


async def test_a_sandbox_outlives_every_server_process_that_uses_it(env, root: Path, sandboxes: Path):
    (root / "data.csv").write_text("a,b\n1,2\n")
    created, first = await host_call(env, "create_sandbox", {})
    sandbox_id = created.structured_content["sandbox_id"]
    steps = [
        ("run_python_code", {"code_block": "import os\nx = 41\nos.getpid()"}, None),
        ("run_python_code", {"code_block": "x + 1"}, "42"),
        ("upload_file_from_local_to_sandbox", {"local_file_path": "data.csv"}, "/home/user/data.csv"),
        ("run_command", {"command": "cat data.csv"}, "1,2"),
        ("download_file_from_sandbox_to_local", {"sandbox_file_path": "data.csv"}, "out/data.csv"),
    ]
    transports = [first]
    for tool, arguments, expected in steps:
        result, transport = await host_call(env, tool, {"sandbox_id": sandbox_id, **arguments})
        assert not result.is_error, text(result)
        assert expected is None or expected in text(result), text(result)
        transports.append(transport)
    for transport in transports:
        assert_exited_cleanly(transport)
    assert (root / "out" / "data.csv").read_text() == "a,b\n1,2\n"
    services = services_of(sandboxes)
    assert len(services) == 1  # one service served all six processes
    # It is nobody's child and in no server's session: a host that ends a server's group or tree
    # leaves it alone.
    assert os.getsid(services[0]) == services[0]
    assert all(os.getpgid(services[0]) != t.process.pid for t in transports)


async def test_sigterm_mid_call_ends_the_server_at_once_and_the_sandbox_carries_on(env):
    created, _ = await host_call(env, "create_sandbox", {})
    sandbox_id = created.structured_content["sandbox_id"]
    await host_call(env, "run_python_code", {"sandbox_id": sandbox_id, "code_block": "kept = 'yes'"})
    transport = SigtermStdio([str(BIN / "tool-python")], env)
    async with Client(transport) as client:
        with anyio.move_on_after(1.0):  # the host gives up on the call and ends the process
            await run_code(client, sandbox_id, "import time\ntime.sleep(3)\n'slow'")
    assert_exited_cleanly(transport)
    result, after = await host_call(env, "run_python_code", {"sandbox_id": sandbox_id, "code_block": "kept"})
    assert not result.is_error and result.structured_content["result"] == "'yes'", text(result)
    assert result.structured_content["state_lost"] is False
    assert_exited_cleanly(after)


async def test_a_killed_service_is_restarted_by_the_next_call_which_says_the_sandbox_was_lost(env, sandboxes):
    created, _ = await host_call(env, "create_sandbox", {})
    sandbox_id = created.structured_content["sandbox_id"]
    [service] = services_of(sandboxes)
    os.kill(service, signal.SIGKILL)
    for _ in range(100):  # bubblewrap ends the sandbox with its parent
        if not processes_mentioning(sandbox_id):
            break
        await anyio.sleep(0.05)
    assert processes_mentioning(sandbox_id) == []
    result, transport = await host_call(env, "run_python_code", {"sandbox_id": sandbox_id, "code_block": "1"})
    assert result.is_error and text(result).startswith("[ERROR]: this sandbox was lost"), text(result)
    assert "create a new one with create_sandbox" in text(result)
    assert_exited_cleanly(transport)
    [restarted] = services_of(sandboxes)
    assert restarted != service
    again, _ = await host_call(env, "create_sandbox", {})
    assert not again.is_error, text(again)
    assert not list(sandboxes.glob(f"*/{sandbox_id}"))  # its folder went


async def test_a_service_ended_by_sigterm_ends_its_sandboxes_and_says_so(env, sandboxes):
    created, _ = await host_call(env, "create_sandbox", {})
    sandbox_id = created.structured_content["sandbox_id"]
    [service] = services_of(sandboxes)
    os.kill(service, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while (services_of(sandboxes) or processes_mentioning(sandbox_id)) and time.monotonic() < deadline:
        await anyio.sleep(0.05)
    assert services_of(sandboxes) == [] and processes_mentioning(sandbox_id) == []
    assert not list(sandboxes.glob("*/sandboxd.sock")) and not list(sandboxes.glob(f"*/{sandbox_id}"))
    result, _ = await host_call(env, "run_command", {"sandbox_id": sandbox_id, "command": "true"})
    assert result.is_error and "this sandbox was lost" in text(result), text(result)


async def test_a_service_killed_during_a_call_is_reported_in_that_call(in_process, sandboxes: Path):
    with python_server() as server:
        async with Client(server) as client:
            sandbox_id = await create_sandbox(client)
            results = []

            async def slow() -> None:
                results.append(await run_code(client, sandbox_id, "import time\ntime.sleep(5)"))

            async with anyio.create_task_group() as group:
                group.start_soon(slow)
                await anyio.sleep(0.8)
                [service] = services_of(sandboxes)
                os.kill(service, signal.SIGKILL)
            [during] = results
            after = await run_code(client, sandbox_id, "1")
    assert during.is_error and "the sandbox service stopped while this call ran" in text(during), text(during)
    assert after.is_error and "this sandbox was lost" in text(after), text(after)


async def test_the_service_leaves_when_it_has_had_no_sandboxes_and_no_servers_for_a_while(root, sandboxes):
    env = host_env(root, sandboxes, TOOLSUITE_SANDBOX_SERVICE_IDLE="1")
    created, _ = await host_call(env, "create_sandbox", {})
    sandbox_id = created.structured_content["sandbox_id"]
    [service] = services_of(sandboxes)
    await anyio.sleep(2.5)
    assert services_of(sandboxes) == [service]  # a live sandbox keeps it
    with mock.patch.dict(os.environ, env):
        SandboxClient().remove(sandbox_id)
    deadline = time.monotonic() + 10
    while services_of(sandboxes) and time.monotonic() < deadline:
        await anyio.sleep(0.1)
    assert services_of(sandboxes) == []
    assert not list(sandboxes.glob("*/sandboxd.sock"))  # the socket went with it
    result, transport = await host_call(env, "run_python_code", {"sandbox_id": sandbox_id, "code_block": "1"})
    assert "no such sandbox" in text(result)  # removed, not lost
    assert_exited_cleanly(transport)


async def test_each_sandbox_keeps_the_settings_of_the_server_that_created_it(env, sandboxes):
    short, _ = await host_call({**env, "TOOLSUITE_SANDBOX_CALL_TIMEOUT": "7"}, "create_sandbox", {})
    long, _ = await host_call({**env, "TOOLSUITE_SANDBOX_CALL_TIMEOUT": "9", "TOOLSUITE_SANDBOX_MEMORY_MB": "300"},
                              "create_sandbox", {"timeout": 120})
    assert len(services_of(sandboxes)) == 1  # one service, two kinds of sandbox
    assert short.structured_content["limits"]["wall_seconds_per_call"] == 7
    assert long.structured_content["limits"]["wall_seconds_per_call"] == 9
    assert long.structured_content["limits"]["memory_mb"] == 300
    assert long.structured_content["idle_timeout_seconds"] == 120
    # A call through a server with other settings still runs under the sandbox's own limits.
    slow, _ = await host_call(env, "run_python_code", {"sandbox_id": short.structured_content["sandbox_id"],
                                                       "code_block": "import time\ntime.sleep(30)"})
    assert slow.structured_content["error"]["name"] == "TimeoutError", text(slow)
    assert "7 s" in text(slow)


async def test_calls_in_two_sandboxes_run_side_by_side(in_process):
    with python_server() as server:
        async with Client(server) as client:
            ids = [await create_sandbox(client) for _ in range(2)]
            for each in ids:
                await run_code(client, each, "import time")
            started = time.monotonic()
            async with anyio.create_task_group() as group:
                for each in ids:
                    group.start_soon(run_code, client, each, "time.sleep(1.5)")
            elapsed = time.monotonic() - started
    assert elapsed < 2.6, elapsed


async def test_the_service_carries_no_secret_of_the_server_that_started_it(env, sandboxes):
    secret_env = {**env, "OPENAI_API_KEY": "sk-service-must-not-hold-this", "TOOLSUITE_VISION_API_KEY": "sk-nor-this",
                  "TOOLSUITE_HTTP_TOKENS": "token-nor-this"}
    result, _ = await host_call(secret_env, "run_python_code", {"sandbox_id": "sbx_none", "code_block": "1"})
    assert "no such sandbox" in text(result)
    [service] = services_of(sandboxes)
    environ = Path(f"/proc/{service}/environ").read_bytes()
    assert b"sk-service" not in environ and b"sk-nor" not in environ and b"token-nor" not in environ
    assert b"TOOLSUITE_ROOTS" not in environ  # nor anything else it does not use
