"""Serving a server over stdio (the default) or Streamable HTTP at `/mcp` with `/healthz`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from mcp.server import MCPServer

from shared import settings, shutdown

log = logging.getLogger("toolsuite.transport")

DEFAULT_HOST = "127.0.0.1"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def transport_security(host: str, port: int):
    """Host and Origin checks (DNS-rebinding protection) for the HTTP transport."""
    from mcp.server.transport_security import TransportSecuritySettings

    hosts = [f"{h}:*" for h in LOCAL_HOSTS] + list(LOCAL_HOSTS)
    origins = [f"http://{h}:*" for h in LOCAL_HOSTS] + [f"https://{h}:*" for h in LOCAL_HOSTS]
    if host not in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "::"):
        hosts += [host, f"{host}:{port}"]
    for extra in settings.text("TOOLSUITE_HTTP_ALLOWED_HOSTS").split(","):
        if extra.strip():
            hosts.append(extra.strip())
    for extra in settings.text("TOOLSUITE_HTTP_ALLOWED_ORIGINS").split(","):
        if extra.strip():
            origins.append(extra.strip())
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts,
                                     allowed_origins=origins)


def http_app(server: MCPServer, host: str, port: int, stateless: bool = False):
    """The Starlette app: `/mcp` for the protocol, `/healthz` for load balancers and compose."""
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    @server.custom_route("/healthz", methods=["GET"])
    async def healthz(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "server": server.name, "version": server.version})

    return server.streamable_http_app(
        streamable_http_path="/mcp",
        stateless_http=stateless,
        transport_security=transport_security(host, port),
        host=host,
    )


async def serve_http(server: MCPServer, host: str, port: int, stateless: bool = False) -> None:
    import uvicorn

    app = http_app(server, host, port, stateless)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    log.info("%s serving Streamable HTTP at http://%s:%d/mcp", server.name, host, port)
    await uvicorn.Server(config).serve()


def argument_parser(name: str, default_port: int) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=name, description=f"The {name} MCP server (stdio by default).")
    parser.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    parser.add_argument("--host", default=DEFAULT_HOST, help="HTTP bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=default_port, help=f"HTTP port (default {default_port})")
    parser.add_argument("--stateless", action="store_true",
                        help="HTTP without sessions, for replicas behind a load balancer")
    return parser


def run_server(name: str, default_port: int, build: Callable[[], MCPServer],
               argv: list[str] | None = None) -> None:
    """Entry point shared by every console script."""
    import anyio

    args = argument_parser(name, default_port).parse_args(argv)
    server = build()
    try:
        if args.transport == "stdio":
            shutdown.install()  # over HTTP, uvicorn handles SIGTERM with a graceful shutdown of its own
            anyio.run(server.run_stdio_async)
        else:
            anyio.run(serve_http, server, args.host, args.port, args.stateless)
    except KeyboardInterrupt:
        pass
    sys.exit(0)
