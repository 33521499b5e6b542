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


class ApprovalPolicyKind(StrEnum):
    ANY = "ANY"  # N approvals from anyone eligible
    SPECIFIC_USERS = "SPECIFIC_USERS"  # every listed user must approve
    GROUP_QUORUMS = "GROUP_QUORUMS"  # at least K approvals from each listed group


class Weekday(StrEnum):
    MONDAY = "MONDAY"
    TUESDAY = "TUESDAY"
    WEDNESDAY = "WEDNESDAY"
    THURSDAY = "THURSDAY"
    FRIDAY = "FRIDAY"
    SATURDAY = "SATURDAY"
    SUNDAY = "SUNDAY"

    @property
    def number(self) -> int:
        """Monday is 0, as in datetime.weekday()."""
        return list(Weekday).index(self)


class CheckStatus(StrEnum):
    """Where a CI check on an image stands (reportImageCheck)."""

    PASSED = "PASSED"
    FAILED = "FAILED"
    PENDING = "PENDING"
