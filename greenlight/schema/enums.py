"""GraphQL enums, the domain's own (greenlight.models.enums) under the contract's names,
each value described here (the domain's enums know nothing of GraphQL)."""

from enum import Enum

import strawberry

from greenlight import models


def described_enum(cls: type[Enum], description: str, values: dict[str, str]) -> type[Enum]:
    """`cls` as the GraphQL enum of its name, with a description for each of its values."""
    unknown = set(values) - set(cls.__members__)
    if unknown:
        raise ValueError(f"{cls.__name__} has no values {sorted(unknown)}")
    strawberry.enum(cls, name=cls.__name__, description=description)
    for value in cls.__strawberry_definition__.values:
        value.description = values.get(value.name)
    return cls


Role = described_enum(
    models.Role,
    "A role, granted to a user or group on a scope (R1 to R5).",
    {
        "SUPER_ADMIN": "Everything, everywhere (R2); the default approvers (R4).",
        "BUILD_AND_DEPLOY": "Register images, request approval, cancel one's own requests, deploy (R3).",
        "IMAGE_APPROVER": "Approve or reject requests on the scope (R4).",
        "VIEWER": "Read only (R1).",
        "DEPLOY_AGENT": "An external CD system: reports rollout progress (reportDeploymentStatus), nothing else.",
    },
)
ApprovalState = described_enum(
    models.ApprovalState,
    "Where an approval request stands (R12 to R20). PENDING and APPROVED are live.",
    {
        "PENDING": "Waiting for approvals; not deployable yet (R12).",
        "APPROVED": "Enough approvals: the image may be deployed once (R12, R20).",
        "REJECTED": "An approver rejected it, with a reason (R13).",
        "CANCELLED": "Withdrawn by the requester or a super-admin before use (R14, R18).",
        "EXPIRED": "Its expiresAt passed, or the requester let it expire (R15).",
        "CONSUMED": "Used by a deployment; the next deploy needs a new approval (R20).",
    },
)
DeploymentStatus = described_enum(
    models.DeploymentStatus,
    "Where a deployment stands (R23).",
    {
        "PROGRESSING": "Rolling out; the image is already the pipeline's active one.",
        "HEALTHY": "Rolled out and running.",
        "DEGRADED": "Rolled out, but not healthy.",
        "FAILED": "The rollout failed.",
        "SUPERSEDED": "A newer deployment on the pipeline replaced it while it was progressing.",
    },
)
DeploymentStrategy = described_enum(
    models.DeploymentStrategy,
    "How a deployment rolls out.",
    {
        "ROLLING": "Replace instances a few at a time.",
        "RECREATE": "Stop the old version, then start the new one.",
        "BLUE_GREEN": "Start the new version beside the old, then switch traffic to it.",
        "CANARY": "Send 10%, 50%, then 100% of traffic to the new version.",
    },
)
TriggerType = described_enum(
    models.TriggerType,
    "Who starts a deployment once an image is approved.",
    {
        "MANUAL": "Someone with build-and-deploy runs deployImage (R20).",
        "AUTOMATIC": "Greenlight deploys it, for the requester, the moment the request is APPROVED (R24).",
    },
)
ApprovalPolicyKind = described_enum(
    models.ApprovalPolicyKind,
    "Whose approvals a policy counts.",
    {
        "ANY": "requiredApprovals approvals from anyone eligible (R9, R12).",
        "SPECIFIC_USERS": "Every listed user must approve.",
        "GROUP_QUORUMS": "At least minApprovals from the members of each listed group.",
    },
)
Weekday = described_enum(
    models.Weekday,
    "A day of the week, for weekly deploy freezes.",
    {day.name: day.name.capitalize() + "." for day in models.Weekday},
)
