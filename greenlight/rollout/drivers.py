"""Which rollout driver this process uses, and what it does inside a deploy's transaction.

`configure` is called once at start (by the app); the workflow calls `on_start` and
`on_superseded` in the transaction that starts or supersedes a deployment.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from greenlight.clock import now
from greenlight.models import Deployment, Image, Pipeline, WebhookDelivery

# How a driver ends a rollout: the workflow's `finish_rollout(deployment_id, status,
# message=..., failed_step=...)`, handed in by greenlight.jobs, since adapters never import
# the workflow (it raises INVALID_STATE for one that ended meanwhile).
Finish = Callable[..., Awaitable[Deployment]]


@dataclass(frozen=True)
class RolloutConfig:
    deployer: str = "simulator"
    rollout_seconds: float = 90.0
    failure_rate: float = 0.0


_config = RolloutConfig()


def configure(settings) -> None:
    global _config
    _config = RolloutConfig(
        deployer=settings.deployer,
        rollout_seconds=settings.rollout_seconds,
        failure_rate=settings.simulator_failure_rate,
    )


def current() -> RolloutConfig:
    return _config


def deployment_fields() -> dict:
    """What a new deployment records of the driver that will roll it out."""
    config = current()
    if config.deployer == "simulator":
        return {"driver": "simulator", "rollout_seconds": config.rollout_seconds}
    return {"driver": config.deployer, "rollout_seconds": None}


def _payload(event: str, deployment: Deployment, pipeline: Pipeline, image: Image) -> dict:
    return {
        "event": event,
        "deploymentId": f"Deployment:{deployment.id}",
        "application": pipeline.application.name,
        "environment": pipeline.environment.name,
        "image": {
            "id": f"Image:{image.id}",
            "repository": image.repository,
            "tag": image.tag,
            "digest": image.digest,
        },
        "strategy": str(deployment.strategy),
        "approvalRequestId": (
            f"ApprovalRequest:{deployment.approval_request_id}" if deployment.approval_request_id else None
        ),
        "startedAt": deployment.started_at.isoformat(),
    }


async def on_start(deployment: Deployment, pipeline: Pipeline, image: Image) -> None:
    if deployment.driver == "webhook":
        await WebhookDelivery.create(
            deployment=deployment,
            payload=_payload("deployment.started", deployment, pipeline, image),
            next_attempt_at=now(),
        )


async def on_superseded(deployment: Deployment, pipeline: Pipeline) -> None:
    """Tell the external system to stop rolling out a deployment that was replaced."""
    if deployment.driver == "webhook":
        image = await Image.get(id=deployment.image_id)
        await WebhookDelivery.create(
            deployment=deployment,
            payload=_payload("deployment.superseded", deployment, pipeline, image),
            next_attempt_at=now(),
        )
