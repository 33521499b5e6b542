"""Chat notices: approval events to Slack and Microsoft Teams incoming webhooks and to
generic signed JSON webhooks, configured per pipeline or environment by super-admins.

Deliveries are derived from the audit log, the one place every outcome is written in the
transaction that made it: `fan_out` turns each newly sequenced audit event of a listed kind
into one ChatDelivery per channel that hears it (greenlight.notifications.audit_stream calls
it, once per event, in the transaction that gives the event its place in commit order). So
a delivery exists exactly when its outcome committed, and no workflow function has to
remember to send one.

`deliver_due` sends them through the shared outbox (greenlight.outbox): claimed with FOR
UPDATE SKIP LOCKED and a lease, retried with exponential backoff and jitter, marked failed
(never deleted) after GREENLIGHT_WEBHOOK_MAX_ATTEMPTS. Every attempt of a delivery sends
the same body with the same `webhook-id`; WEBHOOK channels sign it the Standard Webhooks
way with the channel's own secret.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from greenlight import notifications, outbox
from greenlight.clock import now
from greenlight.models import (
    ApprovalRequest,
    AuditEvent,
    ChatChannel,
    ChatChannelKind,
    ChatDelivery,
    ChatEvent,
    Deployment,
    Image,
    Rejection,
    User,
)
from greenlight.signing import body_of, standard_headers

log = logging.getLogger("greenlight.chat")

# The audit actions each chat event comes from (greenlight.workflow writes them).
EVENT_OF_ACTION: dict[str, ChatEvent] = {
    "request_approval": ChatEvent.REQUESTED,
    "request_approved": ChatEvent.APPROVED,
    "request_rejected": ChatEvent.REJECTED,
    "request_cancelled": ChatEvent.CANCELLED,
    "request_expired": ChatEvent.EXPIRED,
    "deploy": ChatEvent.DEPLOYED,
    "deployment_healthy": ChatEvent.ROLLOUT_FINISHED,
    "deployment_degraded": ChatEvent.ROLLOUT_FINISHED,
    "deployment_failed": ChatEvent.ROLLOUT_FINISHED,
}
# The generic webhook's `type` of each event.
TYPE_OF_EVENT: dict[ChatEvent, str] = {
    ChatEvent.REQUESTED: "approval.requested",
    ChatEvent.APPROVED: "approval.approved",
    ChatEvent.REJECTED: "approval.rejected",
    ChatEvent.CANCELLED: "approval.cancelled",
    ChatEvent.EXPIRED: "approval.expired",
    ChatEvent.DEPLOYED: "deployment.started",
    ChatEvent.ROLLOUT_FINISHED: "deployment.finished",
}
TEAMS_COLOURS = {"good": "2EB67D", "bad": "E01E5A", "info": "1D9BD1"}


def masked(url: str) -> str:
    """What may be shown of a channel's URL: its scheme and host (the path is the secret)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}/"


@dataclass
class Facts:
    """What a notice says about one audit event, read once when it is fanned out."""

    event: AuditEvent
    kind: ChatEvent
    pipeline_id: int
    environment_id: int
    application: str
    environment: str
    image: Image
    actor: User | None
    request: ApprovalRequest | None = None
    deployment: Deployment | None = None
    reason: str | None = None


async def _facts(events: list[AuditEvent]) -> list[Facts]:
    """The facts of every chat-worthy event, in a fixed number of statements."""
    request_ids = {e.object_id for e in events if e.object_type == "ApprovalRequest"}
    deployment_ids = {e.object_id for e in events if e.object_type == "Deployment"}
    related = ("image", "pipeline__application", "pipeline__environment")
    requests = (
        {r.id: r for r in await ApprovalRequest.filter(id__in=request_ids).select_related(*related)}
        if request_ids
        else {}
    )
    deployments = (
        {d.id: d for d in await Deployment.filter(id__in=deployment_ids).select_related(*related)}
        if deployment_ids
        else {}
    )
    rejected = [e.object_id for e in events if e.action == "request_rejected"]
    reasons = (
        dict(await Rejection.filter(request_id__in=rejected).values_list("request_id", "reason"))
        if rejected
        else {}
    )
    actor_ids = {e.actor_id for e in events if e.actor_id is not None}
    actors = {u.id: u for u in await User.filter(id__in=actor_ids)} if actor_ids else {}
    found = []
    for e in events:
        subject = (requests if e.object_type == "ApprovalRequest" else deployments).get(e.object_id)
        if subject is None:
            continue
        pipeline = subject.pipeline
        found.append(
            Facts(
                event=e,
                kind=EVENT_OF_ACTION[e.action],
                pipeline_id=pipeline.id,
                environment_id=pipeline.environment_id,
                application=pipeline.application.name,
                environment=pipeline.environment.name,
                image=subject.image,
                actor=actors.get(e.actor_id),
                request=subject if isinstance(subject, ApprovalRequest) else None,
                deployment=subject if isinstance(subject, Deployment) else None,
                reason=reasons.get(e.object_id) if e.action == "request_rejected" else None,
            )
        )
    return found


def _hears(channel: ChatChannel, facts: Facts) -> bool:
    if channel.pipeline_id is not None and channel.pipeline_id != facts.pipeline_id:
        return False
    if channel.environment_id is not None and channel.environment_id != facts.environment_id:
        return False
    return channel.events is None or facts.kind.value in channel.events


async def fan_out(events: list[AuditEvent]) -> int:
    """One delivery per (chat-worthy event, channel hearing it), written in the caller's
    transaction; returns how many."""
    worthy = [e for e in events if e.action in EVENT_OF_ACTION]
    if not worthy:
        return 0
    channels = await ChatChannel.filter(deleted_at__isnull=True).order_by("id")
    if not channels:
        return 0
    rows = []
    for facts in await _facts(worthy):
        for channel in channels:
            if not _hears(channel, facts):
                continue
            delivery_id = f"msg_{uuid.uuid4().hex}"
            rows.append(
                ChatDelivery(
                    channel_id=channel.id,
                    audit_event_id=facts.event.id,
                    event=facts.kind.value,
                    delivery_id=delivery_id,
                    payload=render(ChatChannelKind(channel.kind), facts, delivery_id),
                    next_attempt_at=now(),
                )
            )
    if rows:
        await ChatDelivery.bulk_create(rows)
    return len(rows)


# --- what a notice says ---------------------------------------------------------------------


def _who(facts: Facts) -> str:
    return facts.actor.email if facts.actor is not None else "Greenlight"


def _status(facts: Facts) -> str | None:
    return (facts.event.after or {}).get("status") or (facts.event.after or {}).get("state")


def headline(facts: Facts) -> tuple[str, str]:
    """The notice in one sentence, and its tone (good, bad, info)."""
    image = f"{facts.image.repository}:{facts.image.tag}"
    where = f"{facts.application}/{facts.environment}"
    who = _who(facts)
    match facts.kind:
        case ChatEvent.REQUESTED:
            return f"Approval requested for {image} on {where} by {who}", "info"
        case ChatEvent.APPROVED:
            return f"{image} approved for {where} (last approval by {who})", "good"
        case ChatEvent.REJECTED:
            because = f": {facts.reason}" if facts.reason else ""
            return f"{image} rejected for {where} by {who}{because}", "bad"
        case ChatEvent.CANCELLED:
            return f"Approval request for {image} on {where} cancelled by {who}", "info"
        case ChatEvent.EXPIRED:
            by = f" (let expire by {who})" if facts.actor is not None else ""
            return f"The approval of {image} for {where} expired{by}", "info"
        case ChatEvent.DEPLOYED:
            return f"Deploying {image} to {where}, by {who}", "info"
        case _:
            status = _status(facts) or "finished"
            message = (facts.event.after or {}).get("message")
            tone = "good" if status == "HEALTHY" else "bad"
            return f"Rollout of {image} to {where} ended {status}" + (f": {message}" if message else ""), tone


def _link(facts: Facts) -> str | None:
    request_id = facts.request.id if facts.request else facts.deployment.approval_request_id
    return notifications.request_url(request_id) if request_id is not None else None


def _slack_escaped(text: str) -> str:
    """Slack reads &, < and > as markup (links, mentions): what people typed stays text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _generic(facts: Facts, delivery_id: str) -> dict:
    e, image = facts.event, facts.image
    text, _ = headline(facts)
    return {
        "type": TYPE_OF_EVENT[facts.kind],
        "event": facts.kind.value,
        "deliveryId": delivery_id,
        "auditEventId": f"AuditEvent:{e.id}",
        "at": e.at.isoformat(),
        "actor": None
        if facts.actor is None
        else {"id": f"User:{facts.actor.id}", "email": facts.actor.email, "name": facts.actor.name},
        "pipeline": {
            "id": f"Pipeline:{facts.pipeline_id}",
            "application": facts.application,
            "environment": facts.environment,
        },
        "image": {
            "id": f"Image:{image.id}",
            "repository": image.repository,
            "tag": image.tag,
            "digest": image.digest,
        },
        "approvalRequestId": f"ApprovalRequest:{facts.request.id}" if facts.request else None,
        "deploymentId": f"Deployment:{facts.deployment.id}" if facts.deployment else None,
        "status": _status(facts),
        "reason": facts.reason,
        "text": text,
        "url": _link(facts),
    }


def render(kind: ChatChannelKind, facts: Facts, delivery_id: str) -> dict:
    """The body a channel of `kind` is sent for `facts`."""
    if kind == ChatChannelKind.WEBHOOK:
        return _generic(facts, delivery_id)
    text, tone = headline(facts)
    link = _link(facts)
    if kind == ChatChannelKind.SLACK:
        shown = _slack_escaped(text) + (f" <{link}|Open the request>" if link else "")
        return {"text": shown, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": shown}}]}
    card = {
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": text,
        "themeColor": TEAMS_COLOURS[tone],
        "title": f"Greenlight: {facts.kind.value.replace('_', ' ').lower()}",
        "text": text,
    }
    if link:
        card["potentialAction"] = [
            {"@type": "OpenUri", "name": "Open the request", "targets": [{"os": "default", "uri": link}]}
        ]
    return card


# --- sending --------------------------------------------------------------------------------


async def _send(
    settings, client: httpx.AsyncClient, channel: ChatChannel, delivery: ChatDelivery
) -> str | None:
    """POSTs the delivery; None when the receiver accepted it, else what went wrong."""
    body = body_of(delivery.payload)
    headers = {"Content-Type": "application/json", "webhook-id": delivery.delivery_id}
    if channel.kind == ChatChannelKind.WEBHOOK:
        headers |= standard_headers(channel.secret, delivery.delivery_id, body)
        headers["X-Greenlight-Event"] = delivery.payload.get("type", "")
    return await outbox.post(client, channel.url, body, headers, settings.webhook_timeout_seconds)


async def deliver_due(settings, client: httpx.AsyncClient) -> int:
    """Send every chat delivery that is due; returns how many were accepted."""
    delivered = 0
    lease = settings.webhook_timeout_seconds + 30
    while (delivery := await outbox.claim(ChatDelivery, "delivered_at", lease)) is not None:
        channel = await ChatChannel.get(id=delivery.channel_id)
        if channel.deleted_at is not None:
            delivery.failed_at = now()
            delivery.last_error = "not sent: the channel was deleted"
            await delivery.save(update_fields=["failed_at", "last_error"])
            continue
        error = await _send(settings, client, channel, delivery)
        await outbox.record_http_attempt(delivery, error, settings)
        if error is None:
            delivered += 1
        else:
            log.warning(
                "chat delivery %s to %s, attempt %s, failed: %s",
                delivery.delivery_id,
                masked(channel.url),
                delivery.attempts,
                error,
            )
    return delivered
