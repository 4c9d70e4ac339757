"""Serving a server over stdio (the default) or Streamable HTTP at `/mcp` with `/healthz`.

Over HTTP a server is an OAuth 2.1 resource server when tokens are configured (`shared.auth`):
the SDK answers 401 with `WWW-Authenticate` and serves the RFC 9728 metadata document, while
`/healthz` stays open for load balancers. A server bound to a non-loopback address without auth
refuses to start unless the operator explicitly allows it. Tool calls pass the admission gate
(`shared.admission`) on every transport.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from typing import Any

from mcp.server import MCPServer

from shared import admission, auth, settings, shutdown

log = logging.getLogger("toolsuite.transport")

DEFAULT_HOST = "127.0.0.1"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")
MCP_PATH = "/mcp"


class ExposureRefused(Exception):
    """A non-loopback bind without authentication that the operator did not allow."""


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


def default_public_url(host: str, port: int) -> str:
    """Where clients reach `/mcp` when TOOLSUITE_HTTP_PUBLIC_URL does not say."""
    name = host
    if host in ("0.0.0.0", "::", ""):
        name = "localhost"  # a wildcard bind has no name of its own; loopback is the one sure route
    elif ":" in host and not host.startswith("["):
        name = f"[{host}]"
    return f"http://{name}:{port}{MCP_PATH}"


def check_exposure(host: str, *, auth_configured: bool, allow_unauthenticated: bool) -> None:
    """Refuse (or loudly allow) a server that anyone on the network could call without a token."""
    if auth_configured or auth.is_loopback_host(host):
        return
    if not (allow_unauthenticated or settings.flag("TOOLSUITE_HTTP_ALLOW_UNAUTHENTICATED")):
        raise ExposureRefused(
            f"refusing to serve on {host} without authentication: anyone who can reach this address could "
            "run the tools. Set TOOLSUITE_HTTP_TOKENS (or TOOLSUITE_HTTP_TOKENS_FILE, or TOOLSUITE_HTTP_JWT_ISSUER), "
            "bind to 127.0.0.1, or, if something in front already authenticates callers, pass "
            "--allow-unauthenticated (TOOLSUITE_HTTP_ALLOW_UNAUTHENTICATED=1)"
        )
    banner = "!" * 78
    log.warning("%s", banner)
    log.warning("SERVING WITHOUT AUTHENTICATION on %s: anyone who can reach it can run the tools.", host)
    log.warning("This was allowed explicitly (--allow-unauthenticated / TOOLSUITE_HTTP_ALLOW_UNAUTHENTICATED).")
    log.warning("%s", banner)


_FROM_SETTINGS = object()


def http_app(server: MCPServer, host: str, port: int, stateless: bool = False, *,
             public_url: str | None = None, auth_setup: Any = _FROM_SETTINGS):
    """The Starlette app: `/mcp` for the protocol, `/healthz` for load balancers and compose.

    `auth_setup` is what `prepare_http` returned (None: no authentication); by default it is read
    from the settings.
    """
    from mcp.server.transport_security import TransportSecurityMiddleware
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    @server.custom_route("/healthz", methods=["GET"])
    async def healthz(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "server": server.name, "version": server.version})

    if auth_setup is _FROM_SETTINGS:
        auth_setup = auth.from_settings(public_url or default_public_url(host, port))
    if auth_setup is not None:
        # MCPServer takes a verifier only in its constructor, but the resource URL the metadata
        # document names is known only now, when the transport starts: hand both to the SDK here.
        server.settings.auth = auth_setup.settings
        server._token_verifier = auth_setup.verifier
        log.info("%s requires a bearer token (%s); metadata for %s", server.name, auth_setup.summary,
                 auth_setup.settings.resource_server_url)
    gate = admission.install(server)
    security = transport_security(host, port)
    app = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        stateless_http=stateless,
        transport_security=security,
        host=host,
    )
    # Appended user middleware runs innermost, after the SDK's authentication middleware has
    # identified the caller: an unauthenticated flood gets 401, never a hint about load.
    app.user_middleware.append(Middleware(admission.HttpBusyMiddleware, gate=gate, path=MCP_PATH,
                                          auth_required=auth_setup is not None,
                                          security=TransportSecurityMiddleware(security)))
    return app


def prepare_http(server: MCPServer, host: str, port: int, *, public_url: str | None = None,
                 allow_unauthenticated: bool = False) -> auth.AuthSetup | None:
    """Checks that must pass before binding: auth settings usable, exposure allowed."""
    setup = auth.from_settings(public_url or default_public_url(host, port))
    check_exposure(host, auth_configured=setup is not None, allow_unauthenticated=allow_unauthenticated)
    return setup


async def serve_http(server: MCPServer, host: str, port: int, stateless: bool = False, *,
                     public_url: str | None = None, allow_unauthenticated: bool = False) -> None:
    import uvicorn

    setup = prepare_http(server, host, port, public_url=public_url, allow_unauthenticated=allow_unauthenticated)
    app = http_app(server, host, port, stateless, public_url=public_url, auth_setup=setup)
    # Past this many open connections uvicorn answers 503 itself: the last bound on memory.
    connections = int(settings.number("TOOLSUITE_HTTP_MAX_CONNECTIONS", 1000, minimum=1))
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on",
                            limit_concurrency=connections)
    log.info("%s serving Streamable HTTP at http://%s:%d%s", server.name, host, port, MCP_PATH)
    await uvicorn.Server(config).serve()


def argument_parser(name: str, default_port: int) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=name, description=f"The {name} MCP server (stdio by default).")
    parser.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    parser.add_argument("--host", default=DEFAULT_HOST, help="HTTP bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=default_port, help=f"HTTP port (default {default_port})")
    parser.add_argument("--stateless", action="store_true",
                        help="HTTP without sessions, for replicas behind a load balancer")
    parser.add_argument("--allow-unauthenticated", action="store_true",
                        help="serve HTTP on a non-loopback address without tokens (something in front must "
                             "authenticate callers)")
    return parser


def run_server(name: str, default_port: int, build: Callable[[], MCPServer],
               argv: list[str] | None = None) -> None:
    """Entry point shared by every console script."""
    import anyio

    args = argument_parser(name, default_port).parse_args(argv)
    server = build()
    try:
        if args.transport == "stdio":
            admission.install(server)
            shutdown.install()  # over HTTP, uvicorn handles SIGTERM with a graceful shutdown of its own
            anyio.run(server.run_stdio_async)
        else:
            anyio.run(_serve_checked, server, args)
    except KeyboardInterrupt:
        pass
    except (ExposureRefused, auth.AuthConfigError) as exc:
        log.error("%s: %s", name, exc)
        sys.exit(2)
    sys.exit(0)


async def _serve_checked(server: MCPServer, args: argparse.Namespace) -> None:
    await serve_http(server, args.host, args.port, args.stateless,
                     public_url=settings.raw("TOOLSUITE_HTTP_PUBLIC_URL"),
                     allow_unauthenticated=args.allow_unauthenticated)
