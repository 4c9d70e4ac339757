"""An MCP client transport that runs a server the way agent hosts such as MiroThinker's tool manager
do: a new stdio process for every call, ended with SIGTERM while its stdin is still open.

Use it with the SDK's client: `async with Client(SigtermStdio([...], env)) as client: ...`; when the
block ends the process gets SIGTERM and the transport records how it exited (`returncode`,
`exit_seconds`), killing it only if it has not exited after `grace` seconds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from anyio.abc import Process
from mcp.shared.message import SessionMessage


class SigtermStdio:
    def __init__(self, command: list[str], env: dict[str, str], cwd: Path | None = None, grace: float = 10.0) -> None:
        self.command = command
        self.env = env
        self.cwd = cwd
        self.grace = grace
        self.process: Process | None = None
        self.returncode: int | None = None
        self.exit_seconds: float | None = None
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - read by stderr_text()
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> tuple[Any, Any]:
        return await self._stack.enter_async_context(self._run())

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.__aexit__(*exc_info)

    @contextlib.asynccontextmanager
    async def _run(self) -> AsyncIterator[tuple[Any, Any]]:
        self.process = process = await anyio.open_process(self.command, env=self.env, cwd=self.cwd,
                                                          stderr=self._stderr, start_new_session=True)
        read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](16)
        write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](16)

        async def reader() -> None:
            assert process.stdout is not None
            buffer = b""
            async with read_writer:
                with contextlib.suppress(anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
                    async for chunk in process.stdout:
                        lines = (buffer + chunk).split(b"\n")
                        buffer = lines.pop()
                        for line in lines:
                            if line.strip():
                                message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
                                await read_writer.send(SessionMessage(message))

        async def writer() -> None:
            assert process.stdin is not None
            async with write_reader:
                with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
                    async for message in write_reader:
                        data = message.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n"
                        await process.stdin.send(data.encode())

        async with anyio.create_task_group() as group:
            group.start_soon(reader)
            group.start_soon(writer)
            try:
                yield read_stream, write_stream
            finally:
                with anyio.CancelScope(shield=True):
                    await self._terminate(process)
                group.cancel_scope.cancel()

    async def _terminate(self, process: Process) -> None:
        started = time.perf_counter()
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)  # stdin stays open, as the host leaves it
        with anyio.move_on_after(self.grace):
            while process.returncode is None:
                await anyio.sleep(0.02)
        if process.returncode is None:
            process.kill()
            await process.wait()
            return
        self.returncode = process.returncode
        self.exit_seconds = time.perf_counter() - started

    def stderr_text(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")


def group_members(pgid: int) -> list[int]:
    """Live processes in a process group (the server's: the builder must not be one of them)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.getpgid(int(entry.name)) == pgid:
                    members.append(int(entry.name))
    return members


def builders_for(source: Path) -> list[int]:
    """Pids of detached tool-rag builders working on `source`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if b"servers.rag.builder" in argv and str(source).encode() in argv:
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(int(entry.name))
    return found
