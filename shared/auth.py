"""Bearer tokens for the HTTP transport: the server as an OAuth 2.1 resource server.

The MCP SDK does the HTTP side (401 with `WWW-Authenticate`, the RFC 9728 protected-resource
metadata document, the scope check); this module gives it a `TokenVerifier` built from settings:

- static tokens from `TOOLSUITE_HTTP_TOKENS` and/or `TOOLSUITE_HTTP_TOKENS_FILE`, kept only as
  SHA-256 digests and compared in constant time, for teams without an identity provider;
- JWT access tokens signed by `TOOLSUITE_HTTP_JWT_ISSUER`'s keys (`shared.jwks`), for teams with one.

A configuration that cannot be honoured (a short token, a JWKS over plain http to a remote host, an
unknown algorithm) raises `AuthConfigError` so the server refuses to start instead of running open.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from shared import settings

if TYPE_CHECKING:
    from mcp.server.auth.provider import AccessToken, TokenVerifier
    from mcp.server.auth.settings import AuthSettings

log = logging.getLogger("toolsuite.auth")

HASH_PREFIX = "sha256:"
# Tokens are compared as unsalted SHA-256 digests, which is sound only for random tokens: refuse
# anything short enough to be a password. `toolsuite token` makes 43-character ones.
MIN_TOKEN_CHARS = 24
# A bearer value longer than this is not one of ours; refuse it before hashing.
MAX_PRESENTED_CHARS = 8192


class AuthConfigError(Exception):
    """The auth settings cannot be used; the message names the setting to fix."""


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def new_token() -> tuple[str, str]:
    """A random token and the `sha256:` line a server needs to accept it."""
    token = secrets.token_urlsafe(32)
    return token, HASH_PREFIX + digest(token).hex()


def _parse_entry(entry: str, where: str) -> bytes:
    if entry.lower().startswith(HASH_PREFIX):
        hex_digits = entry[len(HASH_PREFIX):].strip()
        try:
            value = bytes.fromhex(hex_digits)
        except ValueError:
            value = b""
        if len(value) != 32:
            raise AuthConfigError(f"{where}: a `sha256:` entry needs 64 hexadecimal digits")
        return value
    if len(entry) < MIN_TOKEN_CHARS:
        # Never echo the entry: it may be a real (if weak) secret.
        raise AuthConfigError(
            f"{where}: a token is shorter than {MIN_TOKEN_CHARS} characters; use a random one "
            "(`toolsuite token` prints one and its sha256: form)"
        )
    return digest(entry)


def static_digests() -> list[bytes]:
    """Digests of every configured static token (the raw values are not kept)."""
    digests: list[bytes] = []
    for entry in settings.text("TOOLSUITE_HTTP_TOKENS").split(","):
        if entry.strip():
            digests.append(_parse_entry(entry.strip(), "TOOLSUITE_HTTP_TOKENS"))
    path = settings.raw("TOOLSUITE_HTTP_TOKENS_FILE")
    if path:
        try:
            lines = Path(path).expanduser().read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise AuthConfigError(f"TOOLSUITE_HTTP_TOKENS_FILE: cannot read {path}: {exc.strerror}") from None
        for number, line in enumerate(lines, start=1):
            line = line.strip()
            if line and not line.startswith("#"):
                digests.append(_parse_entry(line, f"TOOLSUITE_HTTP_TOKENS_FILE line {number}"))
    return digests


class StaticTokenVerifier:
    """Accepts a token whose SHA-256 digest is configured; every digest is compared, always."""

    def __init__(self, digests: list[bytes], scopes: list[str]) -> None:
        self._digests = list(digests)
        # Operator-issued tokens carry every scope the server requires: they are full access.
        self._scopes = list(scopes)

    async def verify_token(self, token: str) -> AccessToken | None:
        from mcp.server.auth.provider import AccessToken

        if not token or len(token) > MAX_PRESENTED_CHARS:
            return None
        presented = digest(token)
        matched: bytes | None = None
        for candidate in self._digests:
            # No early exit: the time taken does not say which entry (if any) matched.
            if hmac.compare_digest(presented, candidate):
                matched = candidate
        if matched is None:
            return None
        fingerprint = matched.hex()[:12]
        # The raw token is not stored on the request: a fingerprint identifies the caller in logs
        # and binds stateful sessions to the token that opened them.
        return AccessToken(token=f"{HASH_PREFIX}{fingerprint}", client_id=f"token-{fingerprint}",
                           scopes=self._scopes)


class SuiteTokenVerifier:
    """The SDK's `TokenVerifier` hook: static tokens first (cheap), then JWTs."""

    def __init__(self, static: StaticTokenVerifier | None, jwt: Any | None) -> None:
        self._static = static
        self._jwt = jwt

    async def verify_token(self, token: str) -> AccessToken | None:
        if self._static is not None:
            found = await self._static.verify_token(token)
            if found is not None:
                return found
        if self._jwt is not None and token.count(".") == 2:
            return await self._jwt.verify_token(token)
        return None


def required_scopes() -> list[str]:
    return [s.strip() for s in settings.text("TOOLSUITE_HTTP_REQUIRED_SCOPES").replace(" ", ",").split(",")
            if s.strip()]


def is_loopback_host(host: str) -> bool:
    import ipaddress

    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_key_url(url: str, setting: str) -> str:
    """Keys decide who gets in: fetch them over https, or plain http only on this machine."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise AuthConfigError(f"{setting}: {url!r} is not an http(s) URL")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise AuthConfigError(f"{setting}: use https (plain http is accepted only for a loopback host)")
    return url


def configured() -> bool:
    """Whether any authentication is configured (without validating it)."""
    return bool(settings.raw("TOOLSUITE_HTTP_TOKENS") or settings.raw("TOOLSUITE_HTTP_TOKENS_FILE")
                or settings.raw("TOOLSUITE_HTTP_JWT_ISSUER"))


@dataclass(frozen=True)
class AuthSetup:
    verifier: TokenVerifier
    settings: AuthSettings
    summary: str


def from_settings(public_url: str) -> AuthSetup | None:
    """The verifier and the SDK's `AuthSettings` for a server reachable at `public_url`, or None."""
    if not configured():
        return None
    from mcp.server.auth.settings import AuthSettings

    scopes = required_scopes()
    digests = static_digests()
    static = StaticTokenVerifier(digests, scopes) if digests else None
    jwt_verifier = None
    issuer = settings.raw("TOOLSUITE_HTTP_JWT_ISSUER")
    if issuer:
        from shared.jwks import JwtVerifier

        jwt_verifier = JwtVerifier.from_settings(issuer, default_audience=public_url)
    if static is None and jwt_verifier is None:
        raise AuthConfigError("TOOLSUITE_HTTP_TOKENS / TOOLSUITE_HTTP_TOKENS_FILE hold no token")
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(public_url))
    try:
        sdk_settings = AuthSettings(
            # RFC 9728 needs an authorization server to name: the identity provider when there is
            # one; otherwise this server's origin, whose operator hands out the static tokens.
            issuer_url=issuer or origin,
            resource_server_url=public_url,
            required_scopes=scopes or None,
            # Our verifier checks a JWT's audience itself; static tokens are not bound to a resource.
            validate_token_resource=False,
        )
    except ValueError as exc:
        raise AuthConfigError(f"TOOLSUITE_HTTP_PUBLIC_URL or TOOLSUITE_HTTP_JWT_ISSUER is not a valid URL: {exc}") \
            from None
    parts = []
    if static is not None:
        parts.append(f"{len(digests)} static token{'s' if len(digests) != 1 else ''}")
    if jwt_verifier is not None:
        parts.append(f"JWTs from {issuer}")
    return AuthSetup(SuiteTokenVerifier(static, jwt_verifier), sdk_settings, " and ".join(parts))
