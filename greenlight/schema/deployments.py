"""Deployments: one image rolled out on one pipeline, and the steps of its rollout."""

from __future__ import annotations

from datetime import datetime

import strawberry

from greenlight import models
from greenlight.clock import now
from greenlight.rollout import plan
from greenlight.schema.catalog import Pipeline
from greenlight.schema.context import Info
from greenlight.schema.enums import DeploymentStatus, DeploymentStrategy, described_enum
from greenlight.schema.identity import User, user_of
from greenlight.schema.images import Image
from greenlight.schema.nodes import Node
from greenlight.schema.requests import ApprovalRequest


@strawberry.type(
    description="One image rolled out on one pipeline: PROGRESSING, then HEALTHY, DEGRADED, FAILED or SUPERSEDED (R23)."
)
class Deployment(Node):
    model: strawberry.Private[models.Deployment]

    pipeline: Pipeline

    @strawberry.field(description="Where it rolls out.")
    async def pipeline(self, info: Info) -> Pipeline:
        return Pipeline.from_model(await info.context.loaders.pipeline.load(self.model.pipeline_id))

    image: Image

    @strawberry.field(description="What it rolls out.")
    async def image(self, info: Info) -> Image:
        return Image.from_model(await info.context.loaders.image.load(self.model.image_id))

    status: DeploymentStatus = strawberry.field(description="Where the rollout stands (R23).")
    strategy: DeploymentStrategy = strawberry.field(description="The pipeline's strategy when it started.")

    triggered_by: User

    @strawberry.field(description="Who deployed; the requester for an automatic deploy (R24).")
    def triggered_by(self, info: Info) -> User:
        return user_of(info, self.model.triggered_by_id)

    approval_request: ApprovalRequest | None

    @strawberry.field(description="The request it consumed (R20); null when none was needed.")
    async def approval_request(self, info: Info) -> ApprovalRequest | None:
        if self.model.approval_request_id is None:
            return None
        return ApprovalRequest.from_model(
            await info.context.loaders.request.load(self.model.approval_request_id)
        )

    started_at: datetime = strawberry.field(description="When it started.")
    finished_at: datetime | None = strawberry.field(description="When it ended; null while PROGRESSING.")
    approval_exception: bool = strawberry.field(
        description="Deployed by an exception user of the pipeline, without approval."
    )
    freeze_override_reason: str | None = strawberry.field(
        description="Set when a super-admin deployed through a freeze."
    )
    message: str | None = strawberry.field(description="What the rollout driver or CD system said last.")

    @strawberry.field(description="The simulator's steps and where the rollout stands.")
    def steps(self) -> list[DeploymentStep]:
        return [DeploymentStep(name=step.name, status=step.status) for step in plan.steps(self.model, now())]

    @classmethod
    def from_model(cls, model: models.Deployment) -> Deployment:
        return cls(
            model=model,
            status=models.DeploymentStatus(model.status),
            strategy=models.DeploymentStrategy(model.strategy),
            started_at=model.started_at,
            finished_at=model.finished_at,
            approval_exception=model.approval_exception,
            freeze_override_reason=model.freeze_override_reason,
            message=model.message,
        )


StepStatus = described_enum(
    plan.StepStatus,
    "Where one step of a rollout stands.",
    {
        "PENDING": "Not started yet.",
        "RUNNING": "Under way.",
        "DONE": "Finished.",
        "FAILED": "Failed: the deployment ends DEGRADED or FAILED.",
        "SKIPPED": "Not run: the rollout ended before it.",
    },
)


@strawberry.type(description="One step of a rollout, as the built-in simulator plays the strategy.")
class DeploymentStep:
    name: str = strawberry.field(description='The step, e.g. "canary 10%".')
    status: StepStatus = strawberry.field(description="Where the step stands.")
