"""The approval workflow: request, approve, reject, cancel, expire (R6 to R18)."""

from __future__ import annotations

from datetime import timedelta

from tortoise.expressions import Subquery

from greenlight import notifications
from greenlight.models import (
    LIVE_STATES,
    Approval,
    ApprovalRequest,
    ApprovalState,
    Image,
    NamedApprover,
    Pipeline,
    Rejection,
    User,
)
from greenlight.models.prepared import Prepared
from greenlight.policies import Action, Actor
from greenlight.workflow import audit, policy, validation
from greenlight.workflow.catalog import close_request
from greenlight.workflow.clock import now
from greenlight.workflow.deployments import deploy_on_approval
from greenlight.workflow.errors import (
    BadUserInput,
    Conflict,
    Forbidden,
    InvalidState,
    SelfApproval,
    StaleImage,
    not_found,
)
from greenlight.workflow.guards import (
    image_of_pipeline,
    pipeline_scope,
    require,
    visible_image,
    visible_pipeline,
)
from greenlight.workflow.states import active_image, effective_state, older
from greenlight.workflow.tx import transaction


async def eligible_approvers(actor: Actor, pipeline: Pipeline, image: Image, requester_id: int) -> list[User]:
    """R9: image-approvers on the scope plus super-admins, minus builder and requester."""
    ids = actor.authorizer.users_with(Action.APPROVE, pipeline_scope(pipeline))
    ids -= {image.built_by_id, requester_id}
    if not ids:
        return []
    return await User.filter(id__in=ids, is_active=True).order_by("name", "id")


async def eligible_approvers_for_caller(actor: Actor, pipeline_id: int, image_id: int) -> list[User]:
    """Who the caller could name on a request for this image and pipeline (R8, R9)."""
    pipeline = await visible_pipeline(actor, pipeline_id)
    image = await visible_image(actor, image_id)
    image_of_pipeline(image, pipeline)
    return await eligible_approvers(actor, pipeline, image, actor.id)


async def _lock(actor: Actor, request_id: int) -> tuple[ApprovalRequest, Pipeline]:
    """Lock the request's pipeline, then the request (always in this order), and read both:
    the pipeline with its application and environment, then the request with its image, a
    statement each. A request the actor may not see is NOT_FOUND (R1)."""
    pipeline = await _LOCKED_PIPELINE.first(request_id)
    if pipeline is None or not actor.may(Action.VIEW, pipeline_scope(pipeline)):
        raise not_found("approval request")
    request = await _LOCKED_REQUEST.first(request_id)
    if request is None:
        raise not_found("approval request")
    request.pipeline = pipeline
    return request, pipeline


# _lock's two statements, their SQL built once (issue 8).
_LOCKED_PIPELINE = Prepared(
    Pipeline,
    lambda request_id: (
        Pipeline.filter(id__in=Subquery(ApprovalRequest.filter(id=request_id).values("pipeline_id")))
        .select_related("application", "environment")
        .select_for_update(of=(Pipeline._meta.db_table,))
        .limit(1)
    ),
)
_APPROVALS_WITH_USERS = Prepared(
    Approval,
    lambda request_id: Approval.filter(request_id=request_id).select_related("user").order_by("id"),
)
_LOCKED_REQUEST = Prepared(
    ApprovalRequest,
    lambda request_id: (
        ApprovalRequest.filter(id=request_id)
        .select_related("image")
        .select_for_update(of=(ApprovalRequest._meta.db_table,))
        .limit(1)
    ),
)


async def request_approval(
    actor: Actor,
    pipeline_id: int,
    image_id: int,
    approver_ids: list[int],
    comment: str | None,
) -> ApprovalRequest:
    """R3, R6, R7, R8, R9."""
    comment = validation.text("comment", comment)
    pipeline = await visible_pipeline(actor, pipeline_id)
    scope = pipeline_scope(pipeline)
    require(actor, Action.REQUEST_APPROVAL, scope, "request approval")
    image = await visible_image(actor, image_id)
    image_of_pipeline(image, pipeline)
    async with transaction():
        pipeline = await visible_pipeline(actor, pipeline_id, lock=True)
        if pipeline.required_approvals == 0:
            raise BadUserInput(
                f"pipeline {scope.domain} needs no approval (requiredApprovals is 0): deploy directly"
            )
        active = await active_image(pipeline.id)
        if active is not None and active.id == image.id:
            raise Conflict(f"this image is already active on {scope.environment}")
        existing = await ApprovalRequest.select_for_update().get_or_none(
            image_id=image.id, pipeline_id=pipeline.id, state__in=list(LIVE_STATES)
        )
        if existing is not None:
            if effective_state(existing) != ApprovalState.EXPIRED:
                raise Conflict(
                    "a live approval request for this image and pipeline exists",
                    existing=existing,
                )
            await close_request(existing, ApprovalState.EXPIRED, actor_id=None, scope=scope)

        eligible = {u.id for u in await eligible_approvers(actor, pipeline, image, actor.id)}
        wanted = list(dict.fromkeys(approver_ids))
        ineligible = [i for i in wanted if i not in eligible]
        if ineligible:
            raise BadUserInput(
                f"approverIds: {len(ineligible)} of the named users may not approve this "
                "request (see eligibleApprovers)",
                field="approverIds",
                ineligibleUserIds=ineligible,
            )
        snapshot = await policy.snapshot(pipeline)
        await policy.refuse_unmeetable(snapshot, eligible)
        stale = active is not None and older(image, active)
        requested_at = now()
        expires_at = requested_at + timedelta(hours=pipeline.ttl_hours) if pipeline.ttl_hours else None
        request = await ApprovalRequest.create(
            image=image,
            pipeline=pipeline,
            requested_by_id=actor.id,
            state=ApprovalState.PENDING,
            live_key=f"{image.id}:{pipeline.id}",
            requested_at=requested_at,
            comment=comment,
            required_approvals=pipeline.required_approvals,
            expires_at=expires_at,
            policy=snapshot.stored(),
            stale=stale,
        )
        await NamedApprover.bulk_create(
            [NamedApprover(request_id=request.id, user_id=user_id) for user_id in wanted]
        )
        await notifications.request_made(request, wanted)
        await audit.record(
            "request_approval",
            request,
            actor_id=actor.id,
            after={
                "state": ApprovalState.PENDING.value,
                "image": image.id,
                "requiredApprovals": request.required_approvals,
                "policy": snapshot.stored(),
                "stale": stale,
                "namedApprovers": wanted,
            },
            application=scope.application,
            environment=scope.environment,
        )
    return request


def _refuse_self_approval(actor: Actor, request: ApprovalRequest, verb: str) -> None:
    if actor.id == request.image.built_by_id:
        raise SelfApproval(f"you built this image, so you may not {verb} it")
    if actor.id == request.requested_by_id:
        raise SelfApproval(f"you requested this approval, so you may not {verb} it")


async def approve(
    actor: Actor, request_id: int, comment: str | None, acknowledge_stale: bool = False
) -> ApprovalRequest:
    """R4, R10, R11, R12, R16, R17; R24 on AUTOMATIC pipelines; issue 6: the request's
    policy snapshot decides when it is APPROVED, and a stale one needs acknowledging.

    Returns the request with what it was decided on fetched (issue 8): its pipeline (with
    application and environment), its image, and its approvals, the new one included.
    """
    comment = validation.text("comment", comment)
    async with transaction():
        request, pipeline = await _lock(actor, request_id)
        scope = pipeline_scope(pipeline)
        require(actor, Action.APPROVE, scope, "approve requests")
        _refuse_self_approval(actor, request, "approve")
        state = effective_state(request)
        if state != ApprovalState.PENDING:
            raise InvalidState(f"this request is {state.value}; only a PENDING one can be approved")
        # with their users, who the answer names (issue 8)
        request.approvals._set_result_for_query(await _APPROVALS_WITH_USERS.all(request.id))
        approvals = [(a.user_id, a.group_ids) for a in request.approvals]
        if any(user_id == actor.id for user_id, _ in approvals):
            raise InvalidState("you have approved this request already")
        if request.stale and not acknowledge_stale:
            raise StaleImage(
                "this image is older than the one active on the pipeline; approve with "
                "acknowledgeStale: true if you mean to"
            )
        snapshot = policy.Snapshot.of(request)
        before = policy.requirements(request.required_approvals, snapshot, approvals)
        group_ids = await policy.groups_of_approver(request, actor.id)
        approval = await Approval.create(
            request_id=request.id, user_id=actor.id, comment=comment, group_ids=group_ids
        )
        request.approvals.related_objects.append(approval)
        lines = policy.requirements(request.required_approvals, snapshot, [*approvals, (actor.id, group_ids)])
        approved = all(line.met for line in lines)
        more = []
        if approved:
            request.state = ApprovalState.APPROVED
            await request.save(update_fields=["state"])
            more.append(
                audit.event(
                    "request_approved",
                    request,
                    actor_id=actor.id,
                    before={"state": ApprovalState.PENDING.value},
                    after={"state": ApprovalState.APPROVED.value},
                    application=scope.application,
                    environment=scope.environment,
                )
            )
        await audit.record(  # with request_approved in one statement, before R24's events
            "approve",
            request,
            actor_id=actor.id,
            before={"state": state.value, "progress": ", ".join(map(str, before))},
            after={
                "state": state.value,
                "progress": ", ".join(map(str, lines)),
                "acknowledgedStale": bool(request.stale),
            },
            application=scope.application,
            environment=scope.environment,
            more=more,
        )
        if approved:
            await notifications.request_closed(request, "approved")
            await deploy_on_approval(pipeline, request, actor.authorizer)
    return request


async def reject(actor: Actor, request_id: int, reason: str) -> ApprovalRequest:
    """R4, R10, R13, R16: a PENDING or APPROVED (not yet used) request can be rejected."""
    reason = validation.text("reason", reason, required=True)
    async with transaction():
        request, pipeline = await _lock(actor, request_id)
        scope = pipeline_scope(pipeline)
        require(actor, Action.APPROVE, scope, "reject requests")
        _refuse_self_approval(actor, request, "reject")
        state = effective_state(request)
        if state not in LIVE_STATES:
            raise InvalidState(f"this request is {state.value}; it can no longer be rejected")
        await Rejection.create(request_id=request.id, user_id=actor.id, reason=reason)
        await close_request(request, ApprovalState.REJECTED, actor_id=actor.id, scope=scope, reason=reason)
    return request


async def _close_by_requester_or_admin(
    actor: Actor, request_id: int, new_state: ApprovalState, allowed: tuple, verb: str
) -> ApprovalRequest:
    """R14, R15: the requester, or a super-admin, closes a request."""
    async with transaction():
        request, pipeline = await _lock(actor, request_id)
        scope = pipeline_scope(pipeline)
        if actor.id != request.requested_by_id and not actor.may(Action.CLOSE_ANY_REQUEST, scope):
            raise Forbidden("only the requester or a super-admin may close this request")
        state = effective_state(request)
        if state not in allowed:
            names = " or ".join(s.value for s in allowed)
            raise InvalidState(f"this request is {state.value}; only a {names} one can {verb}")
        await close_request(request, new_state, actor_id=actor.id, scope=scope)
    return request


async def cancel(actor: Actor, request_id: int) -> ApprovalRequest:
    """R14, R16, R17."""
    return await _close_by_requester_or_admin(
        actor, request_id, ApprovalState.CANCELLED, LIVE_STATES, "be cancelled"
    )


async def expire(actor: Actor, request_id: int) -> ApprovalRequest:
    """R15, R16."""
    return await _close_by_requester_or_admin(
        actor, request_id, ApprovalState.EXPIRED, (ApprovalState.APPROVED,), "be let expire"
    )


async def sweep_expired() -> int:
    """Write EXPIRED on live requests whose expiry has passed (R15, R25: audit).

    Reads already treat them as EXPIRED; this only makes the stored state and the audit
    log catch up. Returns how many it closed.
    """
    closed = 0
    due = await ApprovalRequest.filter(state__in=list(LIVE_STATES), expires_at__lte=now()).values_list(
        "id", flat=True
    )
    for request_id in due:
        async with transaction():
            request = await ApprovalRequest.select_for_update().get_or_none(id=request_id)
            if request is None or request.state not in LIVE_STATES:
                continue
            if effective_state(request) != ApprovalState.EXPIRED:
                continue
            await request.fetch_related("pipeline__application", "pipeline__environment")
            await close_request(
                request,
                ApprovalState.EXPIRED,
                actor_id=None,
                scope=pipeline_scope(request.pipeline),
            )
            closed += 1
    return closed
