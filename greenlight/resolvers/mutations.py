"""Mutation resolvers: each is one workflow call, hence one transaction."""

from __future__ import annotations

from typing import Annotated

import strawberry

from greenlight import models
from greenlight.models import DeploymentStrategy, Role, TriggerType
from greenlight.schema import ids
from greenlight.schema.arguments import described
from greenlight.schema.catalog import Application, DeployFreeze, Environment, Pipeline
from greenlight.schema.context import Info
from greenlight.schema.deployments import Deployment
from greenlight.schema.edits import UpdateApplicationInput, UpdateEnvironmentInput
from greenlight.schema.emails import OutboxEmail
from greenlight.schema.enums import DeploymentStatus
from greenlight.schema.identity import ApiToken, Group, GroupRoleBinding, IssuedApiToken, RoleBinding, User
from greenlight.schema.images import Image, ImageCheck, ReportImageCheckInput
from greenlight.schema.inputs import (
    ApprovalPolicyInput,
    CreatePipelineInput,
    CreateUserInput,
    DeployFreezeInput,
    DeployImageInput,
    GroupRoleBindingInput,
    IssueApiTokenInput,
    PipelineUpdateInput,
    RegisterImageInput,
    RequestApprovalInput,
    RoleBindingInput,
)
from greenlight.schema.requests import ApprovalRequest
from greenlight.workflow import (
    approvals,
    catalog,
    checks,
    deployments,
    freezes,
    identity,
    notices,
    outbox,
    teams,
)
from greenlight.workflow.policy import PolicyChange, Quorum


async def register_image(
    info: Info, input: Annotated[RegisterImageInput, described("The image CI built.")]
) -> Image:
    image = await catalog.register_image(
        info.context.actor,
        input.application,
        input.repository,
        input.tag,
        input.digest,
        commit=input.commit,
        branch=input.branch,
        build_url=input.build_url,
        labels=None if input.labels is None else [(label.key, label.value) for label in input.labels],
    )
    return Image.from_model(image)


async def report_image_check(
    info: Info, input: Annotated[ReportImageCheckInput, described("Which image, which check, its result.")]
) -> ImageCheck:
    check = await checks.report_image_check(
        info.context.actor,
        ids.decode("Image", input.image_id, "imageId"),
        input.name,
        models.CheckStatus(input.status),
        input.url,
        input.summary,
    )
    return ImageCheck.from_model(check)


async def request_approval(
    info: Info, input: Annotated[RequestApprovalInput, described("What to approve, where, and whom to ask.")]
) -> ApprovalRequest:
    request = await approvals.request_approval(
        info.context.actor,
        pipeline_id=ids.decode("Pipeline", input.pipeline_id, "pipelineId"),
        image_id=ids.decode("Image", input.image_id, "imageId"),
        approver_ids=[ids.decode("User", a, "approverIds") for a in input.approver_ids or []],
        comment=input.comment,
        previous_request_id=ids.decode_optional(
            "ApprovalRequest", input.previous_request_id, "previousRequestId"
        ),
    )
    return ApprovalRequest.from_model(request)


async def approve_request(
    info: Info,
    id: Annotated[strawberry.ID, described('"ApprovalRequest:<number>".')],
    comment: Annotated[str | None, described("Shown with the approval.")] = None,
    acknowledge_stale: Annotated[
        bool | None,
        described(
            "Approve although the image is older than the pipeline's active one; without it such a request is STALE_IMAGE."
        ),
    ] = False,
) -> ApprovalRequest:
    request_id = ids.decode("ApprovalRequest", id, "id")
    actor = info.context.actor
    request = await approvals.approve(actor, request_id, comment, bool(acknowledge_stale))
    info.context.loaders.prime_request(
        request, actor.user
    )  # what approve read: the answer reads none of it again
    return ApprovalRequest.from_model(request)


async def reject_request(
    info: Info,
    id: Annotated[strawberry.ID, described('"ApprovalRequest:<number>".')],
    reason: Annotated[str, described("Why; required, not blank (R13).")],
) -> ApprovalRequest:
    request_id = ids.decode("ApprovalRequest", id, "id")
    return ApprovalRequest.from_model(await approvals.reject(info.context.actor, request_id, reason))


async def cancel_approval_request(
    info: Info, id: Annotated[strawberry.ID, described('"ApprovalRequest:<number>".')]
) -> ApprovalRequest:
    request_id = ids.decode("ApprovalRequest", id, "id")
    return ApprovalRequest.from_model(await approvals.cancel(info.context.actor, request_id))


async def expire_approval(
    info: Info, id: Annotated[strawberry.ID, described('"ApprovalRequest:<number>".')]
) -> ApprovalRequest:
    request_id = ids.decode("ApprovalRequest", id, "id")
    return ApprovalRequest.from_model(await approvals.expire(info.context.actor, request_id))


async def withdraw_approval(
    info: Info,
    request_id: Annotated[strawberry.ID, strawberry.argument(description="The request you approved.")],
) -> ApprovalRequest:
    actor = info.context.actor
    request = await approvals.withdraw_approval(actor, ids.decode("ApprovalRequest", request_id, "requestId"))
    info.context.loaders.prime_request(request, actor.user)  # what it read: the answer reads none again
    return ApprovalRequest.from_model(request)


async def deploy_image(
    info: Info, input: Annotated[DeployImageInput, described("What to deploy where.")]
) -> Deployment:
    deployment = await deployments.deploy(
        info.context.actor,
        pipeline_id=ids.decode("Pipeline", input.pipeline_id, "pipelineId"),
        image_id=ids.decode("Image", input.image_id, "imageId"),
        acknowledge_stale=bool(input.acknowledge_stale),
        freeze_override_reason=input.freeze_override_reason,
    )
    return Deployment.from_model(deployment)


async def report_deployment_status(
    info: Info,
    deployment_id: Annotated[
        strawberry.ID, described('"Deployment:<number>", a PROGRESSING one (otherwise INVALID_STATE).')
    ],
    status: Annotated[
        DeploymentStatus,
        described("PROGRESSING (still rolling out), or how it ended: HEALTHY, DEGRADED or FAILED."),
    ],
    message: Annotated[str | None, described("What the CD system says, shown as Deployment.message.")] = None,
) -> Deployment:
    deployment = await deployments.report_status(
        info.context.actor,
        ids.decode("Deployment", deployment_id, "deploymentId"),
        models.DeploymentStatus(status),
        message,
    )
    return Deployment.from_model(deployment)


async def create_user(info: Info, input: Annotated[CreateUserInput, described("The new user.")]) -> User:
    return User.from_model(await identity.create_user(info.context.actor, input.email, input.name))


async def issue_api_token(
    info: Info, input: Annotated[IssueApiTokenInput, described("Whose token, named how, for how long.")]
) -> IssuedApiToken:
    limits = identity.TokenLimits(
        actions=input.actions,
        application_ids=None
        if input.application_ids is None
        else [ids.decode("Application", a, "applicationIds") for a in input.application_ids],
        environment_ids=None
        if input.environment_ids is None
        else [ids.decode("Environment", e, "environmentIds") for e in input.environment_ids],
    )
    secret, api_token = await identity.issue_api_token(
        info.context.actor,
        ids.decode("User", input.user_id, "userId"),
        input.name,
        input.ttl_hours,
        limits,
    )
    return IssuedApiToken(token=secret, api_token=ApiToken.from_model(api_token))


async def revoke_api_token(
    info: Info, id: Annotated[strawberry.ID, described('"ApiToken:<number>".')]
) -> ApiToken:
    token_id = ids.decode("ApiToken", id, "id")
    return ApiToken.from_model(await identity.revoke_api_token(info.context.actor, token_id))


async def create_application(
    info: Info, name: Annotated[str, described("Lowercase [a-z0-9][a-z0-9-]{0,62}, unique.")]
) -> Application:
    return Application.from_model(await catalog.create_application(info.context.actor, name))


async def create_environment(
    info: Info, name: Annotated[str, described("Lowercase [a-z0-9][a-z0-9-]{0,62}, unique.")]
) -> Environment:
    return Environment.from_model(await catalog.create_environment(info.context.actor, name))


async def update_application(
    info: Info, input: Annotated[UpdateApplicationInput, described("Which application, and what changes.")]
) -> Application:
    application_id = ids.decode("Application", input.id, "id")
    found = await catalog.update_application(info.context.actor, application_id, input.name, input.archived)
    return Application.from_model(found)


async def update_environment(
    info: Info, input: Annotated[UpdateEnvironmentInput, described("Which environment, and what changes.")]
) -> Environment:
    environment_id = ids.decode("Environment", input.id, "id")
    found = await catalog.update_environment(info.context.actor, environment_id, input.name, input.archived)
    return Environment.from_model(found)


async def delete_group(info: Info, id: Annotated[strawberry.ID, described('"Group:<number>".')]) -> Group:
    return Group.from_model(await teams.delete_group(info.context.actor, ids.decode("Group", id, "id")))


async def create_pipeline(
    info: Info, input: Annotated[CreatePipelineInput, described("The new pipeline.")]
) -> Pipeline:
    pipeline = await catalog.create_pipeline(
        info.context.actor,
        application_id=ids.decode("Application", input.application_id, "applicationId"),
        environment_id=ids.decode("Environment", input.environment_id, "environmentId"),
        strategy=DeploymentStrategy(input.strategy or DeploymentStrategy.ROLLING),
        trigger_type=TriggerType(input.trigger_type or TriggerType.MANUAL),
        required_approvals=input.required_approvals or 0,
        ttl_hours=input.ttl_hours,
        approvers_can_deploy=bool(input.approvers_can_deploy),
    )
    return Pipeline.from_model(pipeline)


async def update_approval_policy(
    info: Info,
    pipeline_id: Annotated[strawberry.ID, described('"Pipeline:<number>".')],
    input: Annotated[
        ApprovalPolicyInput,
        described("The new policy; fields after approversCanDeploy left out keep their value."),
    ],
) -> Pipeline:
    pipeline = await catalog.update_approval_policy(
        info.context.actor,
        ids.decode("Pipeline", pipeline_id, "pipelineId"),
        required_approvals=input.required_approvals,
        ttl_hours=input.ttl_hours,
        approvers_can_deploy=bool(input.approvers_can_deploy),
        change=_policy_change(input),
    )
    return Pipeline.from_model(pipeline)


async def update_pipeline(
    info: Info,
    id: Annotated[strawberry.ID, strawberry.argument(description="The pipeline to change.")],
    input: Annotated[PipelineUpdateInput, strawberry.argument(description="Only what is given changes.")],
) -> Pipeline:
    edit = catalog.PipelineEdit(
        strategy=None if input.strategy is None else DeploymentStrategy(input.strategy),
        trigger_type=None if input.trigger_type is None else TriggerType(input.trigger_type),
        required_approvals=input.required_approvals,
        ttl_hours=input.ttl_hours,
        clear_ttl_hours=bool(input.clear_ttl_hours),
        approvers_can_deploy=input.approvers_can_deploy,
        remind_after_hours=input.remind_after_hours,
        clear_remind_after_hours=bool(input.clear_remind_after_hours),
        escalate_after_hours=input.escalate_after_hours,
        clear_escalate_after_hours=bool(input.clear_escalate_after_hours),
        escalate_to_group_id=None
        if input.escalate_to_group_id is None
        else ids.decode("Group", input.escalate_to_group_id, "escalateToGroupId"),
        clear_escalate_to_group=bool(input.clear_escalate_to_group),
    )
    pipeline = await catalog.update_pipeline(
        info.context.actor, ids.decode("Pipeline", id, "id"), edit, _policy_change(input)
    )
    return Pipeline.from_model(pipeline)


def _policy_change(input: ApprovalPolicyInput | PipelineUpdateInput) -> PolicyChange:
    return PolicyChange(
        kind=input.kind,
        approver_ids=_decode_all("User", input.approver_ids, "approverIds"),
        group_quorums=None
        if input.group_quorums is None
        else [
            Quorum(ids.decode("Group", q.group_id, "groupQuorums.groupId"), q.min_approvals)
            for q in input.group_quorums
        ],
        count_once_per_person=input.count_once_per_person,
        exception_user_ids=_decode_all("User", input.exception_user_ids, "exceptionUserIds"),
        exception_group_ids=_decode_all("Group", input.exception_group_ids, "exceptionGroupIds"),
        cancel_stale_requests=input.cancel_stale_requests,
        required_checks=input.required_checks,
        requires_healthy_on_id=None
        if input.requires_healthy_on is None
        else ids.decode("Environment", input.requires_healthy_on, "requiresHealthyOn"),
        clear_requires_healthy_on=bool(input.clear_requires_healthy_on),
    )


def _decode_all(type_name: str, values: list[strawberry.ID] | None, field: str) -> list[int] | None:
    return None if values is None else [ids.decode(type_name, v, field) for v in values]


async def create_deploy_freeze(
    info: Info, input: Annotated[DeployFreezeInput, described("Where and when deploys are refused.")]
) -> DeployFreeze:
    weekly = input.weekly
    freeze = await freezes.create_freeze(
        info.context.actor,
        name=input.name,
        environment_id=None
        if input.environment_id is None
        else ids.decode("Environment", input.environment_id, "environmentId"),
        pipeline_id=None
        if input.pipeline_id is None
        else ids.decode("Pipeline", input.pipeline_id, "pipelineId"),
        starts_at=input.starts_at,
        ends_at=input.ends_at,
        weekly=None
        if weekly is None
        else freezes.WeeklyWindow(
            weekly.time_zone, weekly.start_day, weekly.start_time, weekly.end_day, weekly.end_time
        ),
    )
    return DeployFreeze.from_model(freeze)


async def delete_deploy_freeze(
    info: Info, id: Annotated[strawberry.ID, described('"DeployFreeze:<number>".')]
) -> DeployFreeze:
    freeze = await freezes.delete_freeze(info.context.actor, ids.decode("DeployFreeze", id, "id"))
    return DeployFreeze.from_model(freeze)


async def grant_role(
    info: Info, input: Annotated[RoleBindingInput, described("Who gets which role where.")]
) -> RoleBinding:
    binding = await identity.grant_role(
        info.context.actor,
        ids.decode("User", input.user_id, "userId"),
        Role(input.role),
        input.application,
        input.environment,
    )
    return RoleBinding.from_model(binding)


async def revoke_role(
    info: Info, id: Annotated[strawberry.ID, described('"RoleBinding:<number>".')]
) -> RoleBinding:
    binding_id = ids.decode("RoleBinding", id, "id")
    return RoleBinding.from_model(await identity.revoke_role(info.context.actor, binding_id))


async def retry_notification(
    info: Info, id: Annotated[strawberry.ID, described('"OutboxEmail:<number>", a failed one.')]
) -> OutboxEmail:
    email_id = ids.decode("OutboxEmail", id, "id")
    return OutboxEmail.from_model(await outbox.retry_email(info.context.actor, email_id))


async def update_my_notification_settings(
    info: Info,
    email_notices: Annotated[
        bool, described("false: no outcome notices, reminders or escalations by email for you.")
    ],
) -> User:
    return User.from_model(await notices.update_my_notification_settings(info.context.actor, email_notices))


async def create_group(
    info: Info, name: Annotated[str, described("Unique; the name an identity provider's groups claim uses.")]
) -> Group:
    return Group.from_model(await teams.create_group(info.context.actor, name))


async def add_group_member(
    info: Info,
    group_id: Annotated[strawberry.ID, described('"Group:<number>".')],
    user_id: Annotated[strawberry.ID, described('"User:<number>".')],
) -> Group:
    group = await teams.add_member(
        info.context.actor, ids.decode("Group", group_id, "groupId"), ids.decode("User", user_id, "userId")
    )
    return Group.from_model(group)


async def remove_group_member(
    info: Info,
    group_id: Annotated[strawberry.ID, described('"Group:<number>".')],
    user_id: Annotated[strawberry.ID, described('"User:<number>".')],
) -> Group:
    group = await teams.remove_member(
        info.context.actor, ids.decode("Group", group_id, "groupId"), ids.decode("User", user_id, "userId")
    )
    return Group.from_model(group)


async def grant_group_role(
    info: Info, input: Annotated[GroupRoleBindingInput, described("Which group gets which role where.")]
) -> GroupRoleBinding:
    binding = await teams.grant_group_role(
        info.context.actor,
        ids.decode("Group", input.group_id, "groupId"),
        Role(input.role),
        input.application,
        input.environment,
    )
    return GroupRoleBinding.from_model(binding)


async def revoke_group_role(
    info: Info, id: Annotated[strawberry.ID, described('"GroupRoleBinding:<number>".')]
) -> GroupRoleBinding:
    binding_id = ids.decode("GroupRoleBinding", id, "id")
    return GroupRoleBinding.from_model(await teams.revoke_group_role(info.context.actor, binding_id))


async def deactivate_user(
    info: Info,
    id: Annotated[strawberry.ID, described('"User:<number>"; not oneself, nor the last super-admin.')],
) -> User:
    return User.from_model(await identity.deactivate_user(info.context.actor, ids.decode("User", id, "id")))


async def reactivate_user(info: Info, id: Annotated[strawberry.ID, described('"User:<number>".')]) -> User:
    return User.from_model(await identity.reactivate_user(info.context.actor, ids.decode("User", id, "id")))
