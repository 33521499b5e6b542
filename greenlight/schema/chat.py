"""GraphQL types of chat channels (greenlight.workflow.chat): where approval events are told."""

from __future__ import annotations

from datetime import datetime

import strawberry

from greenlight import models
from greenlight.schema.catalog import Environment, Pipeline
from greenlight.schema.context import Info
from greenlight.schema.enums import described_enum
from greenlight.schema.identity import User, user_of
from greenlight.schema.nodes import Node
from greenlight.workflow.chat import _host

ChatChannelKind = described_enum(
    models.ChatChannelKind,
    "What a chat channel's URL is, which decides the body it is sent.",
    {
        "SLACK": 'A Slack incoming webhook: {"text": ...} with a section block.',
        "TEAMS": "A Microsoft Teams incoming webhook: a MessageCard with the text and a link.",
        "WEBHOOK": "Any HTTP receiver: a JSON event (type, ids, actor, pipeline, image, time), "
        "signed the Standard Webhooks way with the channel's own secret.",
    },
)
ChatEvent = described_enum(
    models.ChatEvent,
    "An approval event a chat channel may hear of; each is sent once its outcome committed.",
    {
        "REQUESTED": "Someone asked for an image to be approved (R6).",
        "APPROVED": "A request reached its approvals and is APPROVED (R12).",
        "REJECTED": "An approver rejected a request, with the reason (R13).",
        "CANCELLED": "A request was cancelled (R14, R18, or stale).",
        "EXPIRED": "An approval expired, by the clock or let expire (R15).",
        "DEPLOYED": "An image started rolling out on a pipeline (R20, R23, R24).",
        "ROLLOUT_FINISHED": "A rollout ended HEALTHY, DEGRADED or FAILED (R23).",
    },
)


@strawberry.input(description="A chat channel: exactly one of pipelineId and environmentId.")
class CreateChatChannelInput:
    kind: ChatChannelKind = strawberry.field(description="What the URL is.")
    url: str = strawberry.field(
        description="The incoming webhook's URL (http or https). A secret: never shown again, only its host."
    )
    pipeline_id: strawberry.ID | None = strawberry.field(
        default=None, description="Tell the events of this pipeline."
    )
    environment_id: strawberry.ID | None = strawberry.field(
        default=None, description="Tell the events of every pipeline of this environment."
    )
    events: list[ChatEvent] | None = strawberry.field(
        default=None, description="The events to tell (at least one); left out: all of them."
    )


@strawberry.type(
    description="Where approval events are told (Slack, Teams or a signed webhook); super-admins only (R2)."
)
class ChatChannel(Node):
    model: strawberry.Private[models.ChatChannel]

    kind: ChatChannelKind = strawberry.field(description="What the URL is.")

    url_host: str

    @strawberry.field(
        description='The URL\'s scheme and host only ("https://hooks.slack.com/"): the rest is its secret.'
    )
    def url_host(self) -> str:
        return _host(self.model.url)

    pipeline: Pipeline | None

    @strawberry.field(description="The pipeline whose events it hears; null for an environment's channel.")
    async def pipeline(self, info: Info) -> Pipeline | None:
        if self.model.pipeline_id is None:
            return None
        return Pipeline.from_model(await info.context.loaders.pipeline.load(self.model.pipeline_id))

    environment: Environment | None

    @strawberry.field(
        description="The environment whose pipelines' events it hears; null for a pipeline's channel."
    )
    async def environment(self, info: Info) -> Environment | None:
        if self.model.environment_id is None:
            return None
        return Environment.from_model(await info.context.loaders.environment.load(self.model.environment_id))

    events: list[ChatEvent] | None = strawberry.field(description="The events it hears; null: all of them.")

    signing_secret: str | None

    @strawberry.field(
        description="WEBHOOK channels: the Standard Webhooks secret (whsec_...) receivers verify "
        "with. Only in createChatChannel's answer: keep it then; null everywhere else."
    )
    def signing_secret(self) -> str | None:
        return getattr(self.model, "shown_secret", None)

    created_by: User

    @strawberry.field(description="Who made it.")
    def created_by(self, info: Info) -> User:
        return user_of(info, self.model.created_by_id)

    created_at: datetime = strawberry.field(description="When it was made.")

    @classmethod
    def from_model(cls, model: models.ChatChannel) -> ChatChannel:
        return cls(
            model=model,
            kind=models.ChatChannelKind(model.kind),
            events=None if model.events is None else [models.ChatEvent(e) for e in model.events],
            created_at=model.created_at,
        )


@strawberry.type(description="A chat notice in the outbox: sent, waiting, or given up (super-admins only).")
class ChatDelivery(Node):
    model: strawberry.Private[models.ChatDelivery]

    event: ChatEvent = strawberry.field(description="The event it tells.")
    delivery_id: str = strawberry.field(
        description="The webhook-id header of every attempt: receivers drop a repeat by it."
    )

    channel: ChatChannel

    @strawberry.field(description="The channel it goes to (deleted ones included).")
    async def channel(self) -> ChatChannel:
        found = self.model.channel  # fetched with the row by chatDeliveries, else a query
        if not isinstance(found, models.ChatChannel):
            found = await found
        return ChatChannel.from_model(found)

    attempts: int = strawberry.field(description="Attempts made (counted afresh by retryChatDelivery).")
    last_error: str | None = strawberry.field(
        description="What went wrong on the last attempt; null when none failed."
    )
    delivered_at: datetime | None = strawberry.field(
        description="When the receiver accepted it; null until then."
    )
    failed_at: datetime | None = strawberry.field(
        description="When it was given up (GREENLIGHT_WEBHOOK_MAX_ATTEMPTS, or its channel deleted); "
        "null while it is sent or retried."
    )
    created_at: datetime = strawberry.field(description="When it was written.")

    @classmethod
    def from_model(cls, model: models.ChatDelivery) -> ChatDelivery:
        return cls(
            model=model,
            event=models.ChatEvent(model.event),
            delivery_id=model.delivery_id,
            attempts=model.attempts,
            last_error=model.last_error,
            delivered_at=model.delivered_at,
            failed_at=model.failed_at,
            created_at=model.created_at,
        )
