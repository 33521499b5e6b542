"""Chat channels: super-admins say where approval events are told (R2).

What is sent, and when, is greenlight.notifications.chat's: deliveries come from the audit
log, so the approval workflow knows nothing of channels.
"""

from __future__ import annotations

import base64
import secrets
from urllib.parse import urlsplit

from greenlight.clock import now
from greenlight.errors import BadUserInput, InvalidState, not_found
from greenlight.models import ChatChannel, ChatChannelKind, ChatDelivery, ChatEvent, Environment, Pipeline
from greenlight.policies import Actor
from greenlight.tx import transaction
from greenlight.workflow import audit
from greenlight.workflow.guards import require_admin
from greenlight.workflow.reads import Page, page

MAX_URL = 2048


def _url(value: str) -> str:
    url = value.strip()
    if len(url) > MAX_URL:
        raise BadUserInput(f"url: at most {MAX_URL} characters", field="url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        raise BadUserInput("url: an http(s) URL, e.g. https://hooks.slack.com/services/...", field="url")
    return url


def _host(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}/"


def new_secret() -> str:
    """A Standard Webhooks key: whsec_ and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _describe(channel: ChatChannel) -> dict:
    return {
        "kind": ChatChannelKind(channel.kind).value,
        "host": _host(channel.url),
        "pipeline": channel.pipeline_id,
        "environment": channel.environment_id,
        "events": channel.events,
    }


async def create_channel(
    actor: Actor,
    kind: ChatChannelKind,
    url: str,
    pipeline_id: int | None,
    environment_id: int | None,
    events: list[ChatEvent] | None,
) -> ChatChannel:
    """R2: a channel on one pipeline, or on every pipeline of one environment, hearing the
    events listed (all when none are). A WEBHOOK channel gets a signing secret of its own,
    returned here (as `shown_secret`) and never again."""
    require_admin(actor, "manage chat channels")
    url = _url(url)
    if (pipeline_id is None) == (environment_id is None):
        raise BadUserInput("give exactly one of pipelineId and environmentId", field="pipelineId")
    if events is not None and not events:
        raise BadUserInput("events: list at least one event, or leave it out for all", field="events")
    kinds = None if events is None else [e.value for e in dict.fromkeys(events)]
    async with transaction():
        pipeline = environment = None
        if pipeline_id is not None:
            pipeline = (
                await Pipeline.filter(id=pipeline_id).select_related("application", "environment").first()
            )
            if pipeline is None:
                raise not_found("pipeline")
        else:
            environment = await Environment.get_or_none(id=environment_id)
            if environment is None:
                raise not_found("environment")
        secret = new_secret() if kind == ChatChannelKind.WEBHOOK else None
        channel = await ChatChannel.create(
            kind=kind,
            url=url,
            pipeline=pipeline,
            environment=environment,
            events=kinds,
            secret=secret,
            created_by_id=actor.id,
        )
        await audit.record(
            "create_chat_channel",
            channel,
            actor_id=actor.id,
            after=_describe(channel),
            application=pipeline.application.name if pipeline else None,
            environment=(environment or (pipeline and pipeline.environment)).name,
        )
    channel.shown_secret = secret
    return channel


async def delete_channel(actor: Actor, channel_id: int) -> ChatChannel:
    """R2. The channel hears nothing more; what it had not been sent yet is marked failed
    (kept, with the reason), and its URL's path and its secret are forgotten."""
    require_admin(actor, "manage chat channels")
    async with transaction():
        channel = await ChatChannel.select_for_update().get_or_none(id=channel_id, deleted_at__isnull=True)
        if channel is None:
            raise not_found("chat channel")
        before = _describe(channel)
        channel.deleted_at = now()
        channel.url = _host(channel.url)
        channel.secret = None
        await channel.save(update_fields=["deleted_at", "url", "secret"])
        await ChatDelivery.filter(
            channel_id=channel.id, delivered_at__isnull=True, failed_at__isnull=True
        ).update(failed_at=now(), last_error="not sent: the channel was deleted")
        await audit.record("delete_chat_channel", channel, actor_id=actor.id, before=before)
    return channel


async def channels(actor: Actor) -> list[ChatChannel]:
    """R2: the channels in use, oldest first."""
    require_admin(actor, "read chat channels")
    return await ChatChannel.filter(deleted_at__isnull=True).order_by("id")


async def channel(actor: Actor, channel_id: int) -> ChatChannel:
    require_admin(actor, "read chat channels")
    found = await ChatChannel.get_or_none(id=channel_id, deleted_at__isnull=True)
    if found is None:
        raise not_found("chat channel")
    return found


async def list_deliveries(actor: Actor, failed_only: bool, first: int | None, after_id: int | None) -> Page:
    """R2: the chat outbox, newest first; `failed_only`: those given up."""
    require_admin(actor, "read chat deliveries")
    query = ChatDelivery.all().select_related("channel")
    if failed_only:
        query = query.filter(failed_at__isnull=False)
    return await page(query, first, after_id)


async def delivery(actor: Actor, delivery_id: int) -> ChatDelivery:
    require_admin(actor, "read chat deliveries")
    found = await ChatDelivery.get_or_none(id=delivery_id)
    if found is None:
        raise not_found("chat delivery")
    return found


async def retry_delivery(actor: Actor, delivery_id: int) -> ChatDelivery:
    """R2: a failed delivery goes back to the queue, its attempts counted afresh; it is the
    same message (body and webhook-id) as before."""
    require_admin(actor, "retry chat deliveries")
    async with transaction():
        found = await ChatDelivery.select_for_update().get_or_none(id=delivery_id)
        if found is None:
            raise not_found("chat delivery")
        if found.failed_at is None:
            raise InvalidState("only a failed chat delivery can be retried")
        channel = await ChatChannel.get(id=found.channel_id)
        if channel.deleted_at is not None:
            raise InvalidState("its channel was deleted: there is nowhere to send it")
        found.failed_at = None
        found.attempts = 0
        found.next_attempt_at = now()
        await found.save(update_fields=["failed_at", "attempts", "next_attempt_at"])
        await audit.record("retry_chat_delivery", found, actor_id=actor.id)
    return found
