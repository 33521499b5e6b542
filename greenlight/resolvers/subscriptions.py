"""Subscription resolvers, like the query and mutation ones: live updates (R25) of deployments
and approval requests, as their callers may see them.

A subscription is authorised when it starts, as every operation on a socket is
(greenlight.schema.context), and again whenever it wakes (an event, or every
GREENLIGHT_SUBSCRIPTION_RECHECK_SECONDS): credentials still valid and roles as of now
(R5). Once the credentials no longer hold it closes the socket with code 4403 and the
reason.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from typing import Annotated

import strawberry

from greenlight.errors import NotFound, RateLimited
from greenlight.events import Event, bus
from greenlight.schema import ids
from greenlight.schema.arguments import described
from greenlight.schema.context import CredentialsWithdrawn, Info
from greenlight.schema.deployments import Deployment
from greenlight.schema.loaders import Loaders
from greenlight.schema.requests import ApprovalRequest
from greenlight.workflow.deployments import TERMINAL
from greenlight.workflow.guards import visible_deployment, visible_request

DEFAULT_RECHECK_SECONDS = 30.0


async def _next_event(info: Info, queue: asyncio.Queue[Event]) -> Event | None:
    """The next event, or None after a quiet interval; both after authorising again."""
    context = info.context
    interval = getattr(context.settings, "subscription_recheck_seconds", DEFAULT_RECHECK_SECONDS)
    try:
        event = await asyncio.wait_for(queue.get(), timeout=interval)
    except TimeoutError:
        event = None
    await context.authorize_again()
    if context.actor_or_none is None:  # the database is out of reach: try again on waking
        return None
    # One context serves the whole subscription: each event is read afresh, not from the
    # loaders' cache of an earlier one.
    context.loaders = Loaders()
    return event


@contextlib.asynccontextmanager
async def _slot(info: Info):
    """One of the credential's live subscriptions (GREENLIGHT_MAX_SUBSCRIPTIONS_PER_TOKEN)."""
    cap = getattr(info.context, "subscriptions", None)
    key = getattr(info.context, "credential_key", None)
    if cap is None or key is None:
        yield
        return
    if not cap.acquire(key):
        raise RateLimited(f"at most {cap.limit} live subscriptions per token; end one first")
    try:
        yield
    finally:
        cap.release(key)


@strawberry.type(
    description="Live updates over WebSocket (graphql-transport-ws), each as its subscriber may see it (R1, R25)."
)
class Subscription:
    @strawberry.subscription(description="Every status change; ends after a terminal one.")
    async def deployment_status(
        self,
        info: Info,
        deployment_id: Annotated[
            strawberry.ID, described('"Deployment:<number>", one the caller can see (R1).')
        ],
    ) -> AsyncGenerator[Deployment, None]:
        did = ids.decode("Deployment", deployment_id, "deploymentId")
        async with _slot(info), bus.subscribe() as queue:
            deployment = await visible_deployment(info.context.actor, did)
            yield Deployment.from_model(deployment)
            last = deployment.status
            while last not in TERMINAL:
                try:
                    event = await _next_event(info, queue)
                except CredentialsWithdrawn:
                    return
                if event is None or event.kind != "Deployment" or event.id != did:
                    continue
                try:  # the subscriber may have lost access meanwhile (R1, R5)
                    deployment = await visible_deployment(info.context.actor, did)
                except NotFound:
                    return
                if deployment.status != last:
                    last = deployment.status
                    yield Deployment.from_model(deployment)

    @strawberry.subscription(description="Each state change or new approval of a request the caller may see.")
    async def approval_request_events(
        self,
        info: Info,
        pipeline_id: Annotated[
            strawberry.ID | None,
            described("Only this pipeline's requests; omitted: every request the caller can see."),
        ] = None,
    ) -> AsyncGenerator[ApprovalRequest, None]:
        pid = ids.decode_optional("Pipeline", pipeline_id, "pipelineId")
        async with _slot(info), bus.subscribe() as queue:
            while True:
                try:
                    event = await _next_event(info, queue)
                except CredentialsWithdrawn:
                    return
                if event is None or event.kind != "ApprovalRequest":
                    continue
                try:
                    request = await visible_request(info.context.actor, event.id)
                except NotFound:
                    continue
                if pid is None or request.pipeline_id == pid:
                    yield ApprovalRequest.from_model(request)
