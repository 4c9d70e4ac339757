"""The `toolsuite` command: list, call, serve and check the suite's servers."""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import sys
from typing import Any

from servers import registry


def _print(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


async def _list_tools(entry: registry.ServerEntry) -> list[dict[str, Any]]:
    from mcp import Client

    async with Client(entry.build(), mode="legacy") as client:
        listed = await client.list_tools()
    return [
        {
            "name": t.name,
            "title": t.title,
            "description": t.description,
            "inputSchema": t.input_schema,
            "outputSchema": t.output_schema,
            "annotations": t.annotations.model_dump(by_alias=True, exclude_none=True) if t.annotations else None,
        }
        for t in listed.tools
    ]


def cmd_list(args: argparse.Namespace) -> int:
    import anyio

    names = [args.server] if args.server else [e.name for e in registry.SERVERS]
    servers = []
    for name in names:
        entry = registry.entry(name)
        servers.append({"name": entry.name, "port": entry.port, "tools": anyio.run(_list_tools, entry)})
    if args.json:
        _print(json.dumps({"servers": servers}, ensure_ascii=False, indent=2))
        return 0
    for server in servers:
        _print(f"{server['name']}  (HTTP port {server['port']})")
        for tool in server["tools"]:
            first_line = (tool["description"] or "").strip().splitlines()[0] if tool["description"] else ""
            params = ", ".join(tool["inputSchema"].get("properties", {}))
            _print(f"  {tool['name']}({params})\n      {first_line}")
    return 0


def _parse_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _arguments(args: argparse.Namespace) -> dict[str, Any]:
    arguments: dict[str, Any] = {}
    if args.args_json:
        parsed = json.loads(args.args_json)
        if not isinstance(parsed, dict):
            raise SystemExit("--args-json must be a JSON object")
        arguments.update(parsed)
    for pair in args.arg or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--arg expects key=value, got {pair!r}")
        arguments[key] = _parse_value(value)
    return arguments


def _remote(url: str, token: str | None, statuses: list[int]) -> tuple[Any, Any]:
    """An HTTP client that sends `token` as a bearer header, and a Streamable HTTP transport over it."""
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    async def remember(response: Any) -> None:
        statuses.append(response.status_code)

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    # The SDK's own client timeouts: 30 s to connect, 300 s between bytes of a long call.
    http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300),
                              event_hooks={"response": [remember]})
    return http, streamable_http_client(url, http_client=http)


def _remote_failure(url: str, exc: BaseException, statuses: list[int], token: str | None) -> str:
    from shared.errors import leaf_exception, redact

    if 401 in statuses:
        hint = "the token was refused" if token else "it needs a token: --token or TOOLSUITE_CLIENT_TOKEN"
        return f"{url} answered 401 Unauthorized ({hint})"
    if 403 in statuses:
        return f"{url} answered 403 Forbidden (the token lacks a required scope)"
    leaf = leaf_exception(exc)
    return redact(f"could not call {url}: {type(leaf).__name__}: {leaf}")


def cmd_call(args: argparse.Namespace) -> int:
    import anyio
    from mcp import Client

    from shared import settings

    arguments = _arguments(args)
    token = args.token or settings.raw("TOOLSUITE_CLIENT_TOKEN")
    statuses: list[int] = []
    http: Any = contextlib.nullcontext()
    if args.url:
        http, target = _remote(args.url, token, statuses)
    else:
        target = registry.entry(args.server).build()

    async def progress(done: float, total: float | None, message: str | None) -> None:
        if not args.json:
            sys.stderr.write(f"[progress] {done}{'/' + str(total) if total else ''} {message or ''}\n")

    async def run() -> Any:
        async with http, Client(target, mode="legacy") as client:
            return await client.call_tool(args.tool, arguments, progress_callback=progress)

    try:
        result = anyio.run(run)
    except Exception as exc:
        if not args.url:
            raise
        sys.stderr.write(f"toolsuite: {_remote_failure(args.url, exc, statuses, token)}\n")
        return 2
    if args.json:
        _print(json.dumps({"isError": bool(result.is_error), "structuredContent": result.structured_content,
                           "content": [c.model_dump(by_alias=True, exclude_none=True) for c in result.content]},
                          ensure_ascii=False, indent=2))
    else:
        for block in result.content:
            if block.type == "text":
                _print(block.text)
            else:
                _print(f"[{block.type} content: {getattr(block, 'mime_type', '')}]")
    return 1 if result.is_error else 0


def cmd_serve(args: argparse.Namespace) -> int:
    import anyio

    from shared.auth import AuthConfigError
    from shared.transport import ExposureRefused, prepare_http, serve_http

    if args.server != "all":
        entry = registry.entry(args.server)
        argv = ["--transport", args.transport, "--host", args.host, "--port", str(args.port or entry.port)]
        argv += ["--stateless"] if args.stateless else []
        argv += ["--allow-unauthenticated"] if args.allow_unauthenticated else []
        entry.serve(argv)
        return 0
    if args.transport != "http":
        raise SystemExit("`serve all` needs --transport http (stdio serves one server per process)")
    base = args.port or registry.BASE_PORT
    servers = [(entry, entry.build(), base + offset) for offset, entry in enumerate(registry.SERVERS)]
    try:
        # Every check before any server binds, so a refusal leaves nothing half-started.
        for _entry, server, port in servers:
            prepare_http(server, args.host, port, allow_unauthenticated=args.allow_unauthenticated)
    except (ExposureRefused, AuthConfigError) as exc:
        sys.stderr.write(f"toolsuite: {exc}\n")
        return 2
    for entry, _server, port in servers:
        _print(f"{entry.name:22s} http://{args.host}:{port}/mcp")

    async def serve_all() -> None:
        async with anyio.create_task_group() as group:
            for _entry, server, port in servers:
                group.start_soon(functools.partial(serve_http, server, args.host, port, args.stateless,
                                                   allow_unauthenticated=args.allow_unauthenticated))

    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(serve_all)
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from shared.auth import new_token

    token, hashed = new_token()
    _print(f"token:  {token}\nserver: TOOLSUITE_HTTP_TOKENS={hashed}")
    sys.stderr.write("Give the token to the client (Authorization: Bearer <token>); the server needs only the "
                     "sha256: line.\n")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from servers.doctor import collect, render

    rows = collect()
    _print(json.dumps([row.__dict__ for row in rows], indent=2) if args.json else render(rows))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from shared import speech_models
    from shared.errors import ToolFailure

    if args.prepare and speech_models.installed(speech_models.BASE):
        try:
            folder = speech_models.path(speech_models.BASE)
        except ToolFailure as exc:
            sys.stderr.write(f"toolsuite: {exc}\n")
            return 1
        sys.stderr.write(f"multilingual speech model assembled and verified: {folder}\n")
    rows = speech_models.presence()
    if args.json:
        _print(json.dumps([row.__dict__ for row in rows], indent=2))
    else:
        for row in rows:
            _print(f"{row.key:8s} {'installed' if row.installed else 'MISSING':9s}  {row.label}\n"
                   f"{'':19s}{row.detail}")
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    from shared import settings

    if args.markdown:
        _print(settings.markdown_table())
        return 0
    for variable in settings.ALL_VARIABLES:
        value = settings.raw(variable.name)
        shown = "(set)" if value and variable.secret else (value or f"(default: {variable.default or 'unset'})")
        _print(f"{variable.name:38s} {shown}")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="toolsuite", description="Run and inspect the toolsuite MCP servers.")
    sub = top.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="every server with its tools, as the servers report them")
    p.add_argument("server", nargs="?", help="only this server")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("call", help="call a tool through the real MCP path (in-memory, or a server's --url)")
    p.add_argument("server", help="a server name (with --url: only a label)")
    p.add_argument("tool")
    p.add_argument("--url", help="call a running server over Streamable HTTP, e.g. http://127.0.0.1:8101/mcp")
    p.add_argument("--token", help="bearer token for --url (TOOLSUITE_CLIENT_TOKEN keeps it out of the process list)")
    p.add_argument("--arg", action="append", metavar="KEY=VALUE", help="one argument; JSON values parsed")
    p.add_argument("--args-json", metavar="JSON", help="all arguments as one JSON object")
    p.add_argument("--json", action="store_true", help="print structuredContent and isError")
    p.set_defaults(func=cmd_call)

    p = sub.add_parser("serve", help="serve one server, or all of them over HTTP on consecutive ports")
    p.add_argument("server", help="a server name or 'all'")
    p.add_argument("--transport", choices=["stdio", "http"], default=None)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--stateless", action="store_true", help="HTTP without sessions, for replicas")
    p.add_argument("--allow-unauthenticated", action="store_true",
                   help="serve on a non-loopback address without tokens (something in front must authenticate)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("token", help="a new random bearer token and the sha256: form a server is given")
    p.set_defaults(func=cmd_token)

    p = sub.add_parser("doctor", help="what is installed and configured for each server")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("models", help="the local speech models: installed or not, assembled or not")
    p.add_argument("--prepare", action="store_true",
                   help="assemble and verify models shipped in parts now (else done on first use)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("settings", help="the TOOLSUITE_* variables and their current values")
    p.add_argument("--markdown", action="store_true", help="print the README's table")
    p.set_defaults(func=cmd_settings)
    return top


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.command == "serve" and args.transport is None:
        args.transport = "http" if args.server == "all" else "stdio"
    try:
        code = args.func(args)
    except KeyError as exc:
        sys.stderr.write(f"toolsuite: {exc.args[0]}\n")
        code = 2
    except BrokenPipeError:
        code = 0
    except json.JSONDecodeError as exc:
        sys.stderr.write(f"toolsuite: invalid JSON: {exc}\n")
        code = 2
    sys.exit(code)


if __name__ == "__main__":
    main()
