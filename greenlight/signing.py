"""Standard Webhooks signing, shared by every outbound HTTP delivery (deploy webhooks, chat,
the audit sink): the same delivery id on every retry, so receivers drop duplicates, and a
timestamp in the signature, so a captured delivery cannot be replayed later."""

from __future__ import annotations

import base64
import json

from standardwebhooks import Webhook

from greenlight.clock import now

SECRET_PREFIX = "whsec_"


def body_of(payload: dict) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def signing_key(secret: str) -> bytes:
    """`whsec_<base64>` is the Standard Webhooks form of a key; anything else is used as is."""
    if secret.startswith(SECRET_PREFIX):
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX) + "==")
    return secret.encode()


def standard_headers(secret: str, delivery_id: str, body: bytes) -> dict[str, str]:
    """webhook-id, webhook-timestamp and webhook-signature of one attempt."""
    signed_at = now()
    return {
        "webhook-id": delivery_id,
        "webhook-timestamp": str(int(signed_at.timestamp())),
        "webhook-signature": Webhook(signing_key(secret)).sign(delivery_id, signed_at, body.decode()),
    }
