"""One-click approve links: a signed token bound to (request, approver), valid until the
request expires. Using it twice is refused by R11 (an approval counts once)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

# A link for a request without expiry is still not valid for ever.
NO_EXPIRY_LIFETIME = timedelta(days=30)


class BadLink(ValueError):
    """The token is malformed, forged or expired; the message says which."""


class MalformedLink(BadLink):
    """Not an approve link at all (cut short, or not base64url text)."""


@dataclass(frozen=True)
class ApproveLink:
    request_id: int
    user_id: int
    expires_at: datetime


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: str, payload: str) -> str:
    return _b64(hmac.new(secret.encode(), b"greenlight-approve:" + payload.encode(), hashlib.sha256).digest())


def make_token(secret: str, request_id: int, user_id: int, expires_at: datetime) -> str:
    payload = _b64(json.dumps({"r": request_id, "u": user_id, "x": int(expires_at.timestamp())}).encode())
    return f"{payload}.{_sign(secret, payload)}"


def read_token(secret: str, token: str, now: datetime) -> ApproveLink:
    payload, _, signature = token.partition(".")
    # A token is base64url text: anything else (non-ASCII, say) is no token, not an error.
    if not payload or not signature or not token.isascii():
        raise MalformedLink("this approve link is malformed")
    if not hmac.compare_digest(signature, _sign(secret, payload)):
        raise BadLink("this approve link is not valid (its signature does not match)")
    try:
        data = json.loads(_unb64(payload))
        link = ApproveLink(int(data["r"]), int(data["u"]), datetime.fromtimestamp(int(data["x"]), UTC))
    except (ValueError, KeyError, TypeError):
        raise MalformedLink("this approve link is malformed") from None
    if link.expires_at <= now:
        raise BadLink("this approve link has expired")
    return link


def expiry_for(request_expires_at: datetime | None, now: datetime) -> datetime:
    return request_expires_at or now + NO_EXPIRY_LIFETIME
