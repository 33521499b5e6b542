"""The domain's enumerations, shared by the models, the workflow and the schema."""

from enum import StrEnum


class Role(StrEnum):
    SUPER_ADMIN = "super-admin"
    BUILD_AND_DEPLOY = "build-and-deploy"
    IMAGE_APPROVER = "image-approver"
    VIEWER = "viewer"
    DEPLOY_AGENT = "deploy-agent"  # an external CD system reporting rollout progress


class ApprovalState(StrEnum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"
    CONSUMED = "CONSUMED"


LIVE_STATES = (ApprovalState.PENDING, ApprovalState.APPROVED)


class DeploymentStatus(StrEnum):
    PROGRESSING = "PROGRESSING"
    HEALTHY = "HEALTHY"
    DEGRADED = "DEGRADED"
    FAILED = "FAILED"
    SUPERSEDED = "SUPERSEDED"


ACTIVE_STATUSES = (DeploymentStatus.PROGRESSING, DeploymentStatus.HEALTHY)


class DeploymentStrategy(StrEnum):
    ROLLING = "ROLLING"
    RECREATE = "RECREATE"
    BLUE_GREEN = "BLUE_GREEN"
    CANARY = "CANARY"


class TriggerType(StrEnum):
    MANUAL = "MANUAL"
    AUTOMATIC = "AUTOMATIC"
