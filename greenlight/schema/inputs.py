"""GraphQL input types of the contract."""

from __future__ import annotations

from datetime import datetime

import strawberry

from greenlight.schema.enums import ApprovalState, DeploymentStrategy, Role, TriggerType


@strawberry.input
class ApprovalRequestFilter:
    states: list[ApprovalState] | None = None
    pipeline_id: strawberry.ID | None = None
    awaiting_my_approval: bool | None = None


@strawberry.input
class RegisterImageInput:
    application: str
    repository: str
    tag: str
    digest: str


@strawberry.input
class RequestApprovalInput:
    pipeline_id: strawberry.ID
    image_id: strawberry.ID
    approver_ids: list[strawberry.ID] | None = strawberry.field(default_factory=list)
    comment: str | None = None


@strawberry.input
class DeployImageInput:
    pipeline_id: strawberry.ID
    image_id: strawberry.ID


@strawberry.input
class CreateUserInput:
    email: str
    name: str


@strawberry.input
class IssueApiTokenInput:
    user_id: strawberry.ID
    name: str
    ttl_hours: int | None = None


@strawberry.input
class CreatePipelineInput:
    application_id: strawberry.ID
    environment_id: strawberry.ID
    strategy: DeploymentStrategy | None = DeploymentStrategy.ROLLING
    trigger_type: TriggerType | None = TriggerType.MANUAL
    required_approvals: int | None = 0
    ttl_hours: int | None = None
    approvers_can_deploy: bool | None = False


@strawberry.input
class ApprovalPolicyInput:
    required_approvals: int
    ttl_hours: int | None = None
    approvers_can_deploy: bool | None = False


@strawberry.input
class RoleBindingInput:
    user_id: strawberry.ID
    role: Role
    application: str | None = "*"
    environment: str | None = "*"


@strawberry.input
class AuditEventFilter:
    application: str | None = None
    environment: str | None = None
    actor_id: strawberry.ID | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@strawberry.input
class GroupRoleBindingInput:
    group_id: strawberry.ID
    role: Role
    application: str | None = "*"
    environment: str | None = "*"
