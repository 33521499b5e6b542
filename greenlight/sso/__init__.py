"""Single sign-on: JWTs from the organisation's identity provider, besides API tokens.

Keys come from one of three sources: OpenID Connect discovery (GREENLIGHT_OIDC_ISSUER:
`<issuer>/.well-known/openid-configuration` names the JWKS and the signing algorithms), a
JWKS URL for providers without discovery (RS256 or ES256), or a shared secret (HS256).
Discovery documents and JWKS are cached, and fetched again on an unknown `kid`.
Signature, issuer, audience, expiry and not-before are all checked; `alg: none` and
algorithm confusion (an HS256 token signed with an RSA public key, say) are refused
because each mode accepts only its own algorithms and keys of the matching type.

When the provider cannot be reached, callers are told only that sign-in is unavailable:
where it was looked for, and why it failed, go to the log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from jwt import PyJWK

from greenlight.errors import Unauthenticated

log = logging.getLogger("greenlight.sso")

ASYMMETRIC = {"RS256": "RSA", "ES256": "EC"}
MIN_REFETCH_SECONDS = 10.0  # an unknown kid, or a failed fetch, fetches again at most this often
LEEWAY_SECONDS = 30
FETCH_TIMEOUT_SECONDS = 5.0
UNAVAILABLE = "sign-in with the identity provider is unavailable right now; retry shortly"
DISCOVERY_PATH = "/.well-known/openid-configuration"


@dataclass(frozen=True)
class SsoConfig:
    issuer: str | None = None
    audience: str | None = None
    jwks_url: str | None = None
    secret: str | None = None
    oidc_issuer: str | None = None
    email_claim: str = "email"
    groups_claim: str | None = None
    auto_provision: bool = False
    refresh_seconds: float = 300.0

    @property
    def enabled(self) -> bool:
        return bool(self.jwks_url or self.secret or self.oidc_issuer)


class ProviderUnavailable(Exception):
    """The identity provider's documents cannot be fetched or used; the message says why
    (for the log only: it names URLs)."""


async def _fetch_json(url: str) -> Any:
    try:
        async with httpx.AsyncClient(timeout=FETCH_TIMEOUT_SECONDS) as client:
            response = await client.get(url)
            response.raise_for_status()
            return response.json()
    except (httpx.HTTPError, ValueError) as error:
        raise ProviderUnavailable(f"cannot fetch {url}: {error}") from None


def _unavailable(what: str, error: Exception) -> Unauthenticated:
    log.warning("single sign-on unavailable: %s: %s", what, error)
    return Unauthenticated(UNAVAILABLE)


class JwksCache:
    def __init__(self, url: str, refresh_seconds: float) -> None:
        self.url = url
        self.refresh_seconds = refresh_seconds
        self.keys: dict[str, PyJWK] = {}
        self.fetched_at = 0.0
        self.failed_at = float("-inf")
        self._lock = asyncio.Lock()

    async def _fetch(self) -> None:
        document = await _fetch_json(self.url)
        if not isinstance(document, dict):
            raise ProviderUnavailable(f"{self.url} is not a JWKS (a JSON object with keys)")
        keys = {}
        for entry in document.get("keys", []):
            kid = entry.get("kid") if isinstance(entry, dict) else None
            if not kid:
                continue
            try:
                keys[kid] = PyJWK(entry)
            except jwt.PyJWTError:
                continue  # a key type or algorithm we do not use
        self.keys = keys
        self.fetched_at = time.monotonic()

    async def key(self, kid: str) -> PyJWK:
        stale = time.monotonic() - self.fetched_at > self.refresh_seconds
        if kid not in self.keys or stale:
            async with self._lock:
                at = time.monotonic()
                age = at - self.fetched_at
                wanted = (kid not in self.keys and age > MIN_REFETCH_SECONDS) or age > self.refresh_seconds
                if wanted and at - self.failed_at > MIN_REFETCH_SECONDS:
                    try:
                        await self._fetch()
                    except ProviderUnavailable as error:
                        self.failed_at = at
                        if kid not in self.keys:
                            raise _unavailable("the identity provider's keys", error) from None
                        log.warning("using the identity provider's keys fetched before: %s", error)
                elif wanted and kid not in self.keys and not self.keys:
                    raise Unauthenticated(UNAVAILABLE)  # the last fetch failed moments ago
        if kid not in self.keys:
            raise Unauthenticated("token signed with an unknown key")
        return self.keys[kid]


@dataclass(frozen=True)
class Provider:
    """What an OpenID Connect discovery document says: who signs, where the keys are,
    with which of the algorithms Greenlight accepts."""

    issuer: str
    jwks_uri: str
    algorithms: frozenset[str]


class Discovery:
    """`<issuer>/.well-known/openid-configuration`, fetched on first use and again every
    `refresh_seconds`; a provider that cannot be reached meanwhile keeps the last one."""

    def __init__(self, issuer: str, refresh_seconds: float) -> None:
        self.issuer = issuer
        self.url = issuer.rstrip("/") + DISCOVERY_PATH
        self.refresh_seconds = refresh_seconds
        self.provider: Provider | None = None
        self.fetched_at = 0.0
        self.failed_at = float("-inf")
        self._lock = asyncio.Lock()

    async def current(self) -> Provider:
        if self.provider is None or time.monotonic() - self.fetched_at > self.refresh_seconds:
            async with self._lock:
                at = time.monotonic()
                due = self.provider is None or at - self.fetched_at > self.refresh_seconds
                if due and at - self.failed_at > MIN_REFETCH_SECONDS:
                    try:
                        self.provider = self._read(await _fetch_json(self.url))
                        self.fetched_at = time.monotonic()
                    except ProviderUnavailable as error:
                        self.failed_at = at
                        if self.provider is None:
                            raise _unavailable("OpenID Connect discovery", error) from None
                        log.warning("using the discovery document fetched before: %s", error)
        if self.provider is None:
            raise Unauthenticated(UNAVAILABLE)  # the last fetch failed moments ago
        return self.provider

    def _read(self, document: Any) -> Provider:
        if not isinstance(document, dict):
            raise ProviderUnavailable(f"{self.url} is not a discovery document (a JSON object)")
        issuer = document.get("issuer")
        # OpenID Connect Discovery 1.0, 4.3: the document is the issuer's own.
        if not isinstance(issuer, str) or issuer.rstrip("/") != self.issuer.rstrip("/"):
            raise ProviderUnavailable(f"{self.url} names the issuer {issuer!r}, not {self.issuer!r}")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("http://", "https://")):
            raise ProviderUnavailable(f"{self.url} has no http(s) jwks_uri")
        # Absent, the provider signs ID tokens with RS256 (Discovery 1.0, section 3).
        offered = document.get("id_token_signing_alg_values_supported") or ["RS256"]
        algorithms = (
            frozenset(a for a in offered if a in ASYMMETRIC) if isinstance(offered, list) else frozenset()
        )
        if not algorithms:
            raise ProviderUnavailable(
                f"{self.url} offers the algorithms {offered!r}; Greenlight accepts {sorted(ASYMMETRIC)}"
            )
        return Provider(issuer, jwks_uri, algorithms)


_config = SsoConfig()
_jwks: JwksCache | None = None
_discovery: Discovery | None = None


def configure(settings) -> None:
    global _config, _jwks, _discovery
    oidc_issuer = getattr(settings, "oidc_issuer", None)
    _config = SsoConfig(
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        jwks_url=settings.jwt_jwks_url,
        secret=settings.jwt_secret,
        oidc_issuer=oidc_issuer,
        email_claim=settings.jwt_email_claim,
        groups_claim=settings.jwt_groups_claim,
        auto_provision=settings.jwt_auto_provision,
        refresh_seconds=settings.jwks_refresh_seconds,
    )
    _jwks = JwksCache(_config.jwks_url, _config.refresh_seconds) if _config.jwks_url else None
    _discovery = Discovery(oidc_issuer, _config.refresh_seconds) if oidc_issuer else None


def current() -> SsoConfig:
    return _config


async def _keys_and_algorithms() -> tuple[JwksCache, frozenset[str], str | None]:
    """The JWKS to check signatures with, the algorithms accepted, and the issuer
    discovery names (None without discovery)."""
    global _jwks
    if _discovery is None:
        if _jwks is None:
            raise Unauthenticated("token has no key id (kid)")
        return _jwks, frozenset(ASYMMETRIC), None
    provider = await _discovery.current()
    if _jwks is None or _jwks.url != provider.jwks_uri:  # first use, or the provider moved its keys
        _jwks = JwksCache(provider.jwks_uri, _config.refresh_seconds)
    return _jwks, provider.algorithms, provider.issuer


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


async def verify(token: str) -> dict[str, Any]:
    """The claims of a JWT that passes every check, else UNAUTHENTICATED saying why."""
    config = _config
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise Unauthenticated("malformed token") from None
    algorithm = header.get("alg")
    issuer = config.issuer
    if config.secret:
        if algorithm != "HS256":
            raise Unauthenticated(f"token algorithm {algorithm!r} is not accepted (HS256 only)")
        key: Any = config.secret
    else:
        if algorithm not in ASYMMETRIC:
            raise Unauthenticated(f"token algorithm {algorithm!r} is not accepted (RS256 or ES256)")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise Unauthenticated("token has no key id (kid)")
        jwks, algorithms, discovered_issuer = await _keys_and_algorithms()
        if algorithm not in algorithms:
            raise Unauthenticated(
                f"token algorithm {algorithm!r} is not accepted (the provider signs with "
                f"{' or '.join(sorted(algorithms))})"
            )
        issuer = issuer or discovered_issuer
        jwk = await jwks.key(kid)
        if jwk.key_type != ASYMMETRIC[algorithm]:
            raise Unauthenticated(f"token algorithm {algorithm} does not match its key")
        key = jwk.key
    try:
        return jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=config.audience,
            issuer=issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iss", "aud"], "verify_signature": True},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("token expired") from None
    except jwt.ImmatureSignatureError:
        raise Unauthenticated("token not valid yet (nbf)") from None
    except jwt.InvalidAudienceError:
        raise Unauthenticated("token is for another audience") from None
    except jwt.InvalidIssuerError:
        raise Unauthenticated("token is from another issuer") from None
    except jwt.PyJWTError as error:
        raise Unauthenticated(f"invalid token: {error}") from None
