"""tool-python figures: sandboxes in the server process against sandboxes in the sandbox service, in one run.

Side by side, through the MCP in-memory client, calls interleaved so the machine's other load falls
on both alike:
- create_sandbox p50/p95 (10 each; target < 500 ms)
- warm run_python_code("1+1") p50/p95 (200 each; target p50 < 50 ms)
- the same call without MCP (the engine or the service's client alone): what the service hop costs
Then:
- per call through a host-style client (tests/host_client.py: a new stdio process per call, SIGTERM
  after): the first call of a fresh folder (it starts the service), create_sandbox and a warm
  run_python_code("1+1") (median of BENCH_HOST_RUNS)
- the syscall filter's cost (in the server process, where the bench can turn it off)
- a pandas group-by over ../shared/data/documents/Student Stress Factors.csv, upload included
- 8 sandboxes in use at once (each runs a numpy computation), total wall time
Baselines in the same run: a fresh `python -c` per call (what a stateless runner pays).
Run: `.venv/bin/python bench/python_sandbox.py`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
HOST_RUNS = int(os.environ.get("BENCH_HOST_RUNS", "5"))
CSV = Path("shared") / "data" / "documents" / "Student Stress Factors.csv"


def _data() -> Path:
    """The CSV beside the checkout, or beside the main checkout when this is a git worktree."""
    bases = [REPO.parent]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        common = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--path-format=absolute", "--git-common-dir"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
        if common:
            bases.append(Path(common).parent.parent)
    return next((base / CSV for base in bases if (base / CSV).exists()), REPO.parent / CSV)


DATA = _data()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(values: list[float]) -> str:
    return f"p50 {statistics.median(values) * 1000:7.2f} ms, p95 {percentile(values, 0.95) * 1000:7.2f} ms"


async def side_by_side(clients: dict, managers: dict) -> dict[str, str]:
    """create and warm run p50 in each place, interleaved; returns a warm sandbox id per place."""
    creates: dict[str, list[float]] = {name: [] for name in clients}
    ids: dict[str, list[str]] = {name: [] for name in clients}
    for _ in range(10):
        for name, client in clients.items():
            started = time.perf_counter()
            created = await client.call_tool("create_sandbox", {})
            creates[name].append(time.perf_counter() - started)
            ids[name].append(created.structured_content["sandbox_id"])
    info = created.structured_content
    print(f"isolation={info['isolation']} cgroups={info['cgroup_limits']} network={info['network']}\n")
    sid = {name: ids[name][0] for name in clients}
    for name, client in clients.items():
        for each in ids[name][1:]:  # nine idle sandboxes each would only add noise
            managers[name].remove(each)
        for _ in range(3):
            await client.call_tool("run_python_code", {"sandbox_id": sid[name], "code_block": "1+1"})
    rounds: dict[str, list[float]] = {name: [] for name in clients}
    for _ in range(200):
        for name, client in clients.items():
            started = time.perf_counter()
            result = await client.call_tool("run_python_code", {"sandbox_id": sid[name], "code_block": "1+1"})
            rounds[name].append(time.perf_counter() - started)
            assert result.structured_content["result"] == "2"
    engine: dict[str, list[float]] = {name: [] for name in clients}
    for _ in range(400):
        for name in clients:
            started = time.perf_counter()
            managers[name].run_code(sid[name], "1+1")
            engine[name].append(time.perf_counter() - started)
    print(f"{'':34s} {'in the server process':>32s}   {'in the sandbox service':>32s}")
    print(f"{'create_sandbox (10 each)':34s} {ms(creates['process']):>32s}   {ms(creates['service']):>32s}")
    print(f"{'run_python_code(1+1), MCP (200)':34s} {ms(rounds['process']):>32s}   {ms(rounds['service']):>32s}")
    print(f"{'run_code(1+1), no MCP (400)':34s} {ms(engine['process']):>32s}   {ms(engine['service']):>32s}")
    hop = statistics.median(engine["service"]) - statistics.median(engine["process"])
    print(f"the service hop: {hop * 1000:+.2f} ms per call at p50 (a unix-socket round trip and a JSON re-encoding)\n")
    return sid


async def host_style(work: Path) -> None:
    """Per call through a client that behaves like the MiroThinker host: spawn, call, SIGTERM, exit."""
    from tests.host_client import host_call, host_list
    from tests.sandboxes import host_env, stop_service

    root = work / "host-root"
    root.mkdir()
    env = host_env(root, work / "host-sandboxes")
    command = str(Path(sys.executable).parent / "tool-python")
    try:
        first = await host_call(command, "create_sandbox", {}, env, cwd=root)
        sid = first.structured["sandbox_id"]
        listings, creates, runs = [], [], []
        for _ in range(HOST_RUNS):
            started = time.perf_counter()
            await host_list(command, env, cwd=root)
            listings.append(time.perf_counter() - started)
        for _ in range(HOST_RUNS):
            creates.append((await host_call(command, "create_sandbox", {}, env, cwd=root)).seconds)
        for _ in range(HOST_RUNS):
            ran = await host_call(command, "run_python_code", {"sandbox_id": sid, "code_block": "1+1"}, env, cwd=root)
            assert ran.structured["result"] == "2", ran.text
            runs.append(ran.seconds)
        print(f"host-style, per call (a new tool-python process, spawn to exit), median of {HOST_RUNS}:")
        print(f"  a listing (start-up, no sandbox work): {statistics.median(listings) * 1000:.0f} ms")
        print(f"  first call of a fresh folder, which starts the service: {first.seconds * 1000:.0f} ms")
        print(f"  create_sandbox: {statistics.median(creates) * 1000:.0f} ms; warm run_python_code('1+1'): "
              f"{statistics.median(runs) * 1000:.0f} ms\n")
    finally:
        stop_service(env)


async def run() -> None:
    from mcp import Client

    from servers.python import sandbox as sandbox_module
    from servers.python.sandbox import SandboxManager
    from servers.python.server import build

    work = Path(tempfile.mkdtemp(prefix="bench-sandbox-"))
    os.environ["TOOLSUITE_ROOTS"] = str(work)
    os.environ["TOOLSUITE_SANDBOX_DIR"] = str(work / "sandboxes")
    servers = {"process": build(SandboxManager), "service": build()}
    try:
        async with Client(servers["process"]) as in_process, Client(servers["service"]) as through_service:
            clients = {"process": in_process, "service": through_service}
            managers = {name: server._sandbox_engine.get() for name, server in servers.items()}
            sid = await side_by_side(clients, managers)
            await host_style(work)

            # The syscall filter's cost, in the server process where the bench can turn it off.
            sandbox_module.USE_SYSCALL_FILTER = False
            try:
                bare = (await in_process.call_tool("create_sandbox", {})).structured_content["sandbox_id"]
            finally:
                sandbox_module.USE_SYSCALL_FILTER = True
            filtered_rounds: list[float] = []
            bare_rounds: list[float] = []
            for _ in range(3):
                for each in (sid["process"], bare):
                    await in_process.call_tool("run_python_code", {"sandbox_id": each, "code_block": "1+1"})
            for _ in range(200):
                for each, rounds_of in ((sid["process"], filtered_rounds), (bare, bare_rounds)):
                    started = time.perf_counter()
                    await in_process.call_tool("run_python_code", {"sandbox_id": each, "code_block": "1+1"})
                    rounds_of.append(time.perf_counter() - started)
            print(f"syscall filter: run_python_code('1+1') p50 {statistics.median(filtered_rounds) * 1000:.2f} ms "
                  f"with it, {statistics.median(bare_rounds) * 1000:.2f} ms without (200 interleaved calls each)")
            managers["process"].remove(bare)

            client, sid_service = through_service, sid["service"]
            if DATA.exists():
                shutil.copy(DATA, work / DATA.name)
                started = time.perf_counter()
                await client.call_tool("upload_file_from_local_to_sandbox",
                                       {"sandbox_id": sid_service, "local_file_path": DATA.name})
                result = await client.call_tool("run_python_code", {"sandbox_id": sid_service, "code_block": (
                    "import pandas as pd\n"
                    f"df = pd.read_csv({DATA.name!r})\n"
                    "key = df.columns[-1]\n"
                    "df.groupby(key).mean(numeric_only=True).round(2)")})
                elapsed = time.perf_counter() - started
                ok = result.structured_content["error"] is None
                if not ok:
                    print(result.content[-1].text)
                print(f"pandas group-by on '{DATA.name}' ({len(DATA.read_bytes())} bytes), upload + first pandas "
                      f"import + group-by: {elapsed * 1000:.0f} ms ({'ok' if ok else 'ERROR'})")
                again = time.perf_counter()
                await client.call_tool("run_python_code", {"sandbox_id": sid_service, "code_block":
                                                           "df.groupby(key).mean(numeric_only=True).round(2)"})
                repeat = (time.perf_counter() - again) * 1000
                print(f"  the same group-by again (pandas already imported): {repeat:.0f} ms")
            else:
                print(f"pandas group-by: skipped, {DATA} is missing (../shared/data is not in a user's clone)")

            code = ("import numpy as np\n"
                    "float(np.linalg.eigvalsh(np.random.rand(300, 300) @ np.random.rand(300, 300).T).max())")
            eight = [sid_service] + [(await client.call_tool("create_sandbox", {})).structured_content["sandbox_id"]
                                     for _ in range(7)]
            for each in eight:  # warm numpy imports first, so the concurrent figure is the work itself
                await client.call_tool("run_python_code", {"sandbox_id": each, "code_block": "import numpy"})
            results: list[bool] = []

            async def one(each: str) -> None:
                result = await client.call_tool("run_python_code", {"sandbox_id": each, "code_block": code})
                results.append(result.structured_content["error"] is None)

            started = time.perf_counter()
            async with anyio.create_task_group() as group:
                for each in eight:
                    group.start_soon(one, each)
            concurrent = time.perf_counter() - started
            started = time.perf_counter()
            await client.call_tool("run_python_code", {"sandbox_id": eight[0], "code_block": code})
            single = time.perf_counter() - started
            print(f"8 sandboxes at once (service): {concurrent * 1000:.0f} ms for 8 numpy jobs ({sum(results)}/8 ok); "
                  f"one job alone {single * 1000:.0f} ms; ratio {concurrent / single:.1f}x on 2 cores")
    finally:
        for server in servers.values():
            server._sandbox_engine.shutdown()
        shutil.rmtree(work, ignore_errors=True)

    cold = []
    for _ in range(10):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "print(1+1)"], check=True, capture_output=True)
        cold.append(time.perf_counter() - started)
    print(f"\nbaseline, same run: a fresh `python -c` per call = {statistics.median(cold) * 1000:.1f} ms median")


if __name__ == "__main__":
    anyio.run(run)
