"""GraphQL input types of the contract."""

from __future__ import annotations

from datetime import datetime

import strawberry

from greenlight.schema.enums import (
    ApprovalPolicyKind,
    ApprovalState,
    DeploymentStrategy,
    Role,
    TriggerType,
    Weekday,
)


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
    acknowledge_stale: bool | None = strawberry.field(
        default=False, description="Deploy an image older than the active one (a rollback)."
    )
    freeze_override_reason: str | None = strawberry.field(
        default=None, description="Super-admins: deploy through a freeze, for this reason."
    )


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
class GroupQuorumInput:
    group_id: strawberry.ID
    min_approvals: int


@strawberry.input(
    description=(
        "The whole approval policy. requiredApprovals, ttlHours and approversCanDeploy are set "
        "as given, and those left out take their defaults: ttlHours null (requests never "
        "expire), approversCanDeploy false. Each field after approversCanDeploy, left out or "
        "null, keeps the current value. To change one setting alone, use updatePipeline."
    )
)
class ApprovalPolicyInput:
    required_approvals: int = strawberry.field(description="0 to 6; 0: deploys need no approval (R18).")
    ttl_hours: int | None = strawberry.field(
        default=None, description="1 to 8760; left out or null: requests never expire."
    )
    approvers_can_deploy: bool | None = strawberry.field(default=False, description="Left out: false (R21).")
    kind: ApprovalPolicyKind | None = None
    approver_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="SPECIFIC_USERS: each of them must approve."
    )
    group_quorums: list[GroupQuorumInput] | None = strawberry.field(
        default=None, description="GROUP_QUORUMS: at least minApprovals from each group."
    )
    count_once_per_person: bool | None = strawberry.field(
        default=None,
        description="GROUP_QUORUMS: one person's approval counts for one group only (default true).",
    )
    exception_user_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="Users who may deploy without approval."
    )
    exception_group_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="Groups whose members may deploy without approval."
    )
    cancel_stale_requests: bool | None = strawberry.field(
        default=None,
        description="Cancel live requests for older images when a newer one is deployed (default false).",
    )


@strawberry.input(
    description=(
        "An edit of a pipeline: only the fields given change; each one left out or null keeps "
        "its current value."
    )
)
class PipelineUpdateInput:
    strategy: DeploymentStrategy | None = strawberry.field(default=None, description="How it rolls out.")
    trigger_type: TriggerType | None = strawberry.field(
        default=None, description="AUTOMATIC: an approved request deploys at once (R24)."
    )
    required_approvals: int | None = strawberry.field(
        default=None, description="0 to 6; setting 0 cancels the live requests (R18)."
    )
    ttl_hours: int | None = strawberry.field(
        default=None, description="1 to 8760, for requests made from now on (R7)."
    )
    clear_ttl_hours: bool | None = strawberry.field(
        default=None, description="true: requests made from now on never expire (not with ttlHours)."
    )
    approvers_can_deploy: bool | None = strawberry.field(
        default=None, description="Whether a user who approved a request may deploy it (R21)."
    )
    kind: ApprovalPolicyKind | None = strawberry.field(
        default=None,
        description="ANY, SPECIFIC_USERS (with approverIds) or GROUP_QUORUMS (with groupQuorums).",
    )
    approver_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="SPECIFIC_USERS: each of them must approve."
    )
    group_quorums: list[GroupQuorumInput] | None = strawberry.field(
        default=None, description="GROUP_QUORUMS: at least minApprovals from each group."
    )
    count_once_per_person: bool | None = strawberry.field(
        default=None, description="GROUP_QUORUMS: one person's approval counts for one group only."
    )
    exception_user_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="Users who may deploy without approval (replaces the list)."
    )
    exception_group_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="Groups whose members may deploy without approval (replaces the list)."
    )
    cancel_stale_requests: bool | None = strawberry.field(
        default=None, description="Cancel live requests for older images when a newer one is deployed."
    )


@strawberry.input
class WeeklyWindowInput:
    time_zone: str = strawberry.field(description="An IANA time zone name, such as Europe/Berlin.")
    start_day: Weekday
    start_time: str = strawberry.field(description='"HH:MM", wall-clock in timeZone.')
    end_day: Weekday
    end_time: str


@strawberry.input(description="Exactly one of environmentId / pipelineId; startsAt and endsAt, or weekly.")
class DeployFreezeInput:
    name: str
    environment_id: strawberry.ID | None = None
    pipeline_id: strawberry.ID | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    weekly: WeeklyWindowInput | None = None


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
