"""JWT access tokens checked against an identity provider's JWKS (for `shared.auth`).

A token is accepted when its signature verifies with a key from the issuer's JWKS under an allowed
asymmetric algorithm matching the key's type, and its `iss`, `aud` and `exp` (required) and `nbf`
(when present) hold. The JWKS is fetched through the suite's safe fetcher, so it obeys the URL policy
(public addresses only unless `TOOLSUITE_ALLOWED_HOSTS` lists the host, every redirect re-checked,
size cap, timeouts), and over https unless the host is loopback. Keys are cached and refreshed
periodically and when an unknown `kid` appears, at most every `MIN_REFETCH_SECONDS`, so a stream of
made-up key ids cannot make the server hammer the provider.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from shared import settings
from shared.auth import AuthConfigError, check_key_url

if TYPE_CHECKING:
    from mcp.server.auth.provider import AccessToken

log = logging.getLogger("toolsuite.auth")

# Which key type signs with which algorithm; symmetric (HS*) and `none` are never accepted: with a
# public JWKS, an HMAC "key" would be public too.
KEY_TYPE_OF = {
    "RS256": "RSA", "RS384": "RSA", "RS512": "RSA",
    "PS256": "RSA", "PS384": "RSA", "PS512": "RSA",
    "ES256": "EC", "ES384": "EC", "ES512": "EC",
    "EdDSA": "OKP",
}
DEFAULT_ALGORITHMS = "RS256,PS256,ES256,EdDSA"
LEEWAY_SECONDS = 30  # clock skew tolerated on nbf/iat (the SDK itself refuses a past exp)
REFRESH_SECONDS = 600  # picks up key rotation without a restart
MIN_REFETCH_SECONDS = 30
MAX_JWKS_BYTES = 1 << 20


def _fetch_json(url: str) -> dict[str, Any]:
    """GET a small JSON document under the URL policy (runs in a worker thread)."""
    from shared.fetch import FetchLimits, fetch_to_file

    fetched = fetch_to_file(url, FetchLimits(max_bytes=MAX_JWKS_BYTES, total_timeout=15.0))
    try:
        document = json.loads(fetched.path.read_bytes())
    finally:
        fetched.remove()
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    return document


class KeySet:
    """The issuer's signing keys, fetched lazily and refreshed under a rate limit."""

    def __init__(self, issuer: str, jwks_url: str | None, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._issuer = issuer
        self._jwks_url = jwks_url
        self._keys: dict[str | None, dict[str, Any]] = {}
        self._fetched = -math.inf
        self._attempted = -math.inf
        self._lock = anyio.Lock()

    def _resolve_url(self) -> str:
        if self._jwks_url:
            return self._jwks_url
        # OpenID Connect discovery; the document must name the configured issuer exactly.
        document = _fetch_json(self._issuer.rstrip("/") + "/.well-known/openid-configuration")
        if document.get("issuer") != self._issuer:
            raise ValueError("the discovery document names another issuer")
        url = document.get("jwks_uri")
        if not isinstance(url, str):
            raise ValueError("the discovery document has no jwks_uri")
        self._jwks_url = check_key_url(url, "jwks_uri of the issuer's discovery document")
        return self._jwks_url

    def _load(self) -> dict[str | None, dict[str, Any]]:
        document = _fetch_json(self._resolve_url())
        keys: dict[str | None, dict[str, Any]] = {}
        for key in document.get("keys") or []:
            if not isinstance(key, dict) or key.get("kty") not in {"RSA", "EC", "OKP"}:
                continue
            if key.get("use", "sig") != "sig":
                continue
            keys[key.get("kid") if isinstance(key.get("kid"), str) else None] = key
        return keys

    async def _refresh(self) -> None:
        self._attempted = self._clock()
        try:
            keys = await anyio.to_thread.run_sync(self._load)
        except Exception as exc:
            # Keep the keys we had: a provider hiccup must not lock everyone out.
            log.warning("could not fetch the JWKS for issuer %s: %s", self._issuer, exc)
            return
        self._keys = keys
        self._fetched = self._clock()
        log.info("loaded %d signing key(s) for issuer %s", len(keys), self._issuer)

    def _lookup(self, kid: str | None) -> dict[str, Any] | None:
        if kid is not None:
            return self._keys.get(kid)
        return next(iter(self._keys.values())) if len(self._keys) == 1 else None

    async def key(self, kid: str | None) -> dict[str, Any] | None:
        found = self._lookup(kid)
        if found is not None and self._clock() - self._fetched < REFRESH_SECONDS:
            return found
        async with self._lock:
            # Another request may have refreshed while this one waited for the lock.
            found = self._lookup(kid)
            fresh = self._clock() - self._fetched < REFRESH_SECONDS
            if (found is None or not fresh) and self._clock() - self._attempted >= MIN_REFETCH_SECONDS:
                await self._refresh()
                found = self._lookup(kid)
        return found


class JwtVerifier:
    def __init__(self, issuer: str, audience: str, jwks_url: str | None, algorithms: list[str]) -> None:
        self.issuer = issuer
        self.audience = audience
        self.algorithms = algorithms
        self.keys = KeySet(issuer, jwks_url)
        self._prepared: dict[tuple[str, str], Any] = {}

    @classmethod
    def from_settings(cls, issuer: str, *, default_audience: str) -> JwtVerifier:
        try:
            import jwt  # noqa: F401  (pyjwt with its crypto extra)
            from jwt.algorithms import has_crypto
        except ImportError:
            raise AuthConfigError(
                "TOOLSUITE_HTTP_JWT_ISSUER is set but PyJWT is not installed: pip install 'pyjwt[crypto]'"
            ) from None
        if not has_crypto:
            raise AuthConfigError(
                "TOOLSUITE_HTTP_JWT_ISSUER needs the cryptography package: pip install 'pyjwt[crypto]'"
            )
        check_key_url(issuer, "TOOLSUITE_HTTP_JWT_ISSUER")
        if settings.offline():
            # Every JWT would be refused for want of keys: say so now rather than on each request.
            raise AuthConfigError("TOOLSUITE_HTTP_JWT_ISSUER needs the issuer's keys, but TOOLSUITE_OFFLINE=1 "
                                  "refuses network access; use static tokens (TOOLSUITE_HTTP_TOKENS) offline")
        jwks_url = settings.raw("TOOLSUITE_HTTP_JWT_JWKS_URL")
        if jwks_url:
            check_key_url(jwks_url, "TOOLSUITE_HTTP_JWT_JWKS_URL")
        algorithms = [a.strip() for a in settings.text("TOOLSUITE_HTTP_JWT_ALGORITHMS", DEFAULT_ALGORITHMS).split(",")
                      if a.strip()]
        unknown = [a for a in algorithms if a not in KEY_TYPE_OF]
        if unknown or not algorithms:
            raise AuthConfigError(
                f"TOOLSUITE_HTTP_JWT_ALGORITHMS: {', '.join(unknown) or '(empty)'} not accepted; "
                f"choose from {', '.join(KEY_TYPE_OF)} (symmetric algorithms and `none` are refused)"
            )
        audience = settings.text("TOOLSUITE_HTTP_JWT_AUDIENCE", default_audience)
        return cls(issuer, audience, jwks_url, algorithms)

    def _prepared_key(self, jwk: dict[str, Any], algorithm: str) -> Any:
        import jwt

        cache_key = (json.dumps(jwk, sort_keys=True), algorithm)
        if cache_key not in self._prepared:
            self._prepared[cache_key] = jwt.PyJWK(jwk, algorithm=algorithm).key
        return self._prepared[cache_key]

    async def verify_token(self, token: str) -> AccessToken | None:
        import jwt
        from mcp.server.auth.provider import AccessToken

        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None
        algorithm = header.get("alg")
        if algorithm not in self.algorithms:
            log.info("refused a JWT signed with %r (allowed: %s)", algorithm, ",".join(self.algorithms))
            return None
        kid = header.get("kid") if isinstance(header.get("kid"), str) else None
        jwk = await self.keys.key(kid)
        if jwk is None or jwk.get("kty") != KEY_TYPE_OF[algorithm] or jwk.get("alg", algorithm) != algorithm:
            log.info("refused a JWT: no signing key of issuer %s fits kid %r and %s", self.issuer, kid, algorithm)
            return None
        try:
            claims = jwt.decode(
                token, key=self._prepared_key(jwk, algorithm), algorithms=[algorithm], audience=self.audience,
                issuer=self.issuer, leeway=LEEWAY_SECONDS, options={"require": ["exp", "iss", "aud"]},
            )
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            # The reason goes to the log only; the caller gets the same 401 whatever it was.
            log.info("refused a JWT from %s: %s", self.issuer, type(exc).__name__)
            return None
        scopes = _scopes(claims)
        subject = claims.get("sub") if isinstance(claims.get("sub"), str) else None
        client = claims.get("client_id") or claims.get("azp") or subject or "jwt"
        with contextlib.suppress(TypeError, ValueError):
            return AccessToken(token=f"jwt:{kid or '-'}", client_id=str(client), scopes=scopes,
                               expires_at=int(claims["exp"]), resource=self.audience, subject=subject,
                               claims={"iss": claims["iss"]})
        return None


def _scopes(claims: dict[str, Any]) -> list[str]:
    """RFC 9068 `scope` (space-separated); some providers use `scp` (a list or a string)."""
    value = claims.get("scope", claims.get("scp", ""))
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [str(v) for v in value]
    return []

