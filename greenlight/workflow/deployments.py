"""Deploying an image on a pipeline and finishing rollouts (R19 to R23)."""

from __future__ import annotations

from tortoise.expressions import Q

from greenlight import notifications
from greenlight.clock import now
from greenlight.errors import (
    BadUserInput,
    InvalidState,
    not_found,
)
from greenlight.models import (
    LIVE_STATES,
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
from greenlight.tx import transaction
from greenlight.workflow import audit, checks, decisions, freezes, lifecycle, validation
from greenlight.workflow.decisions import refuse
from greenlight.workflow.guards import (
    pipeline_scope,
    require,
    visible_deployment,
)
from greenlight.workflow.states import (
    active_deployments,
    active_image,
    effective_state,
    older,
    state_q,
)

TERMINAL = (
    DeploymentStatus.HEALTHY,
    DeploymentStatus.DEGRADED,
    DeploymentStatus.FAILED,
    DeploymentStatus.SUPERSEDED,
)


async def deployable_images_of(
    pipelines: list[Pipeline], image_filter: Q | None = None
) -> dict[int, list[Image]]:
    """R19 for several pipelines at once, in three statements whatever their number (a
    fourth when one requires checks: images whose required checks have not all PASSED are
    left out, as deployImage would refuse them). `image_filter`: a WHERE on the images
    (greenlight.workflow.images.ImageFilter)."""
    active = await active_deployments([p.id for p in pipelines])
    gated = [p.id for p in pipelines if p.required_approvals > 0]
    approved: dict[int, set[int]] = {p.id: set() for p in pipelines}
    if gated:
        rows = await ApprovalRequest.filter(
            state_q([ApprovalState.APPROVED]), pipeline_id__in=gated
        ).values_list("pipeline_id", "image_id")
        for pipeline_id, image_id in rows:
            approved[pipeline_id].add(image_id)
    open_applications = {p.application_id for p in pipelines if p.required_approvals == 0}
    wanted = set().union(*approved.values())
    parts = [Q(id__in=list(wanted))] if wanted else []
    if open_applications:
        parts.append(Q(application_id__in=list(open_applications)))
    images: list[Image] = []
    if parts:
        query = Image.filter(Q(*parts, join_type="OR"))
        if image_filter is not None:
            query = query.filter(image_filter)
        images = await query.order_by("-created_at", "-id")
    passed = await checks.passed_of(images, [p for p in pipelines if checks.required(p)])
    result: dict[int, list[Image]] = {}
    for p in pipelines:
        running = active[p.id].image_id if p.id in active else None
        result[p.id] = [
            i
            for i in images
            if i.application_id == p.application_id
            and i.id != running
            and (p.required_approvals == 0 or i.id in approved[p.id])
            and all((i.id, name) in passed for name in checks.required(p))
        ]
    return result


async def deploy(
    actor: Actor,
    pipeline_id: int,
    image_id: int,
    *,
    acknowledge_stale: bool = False,
    freeze_override_reason: str | None = None,
) -> Deployment:
    """R3, R20, R21, R22, R23, R17; freezes, stale images, approval exceptions.

    Refusals decided by `decisions.deploy`, in this order: NOT_FOUND / FORBIDDEN, CONFLICT,
    DEPLOY_FROZEN, CHECKS_NOT_PASSED, STALE_IMAGE, NOT_APPROVED / APPROVER_CANNOT_DEPLOY.
    """
    freeze_override_reason = freezes.override_reason(freeze_override_reason)
    async with transaction():
        plan = await decisions.deploy(
            actor,
            pipeline_id,
            image_id,
            lock=True,
            acknowledge_stale=acknowledge_stale,
            override_reason=freeze_override_reason,
        )
        refuse(plan.refusal)
        if plan.request is not None:
            await lifecycle.close(
                plan.request, ApprovalState.CONSUMED, actor_id=actor.id, scope=pipeline_scope(plan.pipeline)
            )
        deployment = await _start(
            plan.pipeline,
            plan.image,
            plan.request,
            triggered_by_id=actor.id,
            actor_id=actor.id,
            approval_exception=plan.exception,
            freeze_override_reason=plan.overridden,
        )
    return deployment


async def deploy_on_approval(pipeline: Pipeline, request: ApprovalRequest, authorizer) -> Deployment | None:
    """R24: on an AUTOMATIC pipeline the system deploys a request the moment it is APPROVED,
    for the requester, in the transaction of the approval that completed it. The caller
    holds the locks on the pipeline and the request."""
    if pipeline.trigger_type != TriggerType.AUTOMATIC:
        return None
    current = await active_image(pipeline.id)
    if current is not None and current.id == request.image_id:
        return None  # already running (R22); the approval stays usable
    scope = pipeline_scope(pipeline)
    skipped = None
    if (closed := decisions.archived(pipeline)) is not None:
        skipped = closed.error.message  # archived: no new deployments
    elif not await _requester_may_deploy(request, scope, authorizer):
        # The system acts for the requester only with the requester's own rights (R3):
        # the approval stays APPROVED for someone who may deploy.
        skipped = "the requester may no longer deploy here"
    elif (until := await freezes.pipeline_frozen_until(pipeline)) is not None:
        # Deployed when the freeze ends, by deploy_after_freezes.
        skipped = f"deploys are frozen until {until.isoformat()}; it deploys when the freeze ends"
        request.deploy_after_freeze = True
        await request.save(update_fields=["deploy_after_freeze"])
    if skipped is not None:
        await audit.record(
            "automatic_deploy_skipped",
            request,
            actor_id=None,
            after={"reason": skipped},
            scope=scope,
        )
        return None
    return await _deploy_for_requester(pipeline, request)


async def _requester_may_deploy(request: ApprovalRequest, scope, authorizer) -> bool:
    requester = await User.get(id=request.requested_by_id)
    return requester.is_active and authorizer.may(requester.id, Action.DEPLOY, scope)


async def deploy_after_freezes(authorizer) -> int:
    """R24 after a freeze: a request approved on an AUTOMATIC pipeline while deploys were
    frozen deploys once the freeze is over, for the requester; when it no longer can (the
    approval expired, the requester lost the right, the pipeline is no longer automatic,
    the image is active already) the requester is told, in the audit log and by email.
    The background jobs of every process call this; the locks on the pipeline and the
    request (in approve's order) and the request's mark make it happen once (R17).
    Returns how many it deployed."""
    waiting = await ApprovalRequest.filter(deploy_after_freeze=True).values_list("id", flat=True)
    if not waiting:
        return 0
    await authorizer.refresh()
    deployed = 0
    for request_id in waiting:
        async with transaction():
            locked = await lifecycle.lock(request_id)  # R17's order, as approve takes them
            if locked is None or not locked[0].deploy_after_freeze:
                continue  # another process got there first
            request, pipeline = locked
            deployed += await _deploy_after_freeze(pipeline, request, authorizer)
    return deployed


async def _deploy_after_freeze(pipeline: Pipeline, request: ApprovalRequest, authorizer) -> bool:
    """deploy_after_freezes for one locked request; True when it deployed."""
    state = effective_state(request)
    automatic = pipeline.trigger_type == TriggerType.AUTOMATIC
    if state == ApprovalState.APPROVED and automatic and await freezes.pipeline_frozen_until(pipeline):
        return False  # still frozen: wait
    request.deploy_after_freeze = False
    await request.save(update_fields=["deploy_after_freeze"])
    if state in (ApprovalState.CANCELLED, ApprovalState.REJECTED, ApprovalState.CONSUMED):
        return False  # someone decided meanwhile: nothing to do, nothing to tell
    scope = pipeline_scope(pipeline)
    reason = None
    if state != ApprovalState.APPROVED:
        reason = "the approval expired while deploys were frozen"
    elif not automatic:
        reason = "the pipeline no longer deploys automatically; the approval can still be deployed by hand"
    elif (current := await active_image(pipeline.id)) is not None and current.id == request.image_id:
        reason = "this image is already active on the pipeline (R22); the approval stays usable"
    elif request.stale:  # deployImage needs acknowledgeStale for it: never roll back unasked
        reason = (
            "the approval is stale: a newer image was deployed during the freeze; "
            "deploy this one by hand with acknowledgeStale to roll back"
        )
    elif (closed := decisions.archived(pipeline)) is not None:
        reason = closed.error.message
    elif not await _requester_may_deploy(request, scope, authorizer):
        reason = "the requester may no longer deploy here; someone who may can deploy the approval"
    elif unmet := await checks.unmet_for(pipeline, request.image_id, lock=True):
        reason = (
            f"required checks have not passed ({unmet.words()}); the approval stays usable once they have"
        )
    if reason is not None:
        await audit.record(
            "automatic_deploy_abandoned",
            request,
            actor_id=None,
            after={"reason": reason},
            scope=scope,
        )
        await notifications.automatic_deploy_not_done(request, reason)
        return False
    await _deploy_for_requester(pipeline, request)
    return True


async def _deploy_for_requester(pipeline: Pipeline, request: ApprovalRequest) -> Deployment:
    """R24: the system deploys a locked APPROVED request for its requester, using it up (R20)."""
    image = await Image.get(id=request.image_id)
    await lifecycle.close(request, ApprovalState.CONSUMED, actor_id=None, scope=pipeline_scope(pipeline))
    return await _start(pipeline, image, request, triggered_by_id=request.requested_by_id, actor_id=None)


async def _start(
    pipeline: Pipeline,
    image: Image,
    request: ApprovalRequest | None,
    *,
    triggered_by_id: int,
    actor_id: int | None,
    approval_exception: bool = False,
    freeze_override_reason: str | None = None,
) -> Deployment:
    """R23: supersede a still-progressing deployment, start the new one, audit both;
    requests for older images become stale (or are cancelled)."""
    scope = pipeline_scope(pipeline)
    superseded = await Deployment.select_for_update().filter(
        pipeline_id=pipeline.id, status=DeploymentStatus.PROGRESSING
    )
    for older_deployment in superseded:
        await _set_status(older_deployment, DeploymentStatus.SUPERSEDED, actor_id=actor_id, scope=scope)
        await drivers.on_superseded(older_deployment, pipeline)
    deployment = await Deployment.create(
        pipeline=pipeline,
        image=image,
        status=DeploymentStatus.PROGRESSING,
        strategy=pipeline.strategy,
        triggered_by_id=triggered_by_id,
        approval_request=request,
        approval_exception=approval_exception,
        freeze_override_reason=freeze_override_reason,
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
            "approvalException": approval_exception,
            "freezeOverrideReason": freeze_override_reason,
        },
        scope=scope,
    )
    if freeze_override_reason is not None:
        await audit.record(
            "freeze_override",
            deployment,
            actor_id=actor_id,
            after={"reason": freeze_override_reason},
            scope=scope,
        )
    await _outdate_requests(pipeline, image)
    return deployment


async def _outdate_requests(pipeline: Pipeline, image: Image) -> None:
    """Stale requests: once `image` is deployed, the pipeline's live requests for older images are
    stale; with the policy's cancelStaleRequests they are cancelled and the requester told."""
    scope = pipeline_scope(pipeline)
    live = (
        await ApprovalRequest.select_for_update()
        .filter(pipeline_id=pipeline.id, state__in=list(LIVE_STATES))
        .exclude(image_id=image.id)
    )
    if not live:
        return
    images = {i.id: i for i in await Image.filter(id__in=[r.image_id for r in live])}
    for request in live:
        if not older(images[request.image_id], image) or effective_state(request) == ApprovalState.EXPIRED:
            continue
        if pipeline.cancel_stale_requests:
            reason = f"a newer image ({image.repository}:{image.tag}) was deployed"
            await lifecycle.close(request, ApprovalState.CANCELLED, actor_id=None, scope=scope, reason=reason)
        elif not request.stale:
            request.stale = True
            await request.save(update_fields=["stale"])
            await audit.record(
                "request_marked_stale",
                request,
                actor_id=None,
                before={"stale": False},
                after={"stale": True, "newerImage": image.id},
                scope=scope,
            )


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
        scope=scope,
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
                scope=scope,
            )
        else:
            await _set_status(locked, status, actor_id=actor.id, scope=scope, message=message)
    return locked
