"""Deploying an image on a pipeline and finishing rollouts (R19 to R23)."""

from __future__ import annotations

from greenlight.models import (
    Approval,
    ApprovalRequest,
    ApprovalState,
    Deployment,
    DeploymentStatus,
    Image,
    Pipeline,
    TriggerType,
    User,
)
from greenlight.policies import Action, Actor
from greenlight.rollout import drivers
from greenlight.workflow import audit, validation
from greenlight.workflow.catalog import close_request
from greenlight.workflow.clock import now
from greenlight.workflow.errors import (
    ApproverCannotDeploy,
    BadUserInput,
    Conflict,
    InvalidState,
    NotApproved,
    not_found,
)
from greenlight.workflow.guards import (
    image_of_pipeline,
    pipeline_scope,
    require,
    visible_deployment,
    visible_image,
    visible_pipeline,
)
from greenlight.workflow.states import (
    active_deployment,
    active_image_id,
    approval_count,
    effective_state,
)
from greenlight.workflow.tx import transaction

TERMINAL = (
    DeploymentStatus.HEALTHY,
    DeploymentStatus.DEGRADED,
    DeploymentStatus.FAILED,
    DeploymentStatus.SUPERSEDED,
)


async def deployable_images(pipeline: Pipeline) -> list[Image]:
    """R19: what "Select Image" lists for a pipeline, newest first."""
    active = await active_deployment(pipeline.id)
    query = Image.filter(application_id=pipeline.application_id)
    if pipeline.required_approvals > 0:
        approved_ids = [
            r.image_id
            for r in await ApprovalRequest.filter(pipeline_id=pipeline.id, state=ApprovalState.APPROVED)
            if effective_state(r) == ApprovalState.APPROVED
        ]
        query = query.filter(id__in=approved_ids)
    if active is not None:
        query = query.exclude(id=active.image_id)
    return await query.order_by("-created_at", "-id")


async def _consume_approval(actor: Actor, pipeline: Pipeline, image: Image) -> ApprovalRequest:
    """R20, R21: the APPROVED request for (image, pipeline) becomes CONSUMED."""
    request = await ApprovalRequest.select_for_update().get_or_none(
        image_id=image.id, pipeline_id=pipeline.id, state=ApprovalState.APPROVED
    )
    if request is None or effective_state(request) != ApprovalState.APPROVED:
        partial = await ApprovalRequest.filter(
            image_id=image.id, pipeline_id=pipeline.id, state=ApprovalState.PENDING
        ).first()
        if partial is not None and effective_state(partial) == ApprovalState.PENDING:
            have = await approval_count(partial.id)
            raise NotApproved(
                f"this image has {have} of {partial.required_approvals} required approvals for this pipeline"
            )
        raise NotApproved("this image has no usable approval for this pipeline")
    if not pipeline.approvers_can_deploy and await Approval.exists(request_id=request.id, user_id=actor.id):
        raise ApproverCannotDeploy(
            "you approved this request, and this pipeline does not let approvers deploy"
        )
    await close_request(request, ApprovalState.CONSUMED, actor_id=actor.id, scope=pipeline_scope(pipeline))
    return request


async def deploy(actor: Actor, pipeline_id: int, image_id: int) -> Deployment:
    """R3, R20, R21, R22, R23, R17."""
    pipeline = await visible_pipeline(actor, pipeline_id)
    scope = pipeline_scope(pipeline)
    require(actor, Action.DEPLOY, scope, "deploy")
    image = await visible_image(actor, image_id)
    image_of_pipeline(image, pipeline)
    async with transaction():
        pipeline = await visible_pipeline(actor, pipeline_id, lock=True)
        active = await active_deployment(pipeline.id)
        if active is not None and active.image_id == image.id:
            raise Conflict(f"this image is already active on {scope.environment}", existing=active)
        request = None
        if pipeline.required_approvals > 0:
            request = await _consume_approval(actor, pipeline, image)
        deployment = await _start(pipeline, image, request, triggered_by_id=actor.id, actor_id=actor.id)
    return deployment


async def deploy_on_approval(pipeline: Pipeline, request: ApprovalRequest, authorizer) -> Deployment | None:
    """R24: on an AUTOMATIC pipeline the system deploys a request the moment it is APPROVED,
    for the requester, in the transaction of the approval that completed it. The caller
    holds the locks on the pipeline and the request."""
    if pipeline.trigger_type != TriggerType.AUTOMATIC:
        return None
    if await active_image_id(pipeline.id) == request.image_id:
        return None  # already running (R22); the approval stays usable
    scope = pipeline_scope(pipeline)
    requester = await User.get(id=request.requested_by_id)
    if not requester.is_active or not authorizer.may(requester.id, Action.DEPLOY, scope):
        # The system acts for the requester only with the requester's own rights (R3):
        # the approval stays APPROVED for someone who may deploy.
        await audit.record(
            "automatic_deploy_skipped",
            request,
            actor_id=None,
            after={"reason": "the requester may no longer deploy here"},
            application=scope.application,
            environment=scope.environment,
        )
        return None
    image = await Image.get(id=request.image_id)
    await close_request(request, ApprovalState.CONSUMED, actor_id=None, scope=pipeline_scope(pipeline))
    return await _start(pipeline, image, request, triggered_by_id=request.requested_by_id, actor_id=None)


async def _start(
    pipeline: Pipeline,
    image: Image,
    request: ApprovalRequest | None,
    *,
    triggered_by_id: int,
    actor_id: int | None,
) -> Deployment:
    """R23: supersede a still-progressing deployment, start the new one, audit both."""
    scope = pipeline_scope(pipeline)
    superseded = await Deployment.select_for_update().filter(
        pipeline_id=pipeline.id, status=DeploymentStatus.PROGRESSING
    )
    for older in superseded:
        await _set_status(older, DeploymentStatus.SUPERSEDED, actor_id=actor_id, scope=scope)
        await drivers.on_superseded(older, pipeline)
    deployment = await Deployment.create(
        pipeline=pipeline,
        image=image,
        status=DeploymentStatus.PROGRESSING,
        strategy=pipeline.strategy,
        triggered_by_id=triggered_by_id,
        approval_request=request,
        **drivers.deployment_fields(),
    )
    await drivers.on_start(deployment, pipeline, image)
    await audit.record(
        "deploy",
        deployment,
        actor_id=actor_id,
        after={
            "status": DeploymentStatus.PROGRESSING.value,
            "image": image.id,
            "approvalRequest": request.id if request else None,
            "triggeredBy": triggered_by_id,
        },
        application=scope.application,
        environment=scope.environment,
    )
    return deployment


async def _set_status(
    deployment: Deployment,
    status: DeploymentStatus,
    *,
    actor_id: int | None,
    scope,
    message: str | None = None,
    failed_step: int | None = None,
) -> None:
    before = DeploymentStatus(deployment.status).value
    deployment.status = status
    deployment.finished_at = now() if status in TERMINAL else None
    deployment.failed_step = failed_step
    if message is not None:
        deployment.message = message
    await deployment.save(update_fields=["status", "finished_at", "failed_step", "message"])
    await audit.record(
        f"deployment_{status.value.lower()}",
        deployment,
        actor_id=actor_id,
        before={"status": before},
        after={"status": status.value, "message": deployment.message},
        application=scope.application,
        environment=scope.environment,
    )


async def finish_rollout(
    deployment_id: int,
    status: DeploymentStatus,
    *,
    message: str | None = None,
    failed_step: int | None = None,
) -> Deployment:
    """R23: the built-in driver ends a PROGRESSING deployment (the system acts)."""
    async with transaction():
        deployment = await Deployment.select_for_update().get_or_none(id=deployment_id)
        if deployment is None:
            raise not_found("deployment")
        if deployment.status != DeploymentStatus.PROGRESSING:
            raise InvalidState(f"this deployment is {deployment.status}, not PROGRESSING")
        await deployment.fetch_related("pipeline__application", "pipeline__environment")
        await _set_status(
            deployment,
            status,
            actor_id=None,
            scope=pipeline_scope(deployment.pipeline),
            message=message,
            failed_step=failed_step,
        )
    return deployment


REPORTABLE = (
    DeploymentStatus.PROGRESSING,
    DeploymentStatus.HEALTHY,
    DeploymentStatus.DEGRADED,
    DeploymentStatus.FAILED,
)


async def report_status(
    actor: Actor, deployment_id: int, status: DeploymentStatus, message: str | None
) -> Deployment:
    """R23 through an external CD system: a deploy-agent on the scope reports progress
    (PROGRESSING with a message) or the end of a PROGRESSING deployment."""
    message = validation.text("message", message)
    if status not in REPORTABLE:
        raise BadUserInput(
            f"status: {status.value} is set by Greenlight itself, not reported", field="status"
        )
    deployment = await visible_deployment(actor, deployment_id)
    scope = pipeline_scope(deployment.pipeline)
    require(actor, Action.REPORT_DEPLOYMENT_STATUS, scope, "report deployment status")
    async with transaction():
        locked = await Deployment.select_for_update().get(id=deployment.id)
        if locked.driver == "simulator":
            raise InvalidState("this deployment is rolled out by Greenlight's simulator, not reported")
        current = DeploymentStatus(locked.status)
        if current != DeploymentStatus.PROGRESSING:
            raise InvalidState(
                f"this deployment is {current.value}; only a PROGRESSING one can change status"
            )
        if status == DeploymentStatus.PROGRESSING:
            locked.message = message
            await locked.save(update_fields=["message"])
            await audit.record(
                "deployment_progress",
                locked,
                actor_id=actor.id,
                before={"status": current.value},
                after={"status": current.value, "message": message},
                application=scope.application,
                environment=scope.environment,
            )
        else:
            await _set_status(locked, status, actor_id=actor.id, scope=scope, message=message)
    return locked
