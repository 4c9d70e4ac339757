"""Per-call time through a client that behaves like the MiroThinker agent host, beside a long-lived session.

The host (tests/host_client.py) starts a new stdio process for every call, initializes, calls, lists the
tools to validate the structured result, sends SIGTERM and waits for the exit: start-up is paid on every
call. A long-lived session pays it once. For each server, one representative call on the committed
fixtures (models: the fake OpenAI-compatible server on 127.0.0.1, so model latency is not in the
figures), in one run:

- host listing: a new process for `tools/list`, as the host lists each server;
- host call: median over BENCH_RUNS calls, each in a new process, spawn to exit;
- session first / warm: the same call in one process kept open, its first call (lazy engines load) and
  the median of the next BENCH_RUNS.

Disk caches (indexes, transcripts, video timelines) are filled by one unmeasured call first, so both
columns measure the same work. Run: `.venv/bin/python bench/host_calls.py`.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from servers.registry import SERVERS  # noqa: E402
from tests.fake_openai import FakeOpenAI  # noqa: E402
from tests.host_cases import BIN, CASES, HostRun, make_root  # noqa: E402
from tests.host_client import StdioSession, host_call, host_list  # noqa: E402
from tests.sandboxes import stop_service  # noqa: E402

RUNS = int(os.environ.get("BENCH_RUNS", "3"))


async def measure(run: HostRun, server: str) -> tuple[str, float, float, float, float]:
    case = next(c for c in CASES if c.server == server and not c.error)
    command, env = str(BIN / server), run.env(server)
    started = time.perf_counter()
    await host_list(command, env, cwd=run.root)
    listing = time.perf_counter() - started
    warmup = await host_call(command, case.tool, case.arguments, env, cwd=run.root)
    if warmup.host_error or warmup.is_error:
        raise SystemExit(f"{server} {case.tool} failed: {warmup.host_error or warmup.text}")
    host = []
    for _ in range(RUNS):
        host.append((await host_call(command, case.tool, case.arguments, env, cwd=run.root)).seconds)
    session = StdioSession([command], env, run.root)
    await session.start()
    try:
        timings = []
        for _ in range(RUNS + 1):
            started = time.perf_counter()
            await session.call_tool(case.tool, case.arguments)
            timings.append(time.perf_counter() - started)
    finally:
        await session.terminate()
        session.stderr_text()
    return case.tool, listing, statistics.median(host), timings[0], statistics.median(timings[1:])


async def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="bench-host-"))
    root, cache = make_root(base)
    fake = FakeOpenAI().start()
    run = HostRun(root, cache, fake.base_url, fake)
    from shared import transcription

    print(f"per call, seconds; host = new process per call (spawn to exit), median of {RUNS}; "
          f"session = one process kept open; speech: local model {transcription.local_model_name()} "
          f"(policy {transcription.policy()})\n")
    print(f"{'server':20s} {'tool':34s} {'host list':>9s} {'host call':>9s} {'sess 1st':>9s} "
          f"{'sess warm':>9s} {'host/warm':>9s}")
    try:
        for entry in SERVERS:
            tool, listing, host, first, warm = await measure(run, entry.name)
            ratio = host / warm if warm > 0 else float("inf")
            print(f"{entry.name:20s} {tool:34s} {listing:9.2f} {host:9.2f} {first:9.2f} {warm:9.3f} {ratio:8.0f}x",
                  flush=True)
    finally:
        fake.stop()
        stop_service(run.env("tool-python"))  # create_sandbox started tool-python's sandbox service


if __name__ == "__main__":
    anyio.run(main)
