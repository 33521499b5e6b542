"""The webhook driver (GREENLIGHT_DEPLOYER=webhook): hands deployments to an external CD
system and lets it report back through `reportDeploymentStatus`.

Each event is a JSON body signed the Standard Webhooks way (standardwebhooks.com):
`webhook-id` (the delivery's id, the same on every retry, so receivers can drop
duplicates), `webhook-timestamp` (when this attempt was signed) and `webhook-signature`
(`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`). The timestamp is signed too, so a
captured event replayed later is refused by a receiver checking its age. The secret is
GREENLIGHT_DEPLOY_WEBHOOK_SECRET: a `whsec_<base64>` value is that key, any other value is
the key's UTF-8 bytes. The older `X-Greenlight-Signature: sha256=<hex of HMAC-SHA256 over
the body>` is still sent for one release (deprecated: it does not cover time).

Deliveries come from an outbox table written in the deploy's transaction; a failed one is
retried with exponential backoff and jitter (so receivers coming back up are not hit by
every sender at once), and after `GREENLIGHT_WEBHOOK_MAX_ATTEMPTS` the deployment is marked
FAILED. A delivery is claimed with FOR UPDATE SKIP LOCKED and a lease, so with several
processes each attempt is made by one of them, and a process dying mid-attempt only
delays it.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
from datetime import timedelta

import httpx

from greenlight import outbox
from greenlight.clock import now
from greenlight.errors import InvalidState
from greenlight.models import Deployment, DeploymentStatus, WebhookDelivery
from greenlight.rollout.drivers import Finish
from greenlight.signing import body_of, standard_headers

log = logging.getLogger("greenlight.webhook")

# Deprecated, sent for one release beside the Standard Webhooks headers.
SIGNATURE_HEADER = "X-Greenlight-Signature"


def signature(secret: str, body: bytes) -> str:
    """The deprecated X-Greenlight-Signature: HMAC-SHA256 over the body alone."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def _send(settings, client: httpx.AsyncClient, delivery: WebhookDelivery) -> str | None:
    """POSTs the event; None when the receiver accepted it, else what went wrong."""
    body = body_of(delivery.payload)
    headers = {
        "Content-Type": "application/json",
        **standard_headers(settings.deploy_webhook_secret, str(delivery.id), body),
        SIGNATURE_HEADER: signature(settings.deploy_webhook_secret, body),
        "X-Greenlight-Event": delivery.payload.get("event", ""),
        "X-Greenlight-Delivery": str(delivery.id),
    }
    return await outbox.post(
        client, settings.deploy_webhook_url, body, headers, settings.webhook_timeout_seconds
    )


async def _follows_its_start(delivery: WebhookDelivery) -> bool:
    """A `deployment.superseded` goes only where its `deployment.started` may have gone: the
    receiver gets both or neither. True once the start was delivered or attempted (an
    attempt's request may have reached the receiver); a start that was never sent (the
    deployment was superseded first) drops the superseded event too; a start still waiting
    for its turn (or in the hands of another process) puts the superseded event after it."""
    start = (
        await WebhookDelivery.filter(deployment_id=delivery.deployment_id, id__lt=delivery.id)
        .order_by("id")
        .first()
    )
    if start is None or start.payload.get("event") != "deployment.started":
        return True
    if start.delivered_at is not None or start.attempts > 0:
        return True
    if start.failed_at is not None:
        delivery.failed_at = now()
        delivery.last_error = "not sent: the deployment was superseded before its deployment.started was sent"
        await delivery.save(update_fields=["failed_at", "last_error"])
        return False
    delivery.next_attempt_at = max(start.next_attempt_at, now()) + timedelta(seconds=1)
    await delivery.save(update_fields=["next_attempt_at"])
    return False


async def deliver_due(settings, client: httpx.AsyncClient, finish: Finish) -> int:
    """Send every delivery that is due; returns how many were accepted. A deployment whose
    start could not be delivered after the last attempt is ended FAILED through `finish`
    (the workflow's, given by greenlight.jobs)."""
    delivered = 0
    lease = settings.webhook_timeout_seconds + 30
    while (delivery := await outbox.claim(WebhookDelivery, "delivered_at", lease)) is not None:
        if delivery.payload.get("event") == "deployment.started":
            deployment = await Deployment.get(id=delivery.deployment_id)
            if deployment.status != DeploymentStatus.PROGRESSING:
                # Superseded (or ended) before the CD system ever accepted its start.
                delivery.failed_at = now()
                delivery.last_error = f"not sent: the deployment is {deployment.status} already"
                await delivery.save(update_fields=["failed_at", "last_error"])
                continue
        if delivery.payload.get("event") == "deployment.superseded" and not await _follows_its_start(
            delivery
        ):
            continue
        error = await _send(settings, client, delivery)
        await outbox.record_http_attempt(delivery, error, settings)
        if error is None:
            delivered += 1
            continue
        log.warning("webhook delivery %s attempt %s failed: %s", delivery.id, delivery.attempts, error)
        if delivery.failed_at is not None and delivery.payload.get("event") == "deployment.started":
            with contextlib.suppress(InvalidState):
                await finish(
                    delivery.deployment_id,
                    DeploymentStatus.FAILED,
                    message=f"the CD system could not be reached after {delivery.attempts} attempts: {error}",
                )
    return delivered
