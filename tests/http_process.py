"""Real server processes on 127.0.0.1 for the HTTP tests: spawn, wait for /healthz, read back stderr."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import BIN, REPO

SLOW_SERVER = REPO / "tests" / "slow_server.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment(**extra: str) -> dict[str, str]:
    """The test's environment (already cleaned by conftest) without model keys, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "REASONING_", "VISION_"))}
    env.update(extra)
    return env


@dataclass
class Running:
    process: subprocess.Popen
    base: str
    log_path: Path

    @property
    def url(self) -> str:
        return f"{self.base}/mcp"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def command(server: str) -> list[str]:
    return [sys.executable, str(SLOW_SERVER)] if server == "tool-slow" else [str(BIN / server)]


def start(server: str, tmp_path: Path, *args: str, port: int | None = None, env: dict[str, str] | None = None,
          host: str = "127.0.0.1") -> Running:
    """`server --transport http` on a free port, returned once /healthz answers."""
    port = port or free_port()
    log_path = tmp_path / f"{server}-{port}.log"
    with open(log_path, "wb") as stderr:
        process = subprocess.Popen([*command(server), "--transport", "http", "--host", host, "--port", str(port),
                                    *args], stdout=subprocess.DEVNULL, stderr=stderr, env=env or environment(),
                                   cwd=str(REPO))
    running = Running(process, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{server} exited with {process.returncode}: {running.log()[-2000:]}")
        try:
            if httpx.get(f"{running.base}/healthz", timeout=1).status_code == 200:
                return running
        except httpx.HTTPError:
            time.sleep(0.1)
    running.stop()
    raise AssertionError(f"{server} did not come up: {running.log()[-2000:]}")
