"""Live updates (R25): deployments and approval requests, as their callers may see them."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry

from greenlight import models
from greenlight.events import bus
from greenlight.schema import ids
from greenlight.schema.context import Info
from greenlight.schema.types import ApprovalRequest, Deployment
from greenlight.workflow.deployments import TERMINAL
from greenlight.workflow.errors import NotFound
from greenlight.workflow.guards import visible_deployment, visible_request


@strawberry.type
class Subscription:
    @strawberry.subscription(description="Every status change; ends after a terminal one.")
    async def deployment_status(
        self, info: Info, deployment_id: strawberry.ID
    ) -> AsyncGenerator[Deployment, None]:
        actor = info.context.actor
        did = ids.decode("Deployment", deployment_id, "deploymentId")
        async with bus.subscribe() as queue:
            deployment = await visible_deployment(actor, did)
            yield Deployment(model=deployment)
            last = deployment.status
            while last not in TERMINAL:
                event = await queue.get()
                if event.kind != "Deployment" or event.id != did:
                    continue
                deployment = await models.Deployment.get(id=did)
                if deployment.status != last:
                    last = deployment.status
                    yield Deployment(model=deployment)

    @strawberry.subscription(description="Each state change or new approval of a request the caller may see.")
    async def approval_request_events(
        self, info: Info, pipeline_id: strawberry.ID | None = None
    ) -> AsyncGenerator[ApprovalRequest, None]:
        actor = info.context.actor
        pid = ids.decode_optional("Pipeline", pipeline_id, "pipelineId")
        async with bus.subscribe() as queue:
            while True:
                event = await queue.get()
                if event.kind != "ApprovalRequest":
                    continue
                await actor.authorizer.refresh()
                try:
                    request = await visible_request(actor, event.id)
                except NotFound:
                    continue
                if pid is None or request.pipeline_id == pid:
                    yield ApprovalRequest(model=request)
