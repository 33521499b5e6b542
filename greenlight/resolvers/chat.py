"""Resolvers of chat channels: each is one workflow call."""

from __future__ import annotations

from typing import Annotated

import strawberry

from greenlight.schema import ids
from greenlight.schema.arguments import After, First, described
from greenlight.schema.chat import ChatChannel, ChatDelivery, CreateChatChannelInput
from greenlight.schema.context import Info
from greenlight.schema.nodes import Connection, connection
from greenlight.workflow import chat


async def chat_channels(info: Info) -> list[ChatChannel]:
    return [ChatChannel.from_model(c) for c in await chat.channels(info.context.actor)]


async def create_chat_channel(
    info: Info, input: Annotated[CreateChatChannelInput, described("Where to tell which events.")]
) -> ChatChannel:
    channel = await chat.create_channel(
        info.context.actor,
        kind=input.kind,
        url=input.url,
        pipeline_id=ids.decode_optional("Pipeline", input.pipeline_id, "pipelineId"),
        environment_id=ids.decode_optional("Environment", input.environment_id, "environmentId"),
        events=input.events,
    )
    return ChatChannel.from_model(channel)


async def delete_chat_channel(
    info: Info, id: Annotated[strawberry.ID, described('"ChatChannel:<number>".')]
) -> ChatChannel:
    return ChatChannel.from_model(
        await chat.delete_channel(info.context.actor, ids.decode("ChatChannel", id, "id"))
    )


async def chat_deliveries(
    info: Info,
    failed_only: Annotated[bool, described("Only the deliveries given up.")] = False,
    first: First = 20,
    after: After = None,
) -> Connection[ChatDelivery]:
    found = await chat.list_deliveries(info.context.actor, failed_only, first, ids.decode_cursor(after))
    return connection(found, ChatDelivery)


async def retry_chat_delivery(
    info: Info, id: Annotated[strawberry.ID, described('"ChatDelivery:<number>", a failed one.')]
) -> ChatDelivery:
    return ChatDelivery.from_model(
        await chat.retry_delivery(info.context.actor, ids.decode("ChatDelivery", id, "id"))
    )
