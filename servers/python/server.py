"""tool-python: the MCP face of the local, stateful, locked-down sandboxes.

The sandboxes themselves live in the sandbox service (`daemon.py`), reached through `client.py`, so
that they outlive this process: agent hosts start a server process per call. Every transport uses
the service, so there is one way sandboxes run.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field

from servers import registry
from servers.python import files, outputs
from servers.python.client import SandboxClient
from servers.python.results import CodeResult, CommandResult
from shared.fetch import FetchLimits, fetch_to_file
from shared.inputs import display_path, resolve_local_path
from shared.server import (
    CREATES_LOCAL,
    RUNS_CODE,
    WRITES_FROM_NETWORK,
    WRITES_LOCAL,
    WRITES_NEW_HOST_FILE,
    Image,
    ToolResult,
    add_tool,
    create_server,
)

if TYPE_CHECKING:
    from servers.python.sandbox import SandboxManager

    Sandboxes = SandboxClient | SandboxManager

SandboxId = Annotated[str, Field(description="The id create_sandbox returned.", min_length=1, max_length=200)]
SandboxPath = Annotated[str, Field(description="A path inside the sandbox home (/home/user); a folder keeps the "
                                   "file's own name.", min_length=1, max_length=4096)]


# -- output models -------------------------------------------------------------------------------

class CreateOutput(BaseModel):
    sandbox_id: str
    idle_timeout_seconds: int = Field(description="Idle time after which the sandbox and its files are removed.")
    isolation: str = Field(description="'bwrap' (namespaces) or 'process' (weaker, operator's choice).")
    network: bool = Field(description="Whether code in the sandbox can reach the network.")
    limits: dict[str, int]
    cgroup_limits: list[str] = Field(description="Limits enforced by cgroups (others by rlimits).")
    home: str = "/home/user"


class ErrorInfo(BaseModel):
    name: str
    value: str
    traceback: str


class RunCodeOutput(BaseModel):
    sandbox_id: str
    stdout: str
    stderr: str
    result: str | None = Field(description="repr() of the last expression's value, when it is not None.")
    error: ErrorInfo | None
    images: int = Field(description="How many matplotlib figures are attached as PNG images.")
    stdout_chars_dropped: int
    stderr_chars_dropped: int
    seconds: float
    state_lost: bool = Field(description="True when earlier variables were lost (the interpreter was restarted).")
    notes: list[str]


class RunCommandOutput(BaseModel):
    sandbox_id: str
    exit_code: int | None
    stdout: str
    stderr: str
    timed_out: bool
    stdout_chars_dropped: int
    stderr_chars_dropped: int
    seconds: float
    notes: list[str]


class TransferOutput(BaseModel):
    sandbox_id: str
    sandbox_path: str
    local_path: str | None = None
    bytes: int


# -- the engine, one per server ------------------------------------------------------------------

class _Engine:
    """The sandboxes of this server, made on first use: the service's client (or, for the benchmark's
    comparison only, a manager in this process)."""

    def __init__(self, make: Callable[[], Sandboxes]) -> None:
        self._lock = threading.Lock()
        self._make = make
        self._sandboxes: Sandboxes | None = None

    def get(self) -> Sandboxes:
        with self._lock:
            if self._sandboxes is None:
                self._sandboxes = self._make()
            return self._sandboxes

    def shutdown(self) -> None:
        """End the sandboxes (tests and benchmarks: a server's exit leaves them to the service)."""
        with self._lock:
            if self._sandboxes is not None:
                self._sandboxes.shutdown()
                self._sandboxes = None


def _section(title: str, body: str, dropped: int = 0) -> str:
    note = f"\n[{dropped} more characters were cut]" if dropped else ""
    return f"[{title}]\n{body.rstrip()}{note}"


def render_code(result: CodeResult) -> str:
    parts = [f"note: {note}" for note in result.notes]
    if result.stdout or result.stdout_dropped:
        parts.append(_section("stdout", result.stdout, result.stdout_dropped))
    if result.stderr or result.stderr_dropped:
        parts.append(_section("stderr", result.stderr, result.stderr_dropped))
    if result.result is not None:
        parts.append(_section("result", result.result))
    if result.error:
        parts.append(_section("error", result.error["traceback"] or f"{result.error['name']}: {result.error['value']}"))
    if result.images:
        parts.append(f"[figures]\n{len(result.images)} PNG image(s) attached")
    if not parts:
        parts.append("(no output)")
    return "\n\n".join(parts)


def render_command(result: CommandResult) -> str:
    parts = [f"note: {note}" for note in result.notes]
    parts.append(f"[exit code] {result.exit_code if result.exit_code is not None else 'none (killed)'}")
    if result.stdout or result.stdout_dropped:
        parts.append(_section("stdout", result.stdout, result.stdout_dropped))
    if result.stderr or result.stderr_dropped:
        parts.append(_section("stderr", result.stderr, result.stderr_dropped))
    return "\n\n".join(parts)


def build(sandboxes: Callable[[], Sandboxes] = SandboxClient):
    import base64

    engine = _Engine(sandboxes)
    server = create_server(
        registry.name_of(__name__),
        "Runs Python (stateful, like a notebook) and shell commands in local sandboxes with no network, a "
        "private home at /home/user and CPU, memory, process, file and time limits.",
    )
    server._sandbox_engine = engine  # type: ignore[attr-defined]  # tests shut it down

    def create_sandbox(
        timeout: Annotated[int, Field(description="Seconds of inactivity after which the sandbox and its files "
                                      "are removed (60-86400).", ge=60, le=86400)] = 600,
    ) -> ToolResult:
        """Create an isolated sandbox and return its id.

        The sandbox has a private home at /home/user (the only writable place besides /tmp; each holds
        at most TOOLSUITE_SANDBOX_HOME_QUOTA_MB, 1024 MB by default), a read-only system with Python
        and the data packages (numpy, pandas, matplotlib, scipy when installed), no network, and
        limits on CPU time, memory, processes, file size and wall time per call. Python state
        persists between run_python_code calls of one sandbox. Idle sandboxes expire after `timeout`
        seconds and their files are deleted.
        """
        sandbox = engine.get().create(float(timeout)).info()
        data = CreateOutput(sandbox_id=sandbox.id, idle_timeout_seconds=timeout, isolation=sandbox.mode,
                            network=sandbox.network, limits=sandbox.limits, cgroup_limits=sandbox.cgroup_limits)
        text = f"Sandbox created with sandbox_id: {sandbox.id}"
        if sandbox.mode == "process":
            text += "\n(warning: weak isolation mode 'process': code can read the server's files)"
        return ToolResult(text=text, data=data)

    def run_python_code(
        code_block: Annotated[str, Field(description="Python code to run. Variables, imports and open files "
                                         "persist between calls of the same sandbox; the value of a final "
                                         "expression is returned.", min_length=1, max_length=1_000_000)],
        sandbox_id: SandboxId,
    ) -> ToolResult:
        """Run Python in the sandbox's persistent interpreter (like a notebook cell).

        Returns stdout, stderr, the value of the last expression, the error with its traceback, and
        matplotlib figures as PNG images. Output beyond 50,000 characters per stream is cut with a
        note. Processes the code starts end when the call ends (use them within one cell); threads
        pause between calls. A call that passes the wall-clock limit (TOOLSUITE_SANDBOX_CALL_TIMEOUT,
        120 s) is killed with all its processes; the next call then starts a fresh interpreter and
        says state was lost.
        """
        result = engine.get().run_code(sandbox_id, code_block)
        error = ErrorInfo(**result.error) if result.error else None
        data = RunCodeOutput(sandbox_id=sandbox_id, stdout=result.stdout, stderr=result.stderr, result=result.result,
                             error=error, images=len(result.images), stdout_chars_dropped=result.stdout_dropped,
                             stderr_chars_dropped=result.stderr_dropped, seconds=result.seconds,
                             state_lost=result.state_lost, notes=result.notes)
        images = [Image(base64.b64decode(png), "image/png") for png in result.images]
        return ToolResult(text=render_code(result), data=data, images=images)

    def run_command(
        command: Annotated[str, Field(description="A shell command (run by /bin/sh -c in /home/user).",
                                      min_length=1, max_length=100_000)],
        sandbox_id: SandboxId,
    ) -> ToolResult:
        """Run a shell command in the sandbox; returns the exit code, stdout and stderr.

        The command runs once (no automatic retries) under the sandbox's limits and returns when the
        shell exits; background processes it leaves (`&`, nohup, setsid) are killed then. A command
        that passes the wall-clock limit is killed with its children.
        """
        result = engine.get().run_command(sandbox_id, command)
        data = RunCommandOutput(sandbox_id=sandbox_id, exit_code=result.exit_code, stdout=result.stdout,
                                stderr=result.stderr, timed_out=result.timed_out,
                                stdout_chars_dropped=result.stdout_dropped, stderr_chars_dropped=result.stderr_dropped,
                                seconds=result.seconds, notes=result.notes)
        return ToolResult(text=render_command(result), data=data)

    def upload_file_from_local_to_sandbox(
        sandbox_id: SandboxId,
        local_file_path: Annotated[str, Field(description="A host file inside the allowed roots (TOOLSUITE_ROOTS).",
                                              min_length=1, max_length=4096)],
        sandbox_file_path: SandboxPath = "/home/user",
    ) -> ToolResult:
        """Copy a host file (inside the allowed roots) into the sandbox home; returns its sandbox path."""
        source = resolve_local_path(local_file_path)
        files.sandbox_relative(sandbox_file_path)  # a bad target is refused before anything is opened
        limit = files.max_transfer_bytes()
        # Opened here, once, without following a last-moment symlink or waiting on a FIFO; the
        # sandbox service gets the descriptor, never the path.
        fd, _size = files.open_host_file(source, display_path(source), limit)
        try:
            path, size = engine.get().put_file(sandbox_id, fd, sandbox_file_path, source.name, limit)
        finally:
            os.close(fd)
        return ToolResult(text=f"File uploaded to {path} ({size} bytes)",
                          data=TransferOutput(sandbox_id=sandbox_id, sandbox_path=path, bytes=size))

    def download_file_from_internet_to_sandbox(
        sandbox_id: SandboxId,
        url: Annotated[str, Field(description="An http(s) URL. The host fetches it (size and time limits, no "
                                  "private addresses); the sandbox itself needs no network.",
                                  min_length=1, max_length=8192)],
        sandbox_file_path: SandboxPath = "/home/user",
    ) -> ToolResult:
        """Download a URL into the sandbox home through the server's safe fetcher."""
        manager = engine.get()
        manager.get(sandbox_id)  # fail fast on a bad id before fetching anything
        fetched = fetch_to_file(url, FetchLimits())
        try:
            name = files.name_from_url(url)
            limit = files.max_transfer_bytes()
            fd, _size = files.open_host_file(fetched.path, f"the download {name!r}", limit)
        finally:
            fetched.remove()  # the open descriptor is all that is needed from here on
        try:
            path, _size = manager.put_file(sandbox_id, fd, sandbox_file_path, name, limit)
        finally:
            os.close(fd)
        return ToolResult(text=f"Downloaded {url} to {path} ({fetched.size} bytes)",
                          data=TransferOutput(sandbox_id=sandbox_id, sandbox_path=path, bytes=fetched.size))

    def download_file_from_sandbox_to_local(
        sandbox_id: SandboxId,
        sandbox_file_path: SandboxPath,
        local_filename: Annotated[str | None, Field(description="Name to save as (folders are stripped); an "
                                                    "existing file is never overwritten.", max_length=255)] = None,
    ) -> ToolResult:
        """Copy a file out of the sandbox into the output folder on the host (TOOLSUITE_OUTPUT_DIR)."""
        parts = files.sandbox_relative(sandbox_file_path)
        limit = files.max_transfer_bytes()
        with outputs.OutputFolder() as out:
            source = engine.get().open_file(sandbox_id, sandbox_file_path, limit)
            try:
                shown, size = out.save(source, local_filename or (parts[-1] if parts else "file"), limit)
            finally:
                os.close(source)
        return ToolResult(text=f"File downloaded to {shown} ({size} bytes)",
                          data=TransferOutput(sandbox_id=sandbox_id, sandbox_path=sandbox_file_path,
                                              local_path=shown, bytes=size))

    tools: list[tuple[Any, str, type[BaseModel], ToolAnnotations]] = [
        (create_sandbox, "Create a sandbox", CreateOutput, CREATES_LOCAL),
        (run_python_code, "Run Python code", RunCodeOutput, RUNS_CODE),
        (run_command, "Run a shell command", RunCommandOutput, RUNS_CODE),
        (upload_file_from_local_to_sandbox, "Upload a file to a sandbox", TransferOutput, WRITES_LOCAL),
        (download_file_from_internet_to_sandbox, "Download a URL into a sandbox", TransferOutput,
         WRITES_FROM_NETWORK),
        (download_file_from_sandbox_to_local, "Download a file from a sandbox", TransferOutput,
         WRITES_NEW_HOST_FILE),
    ]
    for fn, title, output, hints in tools:
        add_tool(server, fn, title=title, output=output, annotations=hints)
    return server

