"""GraphQL input types of the contract."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from greenlight.schema.enums import (
    ApprovalPolicyKind,
    ApprovalState,
    DeploymentStrategy,
    Role,
    TriggerType,
    Weekday,
)

if TYPE_CHECKING:
    from greenlight.schema.images import LabelInput


@strawberry.input(description="Which approval requests to list; every field given must match.")
class ApprovalRequestFilter:
    states: list[ApprovalState] | None = strawberry.field(
        default=None,
        description="Only requests in these states (effective now: a passed expiry is EXPIRED, R15).",
    )
    pipeline_id: strawberry.ID | None = strawberry.field(
        default=None, description="Only the requests of this pipeline."
    )
    awaiting_my_approval: bool | None = strawberry.field(
        default=None, description="Only PENDING requests the caller may approve now (R4, R10, R11)."
    )


@strawberry.input(description="An image CI built (R3: build-and-deploy on the application).")
class RegisterImageInput:
    application: str = strawberry.field(description="The application's name.")
    repository: str = strawberry.field(
        description="Where the image is stored, e.g. registry.example.com/acme/shop."
    )
    tag: str = strawberry.field(description="Its tag, e.g. 1.4.2.")
    digest: str = strawberry.field(
        description="sha256: and 64 lowercase hex digits; registered twice for one application: CONFLICT."
    )
    commit: str | None = strawberry.field(
        default=None, description="The commit it was built from: 7 to 40 hex digits."
    )
    branch: str | None = strawberry.field(
        default=None, description="The branch it was built from: 1 to 255 characters, no spaces."
    )
    build_url: str | None = strawberry.field(
        default=None,
        description="The CI build that made it: an http:// or https:// URL, at most 2048 characters.",
    )
    labels: list[Annotated[LabelInput, strawberry.lazy("greenlight.schema.images")]] | None = (
        strawberry.field(default=None, description="Free key/value labels, at most 20, each key once.")
    )


@strawberry.input(description="What to approve, where, and whom to ask (R6 to R8).")
class RequestApprovalInput:
    pipeline_id: strawberry.ID = strawberry.field(
        description="The pipeline to deploy to; it must require approvals (R6)."
    )
    image_id: strawberry.ID = strawberry.field(
        description="An image of the pipeline's application, not its active one (R6)."
    )
    approver_ids: list[strawberry.ID] | None = strawberry.field(
        description="Approvers to email, each eligible (R8, R9; see eligibleApprovers); otherwise BAD_USER_INPUT.",
        default_factory=list,
    )
    comment: str | None = strawberry.field(default=None, description="For the approvers.")
    previous_request_id: strawberry.ID | None = strawberry.field(
        default=None,
        description="Asking again after a rejection: the REJECTED request of this image and pipeline this one "
        "answers (its reason shows as previousRequest.rejection); each is answered once.",
    )


@strawberry.input(description="What to deploy where (R19 to R22).")
class DeployImageInput:
    pipeline_id: strawberry.ID = strawberry.field(description="The pipeline to deploy on.")
    image_id: strawberry.ID = strawberry.field(
        description="An image of its application: APPROVED for it when approval is required (R20), not the active one (R22)."
    )
    acknowledge_stale: bool | None = strawberry.field(
        default=False, description="Deploy an image older than the active one (a rollback)."
    )
    freeze_override_reason: str | None = strawberry.field(
        default=None, description="Super-admins: deploy through a freeze, for this reason."
    )


@strawberry.input(description="A new user (super-admins only, R2).")
class CreateUserInput:
    email: str = strawberry.field(description="The address that names the user; unique.")
    name: str = strawberry.field(description="The display name.")


@strawberry.input(
    description="A new API token: for yourself (anyone), or for another user (super-admins only, R2); "
    "optionally limited to less than its owner may do."
)
class IssueApiTokenInput:
    user_id: strawberry.ID = strawberry.field(
        description="Whose token: it acts as this user. Your own id (me { id }), or anyone's for super-admins."
    )
    name: str = strawberry.field(description="What it is for, e.g. the CI system using it.")
    ttl_hours: int | None = strawberry.field(
        default=None, description="Lifetime in hours (1 to 87600); null: never expires."
    )
    actions: list[str] | None = strawberry.field(
        default=None,
        description="Only these actions of the policy (policy.csv names, e.g. register_image; view is always "
        "within); an unknown name is BAD_USER_INPUT; null: every action its owner may take.",
    )
    application_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="Only on these applications; null: on every one its owner's roles cover."
    )
    environment_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="Only on these environments; null: on every one its owner's roles cover."
    )


@strawberry.input(description="A new pipeline: one per application and environment (super-admins only, R2).")
class CreatePipelineInput:
    application_id: strawberry.ID = strawberry.field(description="The application it deploys.")
    environment_id: strawberry.ID = strawberry.field(description="The environment it deploys to.")
    strategy: DeploymentStrategy | None = strawberry.field(
        default=DeploymentStrategy.ROLLING, description="How deployments roll out."
    )
    trigger_type: TriggerType | None = strawberry.field(
        default=TriggerType.MANUAL, description="AUTOMATIC: deploy the moment a request is APPROVED (R24)."
    )
    required_approvals: int | None = strawberry.field(
        default=0, description="0 to 6; 0: deploys need no approval."
    )
    ttl_hours: int | None = strawberry.field(
        default=None, description="Lifetime of a request, 1 to 8760 hours; null: no expiry."
    )
    approvers_can_deploy: bool | None = strawberry.field(
        default=False, description="Whether an approver of a request may deploy on it (R21)."
    )


@strawberry.input(description="GROUP_QUORUMS: how many approvals one group's members must give.")
class GroupQuorumInput:
    group_id: strawberry.ID = strawberry.field(description="The group.")
    min_approvals: int = strawberry.field(
        description="At least this many approvals from its members (1 or more)."
    )


@strawberry.input(
    description=(
        "The whole approval policy. requiredApprovals, ttlHours and approversCanDeploy are set "
        "as given, and those left out take their defaults: ttlHours null (requests never "
        "expire), approversCanDeploy false. Each field after approversCanDeploy, left out or "
        "null, keeps the current value. To change one setting alone, use updatePipeline."
    )
)
class ApprovalPolicyInput:
    required_approvals: int = strawberry.field(
        description="0 to 6; 0 (only with kind ANY) cancels the pipeline's live requests (R18)."
    )
    ttl_hours: int | None = strawberry.field(
        default=None,
        description="Lifetime of new requests, 1 to 8760 hours; left out or null: no expiry. Requests made before keep theirs (R7).",
    )
    approvers_can_deploy: bool | None = strawberry.field(
        default=False, description="Whether an approver of a request may deploy on it (R21); left out: false."
    )
    kind: ApprovalPolicyKind | None = strawberry.field(
        default=None, description="Whose approvals count; omitted: unchanged (ANY for a new pipeline)."
    )
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
    required_checks: list[str] | None = strawberry.field(
        default=None,
        description="Image checks that must have PASSED before approving and deploying (replaces the list; [] requires none; omitted: unchanged).",
    )
    requires_healthy_on: strawberry.ID | None = strawberry.field(
        default=None,
        description="Promotion: an environment with a pipeline of the same application where an image must have been HEALTHY before it is requested here; omitted: unchanged.",
    )
    clear_requires_healthy_on: bool | None = strawberry.field(
        default=None, description="true: requests need no promotion any more (not with requiresHealthyOn)."
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
    required_checks: list[str] | None = strawberry.field(
        default=None,
        description="Image checks that must have PASSED before approving and deploying (replaces the list; [] requires none; omitted: unchanged).",
    )
    requires_healthy_on: strawberry.ID | None = strawberry.field(
        default=None,
        description="Promotion: an environment with a pipeline of the same application where an image must have been HEALTHY before it is requested here; omitted: unchanged.",
    )
    clear_requires_healthy_on: bool | None = strawberry.field(
        default=None, description="true: requests need no promotion any more (not with requiresHealthyOn)."
    )
    remind_after_hours: int | None = strawberry.field(
        default=None,
        description="1 to 8760: remind the named approvers of a request pending this long, once per period.",
    )
    clear_remind_after_hours: bool | None = strawberry.field(
        default=None, description="true: no more reminders (not with remindAfterHours)."
    )
    escalate_after_hours: int | None = strawberry.field(
        default=None,
        description="1 to 8760, more than remindAfterHours when both are set: escalate a request pending this long, once.",
    )
    clear_escalate_after_hours: bool | None = strawberry.field(
        default=None, description="true: no more escalations (not with escalateAfterHours)."
    )
    escalate_to_group_id: strawberry.ID | None = strawberry.field(
        default=None, description="Escalate to this group's members rather than to the super-admins."
    )
    clear_escalate_to_group: bool | None = strawberry.field(
        default=None, description="true: escalate to the super-admins again (not with escalateToGroupId)."
    )


@strawberry.input(
    description="A freeze that repeats every week; it may wrap over the week's end (FRIDAY 18:00 to MONDAY 08:00)."
)
class WeeklyWindowInput:
    time_zone: str = strawberry.field(description="An IANA time zone name, such as Europe/Berlin.")
    start_day: Weekday = strawberry.field(description="The day the freeze starts.")
    start_time: str = strawberry.field(description='"HH:MM", wall-clock in timeZone.')
    end_day: Weekday = strawberry.field(description="The day it ends.")
    end_time: str = strawberry.field(description='"HH:MM" on endDay: open again from then.')


@strawberry.input(description="Exactly one of environmentId / pipelineId; startsAt and endsAt, or weekly.")
class DeployFreezeInput:
    name: str = strawberry.field(description="What the freeze is for.")
    environment_id: strawberry.ID | None = strawberry.field(
        default=None, description="Freeze every pipeline of this environment."
    )
    pipeline_id: strawberry.ID | None = strawberry.field(
        default=None, description="Freeze this pipeline only."
    )
    starts_at: datetime | None = strawberry.field(
        default=None, description="One-off window: frozen from then."
    )
    ends_at: datetime | None = strawberry.field(
        default=None, description="One-off window: open again from then (after startsAt)."
    )
    weekly: WeeklyWindowInput | None = strawberry.field(default=None, description="Or a weekly window.")


@strawberry.input(description="A role to grant a user on a scope (super-admins only, R2).")
class RoleBindingInput:
    user_id: strawberry.ID = strawberry.field(description="Who gets the role.")
    role: Role = strawberry.field(description="The role.")
    application: str | None = strawberry.field(
        default="*", description='An existing application\'s name, or "*" for all.'
    )
    environment: str | None = strawberry.field(
        default="*", description='An existing environment\'s name, or "*" for all.'
    )


@strawberry.input(description="Which audit events to list; every field given must match.")
class AuditEventFilter:
    application: str | None = strawberry.field(
        default=None, description="Only events about this application."
    )
    environment: str | None = strawberry.field(
        default=None, description="Only events about this environment."
    )
    actor_id: strawberry.ID | None = strawberry.field(default=None, description="Only what this user did.")
    action: str | None = strawberry.field(default=None, description='Only this action, e.g. "deploy".')
    since: datetime | None = strawberry.field(default=None, description="From this time (included).")
    until: datetime | None = strawberry.field(default=None, description="Before this time (excluded).")


@strawberry.input(
    description="A role to grant a group on a scope; its members inherit it (super-admins only, R2)."
)
class GroupRoleBindingInput:
    group_id: strawberry.ID = strawberry.field(description="The group that gets the role.")
    role: Role = strawberry.field(description="The role.")
    application: str | None = strawberry.field(
        default="*", description='An existing application\'s name, or "*" for all.'
    )
    environment: str | None = strawberry.field(
        default="*", description='An existing environment\'s name, or "*" for all.'
    )
