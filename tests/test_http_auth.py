"""Authenticated HTTP: real servers on 127.0.0.1, the real MCP client, a local identity provider.

Security tests: none of them may be skipped (they need only the project's own dependencies).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import socket
import subprocess
import threading
import time
from http.server import ThreadingHTTPServer
from typing import Any

import httpx
import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from shared import auth, jwks
from shared.transport import ExposureRefused, check_exposure
from tests.conftest import BIN
from tests.http_process import environment, free_port, start
from tests.local_http import QuietHandler, send

pytestmark = pytest.mark.anyio

TOKEN = secrets.token_urlsafe(32)  # configured raw
HASHED_TOKEN = secrets.token_urlsafe(32)  # configured only as its sha256: digest, in a file
WRONG_TOKEN = secrets.token_urlsafe(32)
JSON_RPC = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
              "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                         "clientInfo": {"name": "t", "version": "1"}}}
GENERIC_401 = {"error": "invalid_token", "error_description": "Authentication required"}


async def _list_and_call(url: str, token: str | None, mode: str = "legacy") -> tuple[list[str], Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=60)) as http,
                Client(streamable_http_client(url, http_client=http), mode=mode) as client):
        tools = [t.name for t in (await client.list_tools()).tools]
        result = await client.call_tool("reasoning", {"question": "x"})
    return tools, result


def _metadata_url(response: httpx.Response) -> str:
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    found = re.search(r'resource_metadata="([^"]+)"', challenge)
    assert found, challenge
    return found.group(1)


# --- static tokens ------------------------------------------------------------------------------

@pytest.fixture
def token_server(tmp_path):
    tokens_file = tmp_path / "tokens"
    digest = hashlib.sha256(HASHED_TOKEN.encode()).hexdigest()
    tokens_file.write_text(f"# agents of team A\n\nsha256:{digest}\n")
    server = start("tool-reasoning", tmp_path, env=environment(TOOLSUITE_HTTP_TOKENS=TOKEN,
                                                                 TOOLSUITE_HTTP_TOKENS_FILE=str(tokens_file)))
    yield server
    server.stop()


def test_without_a_valid_token_mcp_answers_401_with_the_metadata_document_and_nothing_else(token_server):
    url = token_server.url
    refused = [{}, {"authorization": f"Bearer {WRONG_TOKEN}"}, {"authorization": f"Bearer {TOKEN}x"},
               {"authorization": f"Bearer {TOKEN[:-1]}"}, {"authorization": f"Basic {TOKEN}"},
               {"authorization": "Bearer"}, {"authorization": "Bearer " + "a" * 20000}]
    for headers in refused:
        response = httpx.post(url, json=INITIALIZE, headers={**JSON_RPC, **headers})
        assert response.status_code in (401, 431), headers.keys()
        if response.status_code == 431:  # the HTTP server refuses an oversized header itself
            continue
        assert response.json() == GENERIC_401
        assert "mcp-session-id" not in response.headers
        assert "reasoning" not in response.text and TOKEN not in response.text
        assert _metadata_url(response) == f"{token_server.base}/.well-known/oauth-protected-resource/mcp"
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    assert httpx.post(url, json=listing, headers=JSON_RPC).status_code == 401
    assert httpx.get(url, headers={"accept": "text/event-stream"}).status_code == 401
    assert httpx.delete(url).status_code == 401

    metadata = httpx.get(_metadata_url(httpx.post(url, json=INITIALIZE, headers=JSON_RPC)))
    assert metadata.status_code == 200
    document = metadata.json()
    assert document["resource"] == url
    assert document["authorization_servers"] == [token_server.base]
    assert document["bearer_methods_supported"] == ["header"]
    assert httpx.get(f"{token_server.base}/healthz").json()["status"] == "ok"  # open for load balancers

    log = token_server.log()
    assert TOKEN not in log and WRONG_TOKEN not in log and HASHED_TOKEN not in log


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
@pytest.mark.parametrize("which", ["raw", "hashed-in-file"])
async def test_a_good_token_works_through_the_mcp_client(token_server, mode, which):
    token = TOKEN if which == "raw" else HASHED_TOKEN
    tools, result = await _list_and_call(token_server.url, token, mode)
    assert tools == ["reasoning"]
    assert result.is_error and "TOOLSUITE_REASONING_MODEL" in result.content[0].text
    assert token not in token_server.log()


async def test_the_mcp_client_without_a_token_is_refused(token_server):
    with pytest.raises(Exception) as caught:
        await _list_and_call(token_server.url, WRONG_TOKEN)
    assert "reasoning" not in str(caught.value)


def test_a_session_opened_with_one_token_cannot_be_used_with_another(token_server):
    opened = httpx.post(token_server.url, json=INITIALIZE, headers={**JSON_RPC, "authorization": f"Bearer {TOKEN}"})
    session = opened.headers["mcp-session-id"]
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    other = httpx.post(token_server.url, json=listing, headers={
        **JSON_RPC, "authorization": f"Bearer {HASHED_TOKEN}", "mcp-session-id": session,
        "mcp-protocol-version": "2025-11-25"})
    assert other.status_code == 404 and "reasoning" not in other.text


def test_toolsuite_call_sends_the_client_token(token_server, tmp_path):
    command = [str(BIN / "toolsuite"), "call", "tool-reasoning", "reasoning", "--arg", "question=x",
               "--url", token_server.url]
    good = subprocess.run(command, capture_output=True, text=True, timeout=60,
                          env=environment(TOOLSUITE_CLIENT_TOKEN=TOKEN))
    assert good.returncode == 1 and "no reasoning model configured" in good.stdout  # reached the tool
    missing = subprocess.run(command, capture_output=True, text=True, timeout=60, env=environment())
    assert missing.returncode == 2 and "401" in missing.stderr and "TOOLSUITE_CLIENT_TOKEN" in missing.stderr
    wrong = subprocess.run([*command, "--token", WRONG_TOKEN], capture_output=True, text=True, timeout=60,
                           env=environment())
    assert wrong.returncode == 2 and "token was refused" in wrong.stderr and WRONG_TOKEN not in wrong.stderr


def test_toolsuite_token_prints_a_token_and_its_digest():
    out = subprocess.run([str(BIN / "toolsuite"), "token"], capture_output=True, text=True, timeout=60)
    token = re.search(r"token:\s+(\S+)", out.stdout).group(1)
    digest = re.search(r"TOOLSUITE_HTTP_TOKENS=sha256:([0-9a-f]{64})", out.stdout).group(1)
    assert len(token) >= auth.MIN_TOKEN_CHARS and hashlib.sha256(token.encode()).hexdigest() == digest


def test_a_token_too_short_to_be_random_stops_the_server_without_echoing_it(tmp_path):
    port = free_port()
    out = subprocess.run([str(BIN / "tool-reasoning"), "--transport", "http", "--port", str(port)],
                         capture_output=True, text=True, timeout=30,
                         env=environment(TOOLSUITE_HTTP_TOKENS="hunter2-password"))
    assert out.returncode == 2
    assert "TOOLSUITE_HTTP_TOKENS" in out.stderr and "toolsuite token" in out.stderr
    assert "hunter2" not in out.stderr


async def test_static_verifier_compares_digests_only():
    verifier = auth.StaticTokenVerifier([auth.digest(TOKEN)], scopes=["tools"])
    found = await verifier.verify_token(TOKEN)
    assert found is not None and found.scopes == ["tools"] and TOKEN not in found.model_dump_json()
    assert await verifier.verify_token(WRONG_TOKEN) is None
    assert await verifier.verify_token("") is None
    assert await verifier.verify_token(TOKEN * 300) is None


# --- exposure -----------------------------------------------------------------------------------

def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_a_non_loopback_bind_without_auth_refuses_to_start(tmp_path):
    port = free_port()
    out = subprocess.run([str(BIN / "tool-reasoning"), "--transport", "http", "--host", "0.0.0.0", "--port",
                          str(port)], capture_output=True, text=True, timeout=30, env=environment())
    assert out.returncode == 2
    assert "without authentication" in out.stderr
    assert "TOOLSUITE_HTTP_TOKENS" in out.stderr and "--allow-unauthenticated" in out.stderr
    assert not _listening(port)
    serve_all = subprocess.run([str(BIN / "toolsuite"), "serve", "all", "--host", "0.0.0.0", "--port", str(port)],
                               capture_output=True, text=True, timeout=60, env=environment())
    assert serve_all.returncode == 2 and "--allow-unauthenticated" in serve_all.stderr
    assert not _listening(port)


async def test_a_non_loopback_bind_with_a_token_starts_and_requires_it(tmp_path):
    server = start("tool-reasoning", tmp_path, host="0.0.0.0", env=environment(TOOLSUITE_HTTP_TOKENS=TOKEN))
    try:
        assert httpx.post(server.url, json=INITIALIZE, headers=JSON_RPC).status_code == 401
        tools, _result = await _list_and_call(server.url, TOKEN)
        assert tools == ["reasoning"]
    finally:
        server.stop()


def test_an_explicitly_allowed_unauthenticated_exposure_warns_loudly(caplog, monkeypatch):
    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"):
        check_exposure(host, auth_configured=False, allow_unauthenticated=False)
    for host in ("0.0.0.0", "::", "10.1.2.3", "192.168.1.5", "tools.example.com"):
        with pytest.raises(ExposureRefused):
            check_exposure(host, auth_configured=False, allow_unauthenticated=False)
        check_exposure(host, auth_configured=True, allow_unauthenticated=False)
    with caplog.at_level(logging.WARNING, logger="toolsuite.transport"):
        check_exposure("0.0.0.0", auth_configured=False, allow_unauthenticated=True)
    assert "SERVING WITHOUT AUTHENTICATION" in caplog.text
    caplog.clear()
    monkeypatch.setenv("TOOLSUITE_HTTP_ALLOW_UNAUTHENTICATED", "1")
    with caplog.at_level(logging.WARNING, logger="toolsuite.transport"):
        check_exposure("0.0.0.0", auth_configured=False, allow_unauthenticated=False)
    assert "SERVING WITHOUT AUTHENTICATION" in caplog.text


# --- JWTs from an identity provider -------------------------------------------------------------

def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class IdentityProvider:
    """A local issuer: OpenID discovery and a JWKS on 127.0.0.1, with a request log."""

    def __init__(self) -> None:
        self.key = _rsa_key()
        self.kid = "k1"
        self.requests: list[str] = []
        owner = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                owner.requests.append(self.path)
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": owner.issuer, "jwks_uri": f"{owner.issuer}/jwks.json"}
                elif self.path == "/jwks.json":
                    public = jwt.algorithms.RSAAlgorithm.to_jwk(owner.key.public_key(), as_dict=True)
                    body = {"keys": [{**public, "kid": owner.kid, "use": "sig", "alg": "RS256"}]}
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                send(self, 200, json.dumps(body).encode(), "application/json")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def token(self, audience: str, *, key: Any = None, algorithm: str = "RS256", kid: str | None = "k1",
              **claims: Any) -> str:
        now = int(time.time())
        payload = {"iss": self.issuer, "aud": audience, "sub": "agent-7", "iat": now, "exp": now + 300,
                   "scope": "tools:call"}
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        headers = {"kid": kid} if kid else {}
        return jwt.encode(payload, key if key is not None else self.key, algorithm=algorithm, headers=headers)

    def stop(self) -> None:
        self.httpd.shutdown()


@pytest.fixture
def idp():
    provider = IdentityProvider()
    yield provider
    provider.stop()


@pytest.fixture
def jwt_server(idp, tmp_path):
    server = start("tool-reasoning", tmp_path, env=environment(
        TOOLSUITE_HTTP_JWT_ISSUER=idp.issuer, TOOLSUITE_ALLOWED_HOSTS="127.0.0.1",
        TOOLSUITE_HTTP_REQUIRED_SCOPES="tools:call"))
    yield server
    server.stop()


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_valid_jwt_works_through_the_mcp_client(idp, jwt_server, mode):
    token = idp.token(jwt_server.url)
    tools, result = await _list_and_call(jwt_server.url, token, mode)
    assert tools == ["reasoning"] and result.is_error  # no model: the tool itself answered
    assert "/.well-known/openid-configuration" in idp.requests and "/jwks.json" in idp.requests


def test_expired_forged_and_misdirected_jwts_get_401(idp, jwt_server):
    url = jwt_server.url
    now = int(time.time())
    public_pem = idp.key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    bad = {
        "expired": idp.token(url, exp=now - 120, iat=now - 600),
        "wrong audience": idp.token(url, aud="http://127.0.0.1:1/mcp"),
        "wrong issuer": idp.token(url, iss="http://127.0.0.1:2"),
        "no expiry": idp.token(url, exp=None),
        "not yet valid": idp.token(url, nbf=now + 600),
        "foreign key, same kid": idp.token(url, key=_rsa_key()),
        "unknown kid": idp.token(url, kid="k-unknown"),
        "alg none": jwt.encode({"iss": idp.issuer, "aud": url, "exp": now + 300}, None, algorithm="none"),
        "HS256 keyed with the public key": jwt.api_jws.PyJWS(algorithms=["HS256"]).encode(
            json.dumps({"iss": idp.issuer, "aud": url, "exp": now + 300}).encode(), public_pem[:64],
            algorithm="HS256", headers={"kid": "k1"}),
        "garbage": "a.b.c",
    }
    for name, token in bad.items():
        response = httpx.post(url, json=INITIALIZE, headers={**JSON_RPC, "authorization": f"Bearer {token}"})
        assert response.status_code == 401, name
        assert response.json() == GENERIC_401, name
    log = jwt_server.log()
    assert not any(token in log for token in bad.values())
    assert "ExpiredSignatureError" in log  # the reason is logged for the operator, not told to the caller
    # Made-up key ids cannot make the server hammer the provider.
    assert idp.requests.count("/jwks.json") <= 2


def test_a_jwt_without_the_required_scope_gets_403(idp, jwt_server):
    token = idp.token(jwt_server.url, scope="profile")
    response = httpx.post(jwt_server.url, json=INITIALIZE, headers={**JSON_RPC, "authorization": f"Bearer {token}"})
    assert response.status_code == 403 and response.json()["error"] == "insufficient_scope"
    document = httpx.get(_metadata_url(response)).json()
    assert document["authorization_servers"] == [idp.issuer] and document["scopes_supported"] == ["tools:call"]


def test_a_jwks_on_a_private_host_is_refused_unless_allowed(idp, tmp_path):
    server = start("tool-reasoning", tmp_path, env=environment(
        TOOLSUITE_HTTP_JWT_ISSUER=idp.issuer, TOOLSUITE_HTTP_JWT_JWKS_URL=f"{idp.issuer}/jwks.json"))
    try:
        token = idp.token(server.url)
        response = httpx.post(server.url, json=INITIALIZE, headers={**JSON_RPC, "authorization": f"Bearer {token}"})
        assert response.status_code == 401
        assert idp.requests == []  # refused before any connection
        assert "TOOLSUITE_ALLOWED_HOSTS" in server.log()
    finally:
        server.stop()


def test_jwt_settings_that_cannot_be_honoured_stop_the_server(monkeypatch):
    monkeypatch.setenv("TOOLSUITE_HTTP_JWT_ISSUER", "http://idp.example.com")
    with pytest.raises(auth.AuthConfigError, match="https"):
        auth.from_settings("http://127.0.0.1:8101/mcp")
    monkeypatch.setenv("TOOLSUITE_HTTP_JWT_ISSUER", "https://idp.example.com")
    monkeypatch.setenv("TOOLSUITE_HTTP_JWT_ALGORITHMS", "RS256,HS256")
    with pytest.raises(auth.AuthConfigError, match="HS256"):
        auth.from_settings("http://127.0.0.1:8101/mcp")
    monkeypatch.setenv("TOOLSUITE_HTTP_JWT_ALGORITHMS", "ES256")
    setup = auth.from_settings("http://127.0.0.1:8101/mcp")
    assert setup is not None and "JWTs from https://idp.example.com" in setup.summary
    monkeypatch.setenv("TOOLSUITE_OFFLINE", "1")
    with pytest.raises(auth.AuthConfigError, match="TOOLSUITE_OFFLINE"):
        auth.from_settings("http://127.0.0.1:8101/mcp")


async def test_keys_are_refetched_for_a_new_kid_at_most_every_interval(monkeypatch):
    clock = [1000.0]
    fetches: list[str] = []
    documents = {"keys": [{"kty": "RSA", "kid": "k1", "n": "x", "e": "AQAB"}]}

    def fake_fetch(url: str) -> dict[str, Any]:
        fetches.append(url)
        return json.loads(json.dumps(documents))

    monkeypatch.setattr(jwks, "_fetch_json", fake_fetch)
    keys = jwks.KeySet("https://idp.example.com", "https://idp.example.com/jwks.json", clock=lambda: clock[0])
    assert (await keys.key("k1"))["kid"] == "k1"
    for _ in range(50):
        assert await keys.key("k-made-up") is None
    assert len(fetches) == 1  # made-up key ids right after a load: no new request
    clock[0] += jwks.MIN_REFETCH_SECONDS
    for _ in range(50):
        assert await keys.key("k-made-up") is None
    assert len(fetches) == 2  # one more, then quiet again
    documents["keys"].append({"kty": "EC", "kid": "k2", "crv": "P-256", "x": "x", "y": "y"})
    clock[0] += jwks.MIN_REFETCH_SECONDS
    assert (await keys.key("k2"))["kid"] == "k2"  # a rotated-in key is picked up
    assert (await keys.key("k1"))["kid"] == "k1"
    assert len(fetches) == 3
    clock[0] += jwks.REFRESH_SECONDS
    await keys.key("k1")
    assert len(fetches) == 4  # known keys are refreshed periodically too
