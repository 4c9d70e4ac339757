"""The server factory: an `MCPServer` with the suite's conventions, so server modules only declare tools.

Conventions applied to every tool:
- the function returns a `ToolResult` (text for the model, structured data matching the declared
  output model, optional images); the tool publishes that model as its `outputSchema`;
- the content ends with one text block that carries the whole answer, images before it: agent hosts
  such as MiroThinker's tool manager read only the last block's text;
- any exception becomes `isError: true` with a message from `shared.errors.describe`, its text
  starting with the server's failure marker (`Error: `), since some hosts drop `isError`;
- argument validation errors and unknown tools get short, specific messages;
- a hard server-side timeout; sync functions run in worker threads;
- the text is held to the output budget, with a visible note when cut;
- annotations are always given explicitly.
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import anyio
import anyio.from_thread
import anyio.to_thread
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, ContentBlock, ImageContent, TextContent, ToolAnnotations
from pydantic import BaseModel, ValidationError

from shared import budget, settings
from shared.errors import describe, echoing, mark_failure
from shared.settings import BadSetting

log = logging.getLogger("toolsuite.server")

VERSION = "0.1.0"


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def _log_level() -> str:
    try:
        return settings.choice("TOOLSUITE_LOG_LEVEL", LOG_LEVELS, "info").upper()
    except BadSetting as exc:
        # Logging is set up before any tool can answer, and a server must start whatever its settings.
        sys.stderr.write(f"{exc}; logging at INFO\n")
        return "INFO"


def configure_logging() -> str:
    """Logs go to stderr, never stdout: stdout carries the protocol on stdio. Returns the level set."""
    level = _log_level()
    root = logging.getLogger()
    if not any(getattr(h, "_toolsuite", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler._toolsuite = True  # type: ignore[attr-defined]
        root.handlers = [handler]
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return level


def _annotations(*, read_only: bool = True, destructive: bool = False, idempotent: bool = True,
                 open_world: bool = False) -> ToolAnnotations:
    """All four hints, always given, so no host falls back on the protocol's defaults for a missing one
    (not read-only, destructive, not idempotent, open world)."""
    return ToolAnnotations(read_only_hint=read_only, destructive_hint=destructive, idempotent_hint=idempotent,
                           open_world_hint=open_world)


# Annotation presets: what each kind of tool promises a host, said as how it differs from a tool
# that only reads local data.
READ_ONLY_LOCAL = _annotations()
READ_ONLY_OPEN = _annotations(open_world=True)
REMOTE_MODEL = _annotations(idempotent=False, open_world=True)
# Tools that change state (tool-python's sandboxes): making a new thing, running code in it, writing
# into it (from the host or from the network), writing a new file on the host.
CREATES_LOCAL = _annotations(read_only=False, idempotent=False)
RUNS_CODE = _annotations(read_only=False, destructive=True, idempotent=False)
WRITES_LOCAL = _annotations(read_only=False, destructive=True)
WRITES_FROM_NETWORK = _annotations(read_only=False, destructive=True, open_world=True)
WRITES_NEW_HOST_FILE = _annotations(read_only=False, idempotent=False)


@dataclass
class Image:
    data: bytes
    mime: str = "image/png"


@dataclass
class ToolResult:
    """What a tool function returns: text for the model plus structured data."""

    text: str
    data: BaseModel | dict[str, Any] | None = None
    images: list[Image] = field(default_factory=list)
    is_error: bool = False

    def to_call_result(self, max_tokens: int, server: str | None = None) -> CallToolResult:
        import base64

        text = mark_failure(self.text, server) if self.is_error else self.text
        text, _cut = budget.fit_text(text, max_tokens)
        content: list[ContentBlock] = [
            ImageContent(type="image", data=base64.b64encode(image.data).decode("ascii"), mime_type=image.mime)
            for image in self.images
        ]
        content.append(TextContent(type="text", text=text))  # last: hosts that read one block read this one
        structured: dict[str, Any] | None
        structured = self.data.model_dump(mode="json", by_alias=True) if isinstance(self.data, BaseModel) else self.data
        return CallToolResult(content=content, structured_content=structured, is_error=self.is_error)


def error_result(message: str, server: str | None = None) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=mark_failure(message, server))], is_error=True)


class Progress:
    """Progress notifications for the current call; a no-op when the client did not ask for them.

    Usable from the event loop (`await progress.report(...)`) and from a worker thread (`progress(...)`
    or `progress.report_sync(...)`), throttled so long loops do not flood the client.
    """

    def __init__(self, ctx: Context | None, min_interval: float = 0.25) -> None:
        self._ctx = ctx
        self._min_interval = min_interval
        self._last = 0.0

    def _due(self, done: float, total: float | None) -> bool:
        now = time.monotonic()
        if total is not None and done >= total:
            return True
        if now - self._last < self._min_interval:
            return False
        self._last = now
        return True

    async def report(self, done: float, total: float | None = None, message: str | None = None) -> None:
        if self._ctx is None or not self._due(done, total):
            return
        try:
            await self._ctx.report_progress(done, total, message)
        except Exception:  # a client that went away must not fail the work
            log.debug("progress notification failed", exc_info=True)

    def report_sync(self, done: float, total: float | None = None, message: str | None = None) -> None:
        if self._ctx is None or not self._due(done, total):
            return
        try:
            anyio.from_thread.run(self._ctx.report_progress, done, total, message)
        except Exception:
            log.debug("progress notification from a worker thread failed", exc_info=True)

    __call__ = report_sync  # a Progress is the `shared.worker.ProgressFn` engines call from their worker thread


def _format_validation_error(tool: str, exc: ValidationError) -> str:
    problems = []
    for error in exc.errors()[:8]:
        where = ".".join(str(part) for part in error.get("loc", ())) or "arguments"
        kind = error.get("type", "")
        message = "required field is missing" if kind == "missing" else error.get("msg", "invalid value")
        problems.append(f"{where}: {message}")
    return f"invalid arguments for {tool}: " + "; ".join(problems)


class SuiteServer(MCPServer):
    """An `MCPServer` whose argument and unknown-tool errors read well to an agent."""

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        known = [tool.name for tool in await self.list_tools()]
        if name not in known:
            return error_result(f"unknown tool {name!r}; this server's tools are: {', '.join(known)}", self.name)
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if isinstance(exc.__cause__, ValidationError):
                return error_result(_format_validation_error(name, exc.__cause__), self.name)
            return error_result(describe(exc.__cause__ or exc, action=name), self.name)


def create_server(name: str, instructions: str) -> SuiteServer:
    level = configure_logging()
    return SuiteServer(name=name, instructions=instructions, version=VERSION, log_level=level)


ToolFunction = Callable[..., ToolResult | Awaitable[ToolResult]]


def add_tool(
    server: MCPServer,
    fn: ToolFunction,
    *,
    output: type[BaseModel],
    annotations: ToolAnnotations,
    title: str,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
) -> None:
    """Register `fn` with the suite's conventions (see the module docstring)."""
    tool_name = name or fn.__name__
    signature = inspect.signature(fn, eval_str=True)
    is_async = inspect.iscoroutinefunction(fn)

    @functools.wraps(fn)
    async def run(**kwargs: Any) -> CallToolResult:
        with echoing(kwargs.values()):  # failure texts may quote the caller's own arguments back
            return await call(kwargs)

    async def call(kwargs: dict[str, Any]) -> CallToolResult:
        try:
            limit = timeout or settings.number("TOOLSUITE_TOOL_TIMEOUT", 1200, minimum=1)
            max_tokens = settings.max_output_tokens()
        except BadSetting as exc:
            return error_result(describe(exc, action=tool_name), server.name)
        call_kwargs = dict(kwargs)
        try:
            with anyio.fail_after(limit):
                if is_async:
                    result = await fn(**call_kwargs)
                else:
                    result = await anyio.to_thread.run_sync(
                        functools.partial(fn, **call_kwargs), abandon_on_cancel=True
                    )
        except TimeoutError:
            return error_result(
                f"{tool_name} did not finish within {limit:g} s (TOOLSUITE_TOOL_TIMEOUT); try a smaller input",
                server.name,
            )
        except anyio.get_cancelled_exc_class():
            raise
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            return error_result(describe(exc, action=tool_name), server.name)
        if not isinstance(result, ToolResult):
            log.error("tool %s returned %r instead of a ToolResult", tool_name, type(result))
            return error_result(f"internal error in {tool_name} (bad result type)", server.name)
        return result.to_call_result(max_tokens, server.name)

    parameters = list(signature.parameters.values())
    run.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=parameters, return_annotation=Annotated[CallToolResult, output]
    )
    hints = {p.name: p.annotation for p in parameters if p.annotation is not inspect.Parameter.empty}
    hints["return"] = Annotated[CallToolResult, output]
    run.__annotations__ = hints
    del run.__wrapped__  # the SDK must see the wrapper's signature, not the original's

    server.add_tool(
        run,
        name=tool_name,
        title=title,
        description=description or inspect.cleandoc(fn.__doc__ or ""),
        annotations=annotations,
        structured_output=True,
    )
