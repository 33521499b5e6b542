"""Single sign-on: JWTs from the organisation's identity provider, besides API tokens.

Either a JWKS URL (RS256 or ES256; keys are cached, and fetched again on an unknown
`kid`) or a shared secret (HS256). Signature, issuer, audience, expiry and not-before
are all checked; `alg: none` and algorithm confusion (an HS256 token signed with an
RSA public key, say) are refused because each mode accepts only its own algorithms and
keys of the matching type.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from jwt import PyJWK

from greenlight.workflow.errors import Unauthenticated

ASYMMETRIC = {"RS256": "RSA", "ES256": "EC"}
MIN_REFETCH_SECONDS = 10.0  # an unknown kid refetches the JWKS at most this often
LEEWAY_SECONDS = 30


@dataclass(frozen=True)
class SsoConfig:
    issuer: str | None = None
    audience: str | None = None
    jwks_url: str | None = None
    secret: str | None = None
    email_claim: str = "email"
    groups_claim: str | None = None
    auto_provision: bool = False
    refresh_seconds: float = 300.0

    @property
    def enabled(self) -> bool:
        return bool(self.jwks_url or self.secret)


class JwksCache:
    def __init__(self, url: str, refresh_seconds: float) -> None:
        self.url = url
        self.refresh_seconds = refresh_seconds
        self.keys: dict[str, PyJWK] = {}
        self.fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def _fetch(self) -> None:
        async with httpx.AsyncClient(timeout=5.0) as client:
            response = await client.get(self.url)
            response.raise_for_status()
            document = response.json()
        keys = {}
        for entry in document.get("keys", []):
            kid = entry.get("kid")
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
                age = time.monotonic() - self.fetched_at
                if (kid not in self.keys and age > MIN_REFETCH_SECONDS) or age > self.refresh_seconds:
                    try:
                        await self._fetch()
                    except (httpx.HTTPError, ValueError) as error:
                        if kid not in self.keys:
                            raise Unauthenticated(
                                f"cannot check the token: the identity provider's keys are unavailable ({error})"
                            ) from None
        if kid not in self.keys:
            raise Unauthenticated("token signed with an unknown key")
        return self.keys[kid]


_config = SsoConfig()
_jwks: JwksCache | None = None


def configure(settings) -> None:
    global _config, _jwks
    _config = SsoConfig(
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        jwks_url=settings.jwt_jwks_url,
        secret=settings.jwt_secret,
        email_claim=settings.jwt_email_claim,
        groups_claim=settings.jwt_groups_claim,
        auto_provision=settings.jwt_auto_provision,
        refresh_seconds=settings.jwks_refresh_seconds,
    )
    _jwks = JwksCache(_config.jwks_url, _config.refresh_seconds) if _config.jwks_url else None


def current() -> SsoConfig:
    return _config


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
    if config.secret:
        if algorithm != "HS256":
            raise Unauthenticated(f"token algorithm {algorithm!r} is not accepted (HS256 only)")
        key: Any = config.secret
    else:
        if algorithm not in ASYMMETRIC:
            raise Unauthenticated(f"token algorithm {algorithm!r} is not accepted (RS256 or ES256)")
        kid = header.get("kid")
        if not isinstance(kid, str) or _jwks is None:
            raise Unauthenticated("token has no key id (kid)")
        jwk = await _jwks.key(kid)
        if jwk.key_type != ASYMMETRIC[algorithm]:
            raise Unauthenticated(f"token algorithm {algorithm} does not match its key")
        key = jwk.key
    try:
        return jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=config.audience,
            issuer=config.issuer,
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
