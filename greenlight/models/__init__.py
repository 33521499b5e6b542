"""Tortoise models: what Greenlight stores."""

from greenlight.models.catalog import Application, Environment, Image, Pipeline
from greenlight.models.enums import (
    ACTIVE_STATUSES,
    LIVE_STATES,
    ApprovalState,
    DeploymentStatus,
    DeploymentStrategy,
    Role,
    TriggerType,
)
from greenlight.models.identity import ApiToken, Group, GroupMember, PolicyVersion, RoleBinding, User
from greenlight.models.workflow import (
    Approval,
    ApprovalRequest,
    AuditEvent,
    Deployment,
    EmailOutbox,
    NamedApprover,
    Rejection,
    WebhookDelivery,
)

__all__ = [
    "ACTIVE_STATUSES",
    "LIVE_STATES",
    "ApiToken",
    "Application",
    "Approval",
    "ApprovalRequest",
    "ApprovalState",
    "AuditEvent",
    "Deployment",
    "DeploymentStatus",
    "DeploymentStrategy",
    "EmailOutbox",
    "Environment",
    "Group",
    "GroupMember",
    "Image",
    "NamedApprover",
    "Pipeline",
    "PolicyVersion",
    "Rejection",
    "Role",
    "RoleBinding",
    "TriggerType",
    "User",
    "WebhookDelivery",
]
