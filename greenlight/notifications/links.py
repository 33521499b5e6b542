"""One-click approve links: a signed token bound to (request, approver), valid until the
request expires. Using it twice is refused by R11 (an approval counts once).

Signed with itsdangerous: a token is made with GREENLIGHT_SECRET_KEY and read with it or
with GREENLIGHT_SECRET_KEY_PREVIOUS, so links emailed before a key rotation keep working
until they expire."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from itsdangerous import BadData, BadSignature, URLSafeSerializer

# A link for a request without expiry is still not valid for ever.
NO_EXPIRY_LIFETIME = timedelta(days=30)
# Binds a signature to this use of the key: the same key signs nothing else the same way.
SALT = "greenlight-approve"


class BadLink(ValueError):
    """The token is malformed, forged or expired; the message says which."""


class MalformedLink(BadLink):
    """The token is not a token at all (bad input, not bad credentials)."""


@dataclass(frozen=True)
class ApproveLink:
    request_id: int
    user_id: int
    expires_at: datetime


def _serializer(secret: str, previous: str | None = None) -> URLSafeSerializer:
    # itsdangerous signs with the last key and accepts a signature by any of them.
    keys = [previous, secret] if previous else [secret]
    return URLSafeSerializer(keys, salt=SALT)


def make_token(secret: str, request_id: int, user_id: int, expires_at: datetime) -> str:
    return _serializer(secret).dumps({"r": request_id, "u": user_id, "x": int(expires_at.timestamp())})


def read_token(secret: str, token: str, now: datetime, previous: str | None = None) -> ApproveLink:
    """The link `token` stands for, if `secret` (or the `previous` key) signed it and it has
    not expired."""
    # A token is URL-safe ASCII text: anything else (non-ASCII, say) is no token, not an error.
    if not token or "." not in token or not token.isascii():
        raise MalformedLink("this approve link is malformed")
    try:
        data = _serializer(secret, previous).loads(token)
    except BadSignature:
        raise BadLink("this approve link is not valid (its signature does not match)") from None
    except BadData:
        raise MalformedLink("this approve link is malformed") from None
    try:
        link = ApproveLink(int(data["r"]), int(data["u"]), datetime.fromtimestamp(int(data["x"]), UTC))
    except (ValueError, KeyError, TypeError, OverflowError, OSError):
        raise MalformedLink("this approve link is malformed") from None
    if link.expires_at <= now:
        raise BadLink("this approve link has expired")
    return link


def expiry_for(request_expires_at: datetime | None, now: datetime) -> datetime:
    return request_expires_at or now + NO_EXPIRY_LIFETIME
