"""Time from process spawn to the `tools/list` answer over stdio, for every server (median of 5).

Target (SPEC section 2): under 1 s each on a 2-core machine. Run: `.venv/bin/python bench/startup.py`.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from servers.registry import SERVERS

BIN = Path(sys.executable).parent
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
TARGET = 1.0

INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
              "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                         "clientInfo": {"name": "bench", "version": "1"}}}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
LIST = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}


SDK_BASELINE = """
from mcp.server import MCPServer
server = MCPServer("baseline")
@server.tool()
def echo(text: str) -> str:
    \"\"\"Echo.\"\"\"
    return text
server.run()
"""


def time_once(command: str | list[str]) -> tuple[float, int]:
    started = time.perf_counter()
    argv = [command] if isinstance(command, str) else command
    process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert process.stdin and process.stdout
    # Everything is written at once, as a host does: the server answers as soon as it is ready.
    process.stdin.write(("\n".join(json.dumps(m) for m in (INITIALIZE, INITIALIZED, LIST)) + "\n").encode())
    process.stdin.flush()
    tools = -1
    for line in process.stdout:
        message = json.loads(line)
        if message.get("id") == 2:
            tools = len(message["result"]["tools"])
            break
    elapsed = time.perf_counter() - started
    process.stdin.close()
    process.wait(10)
    return elapsed, tools


def main() -> None:
    print(f"spawn -> tools/list answer over stdio, median of {RUNS} (target < {TARGET:.1f} s)\n")
    print(f"{'server':22s} {'tools':>5s} {'median s':>9s} {'min s':>7s} {'max s':>7s}  target")
    worst = 0.0
    for entry in SERVERS:
        times, tools = [], 0
        for _ in range(RUNS):
            elapsed, tools = time_once(str(BIN / entry.name))
            times.append(elapsed)
        median = statistics.median(times)
        worst = max(worst, median)
        verdict = "ok" if median < TARGET else "OVER"
        print(f"{entry.name:22s} {tools:5d} {median:9.3f} {min(times):7.3f} {max(times):7.3f}  {verdict}")
    bare = time_once_python_only()
    sdk = statistics.median(time_once([sys.executable, "-c", SDK_BASELINE])[0] for _ in range(RUNS))
    print(f"\nbaselines (same run): bare `python -c pass` = {bare:.3f} s; one-tool MCP SDK server = {sdk:.3f} s")
    print(f"worst server median = {worst:.3f} s = {worst / sdk:.2f}x the one-tool SDK server")


def time_once_python_only() -> float:
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


if __name__ == "__main__":
    main()
