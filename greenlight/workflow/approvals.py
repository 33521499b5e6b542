"""The approval workflow: request, approve, reject, cancel, expire (R6 to R18)."""

from __future__ import annotations

from datetime import timedelta

from greenlight import notifications
from greenlight.clock import now
from greenlight.errors import (
    BadUserInput,
    Conflict,
    InvalidState,
    not_found,
)
from greenlight.models import (
    LIVE_STATES,
    Approval,
    ApprovalRequest,
    ApprovalState,
    NamedApprover,
    Pipeline,
    Rejection,
    User,
    queries,
)
from greenlight.policies import Action, Actor
from greenlight.tx import transaction
from greenlight.workflow import audit, checks, decisions, lifecycle, policy, validation
from greenlight.workflow.decisions import refuse
from greenlight.workflow.deployments import deploy_on_approval
from greenlight.workflow.guards import (
    image_of_pipeline,
    pipeline_scope,
    visible_image,
    visible_pipeline,
)
from greenlight.workflow.states import effective_state, older


async def eligible_approvers_for_caller(actor: Actor, pipeline_id: int, image_id: int) -> list[User]:
    """Who the caller could name on a request for this image and pipeline (R8, R9)."""
    pipeline = await visible_pipeline(actor, pipeline_id)
    image = await visible_image(actor, image_id)
    image_of_pipeline(image, pipeline)
    return await policy.eligible_approvers(actor, pipeline, image, actor.id)


async def _lock(actor: Actor, request_id: int) -> tuple[ApprovalRequest, Pipeline]:
    """The request and its pipeline, locked in R17's order (`lifecycle.lock`). A request the
    actor may not see is NOT_FOUND (R1)."""
    locked = await lifecycle.lock(request_id)
    if locked is None or not actor.may(Action.VIEW, pipeline_scope(locked[1])):
        raise not_found("approval request")
    return locked


async def request_approval(
    actor: Actor,
    pipeline_id: int,
    image_id: int,
    approver_ids: list[int],
    comment: str | None,
    previous_request_id: int | None = None,
) -> ApprovalRequest:
    """R3, R6, R7, R8, R9; refusals decided by `decisions.request_approval`; asking again
    after a rejection (`previous_request_id`): see `_previous`."""
    comment = validation.text("comment", comment)
    async with transaction():
        plan = await decisions.request_approval(actor, pipeline_id, image_id, approver_ids, lock=True)
        refuse(plan.refusal)
        if previous_request_id is not None:
            await _previous(actor, previous_request_id, plan.image.id, plan.pipeline.id)
        pipeline, image, active, snapshot, wanted = (
            plan.pipeline,
            plan.image,
            plan.active,
            plan.snapshot,
            plan.named,
        )
        scope = pipeline_scope(pipeline)
        if plan.expired is not None:
            await lifecycle.close(plan.expired, ApprovalState.EXPIRED, actor_id=None, scope=scope)
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
            previous_request_id=previous_request_id,
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
                **({"previousRequest": previous_request_id} if previous_request_id is not None else {}),
            },
            scope=scope,
        )
    return request


async def _previous(actor: Actor, previous_id: int, image_id: int, pipeline_id: int) -> None:
    """Asking again after a rejection: the request answered must be one the actor sees
    (NOT_FOUND), of the same image and pipeline (BAD_USER_INPUT), REJECTED (INVALID_STATE),
    and not answered already (CONFLICT naming the answer), so one image's requests on one
    pipeline read as a chain. Its row is locked: two answers to it cannot both be made."""
    previous = await ApprovalRequest.select_for_update().get_or_none(id=previous_id)
    if previous is None or previous.pipeline_id != pipeline_id and not await _sees(actor, previous):
        raise not_found("previous approval request")
    if previous.image_id != image_id or previous.pipeline_id != pipeline_id:
        raise BadUserInput(
            "previousRequestId: that request is for another image or pipeline; name a rejected "
            "request of this image on this pipeline",
            field="previousRequestId",
        )
    state = effective_state(previous)
    if state != ApprovalState.REJECTED:
        raise InvalidState(
            f"previousRequestId: that request is {state.value}; only a REJECTED one can be asked again after"
        )
    answer = await ApprovalRequest.get_or_none(previous_request_id=previous.id)
    if answer is not None:
        raise Conflict("that rejected request has been asked again already", existing=answer)


async def _sees(actor: Actor, request: ApprovalRequest) -> bool:
    pipeline = (
        await Pipeline.filter(id=request.pipeline_id).select_related("application", "environment").first()
    )
    return pipeline is not None and actor.may(Action.VIEW, pipeline_scope(pipeline))


def _facts(
    request: ApprovalRequest, pipeline: Pipeline, unmet_checks: checks.Unmet | None = None
) -> decisions.RequestFacts:
    return decisions.RequestFacts(
        request, pipeline_scope(pipeline), request.image.built_by_id, unmet_checks or checks.Unmet()
    )


async def approve(
    actor: Actor, request_id: int, comment: str | None, acknowledge_stale: bool = False
) -> ApprovalRequest:
    """R4, R10, R11, R12, R16, R17; R24 on AUTOMATIC pipelines; the request's
    policy snapshot decides when it is APPROVED, and a stale one needs acknowledging.
    Refusals decided by `decisions.approve`.

    Returns the request with what it was decided on fetched: its pipeline (with
    application and environment), its image, and its approvals, the new one included.
    """
    comment = validation.text("comment", comment)
    async with transaction():
        request, pipeline = await _lock(actor, request_id)
        scope = pipeline_scope(pipeline)
        # with their users, who the answer names
        await queries.keep_approvals(request, await queries.approvals_with_users(request.id))
        approvals = [(a.user_id, a.group_ids) for a in request.approvals]
        approver_ids = {user_id for user_id, _ in approvals}
        # the required check rows, locked after the pipeline and the request
        unmet = await checks.unmet_for(pipeline, request.image_id, lock=True)
        refuse(
            decisions.approve(
                actor, _facts(request, pipeline, unmet), approver_ids, acknowledge_stale=acknowledge_stale
            )
        )
        state = effective_state(request)
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
            await lifecycle.approve(request)
            more.append(
                audit.event(
                    "request_approved",
                    request,
                    actor_id=actor.id,
                    before={"state": ApprovalState.PENDING.value},
                    after={"state": ApprovalState.APPROVED.value},
                    scope=scope,
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
            scope=scope,
            more=more,
        )
        if approved:
            await notifications.request_closed(request, "approved", actor_id=actor.id)
            await deploy_on_approval(pipeline, request, actor.authorizer)
    return request


async def reject(actor: Actor, request_id: int, reason: str) -> ApprovalRequest:
    """R4, R10, R13, R16: a PENDING or APPROVED (not yet used) request can be rejected.
    Refusals decided by `decisions.reject`."""
    reason = validation.text("reason", reason, required=True)
    async with transaction():
        request, pipeline = await _lock(actor, request_id)
        refuse(decisions.reject(actor, _facts(request, pipeline)))
        await Rejection.create(request_id=request.id, user_id=actor.id, reason=reason)
        await lifecycle.close(
            request, ApprovalState.REJECTED, actor_id=actor.id, scope=pipeline_scope(pipeline), reason=reason
        )
    return request


async def cancel(actor: Actor, request_id: int) -> ApprovalRequest:
    """R14, R16, R17; refusals decided by `decisions.cancel`."""
    return await _close(actor, request_id, decisions.cancel, ApprovalState.CANCELLED)


async def expire(actor: Actor, request_id: int) -> ApprovalRequest:
    """R15, R16; refusals decided by `decisions.expire`."""
    return await _close(actor, request_id, decisions.expire, ApprovalState.EXPIRED)


async def _close(actor: Actor, request_id: int, decide, new_state: ApprovalState) -> ApprovalRequest:
    """Lock the request (R17), refuse what `decide` refuses, then move it to `new_state`."""
    async with transaction():
        request, pipeline = await _lock(actor, request_id)
        refuse(decide(actor, _facts(request, pipeline)))
        await lifecycle.close(request, new_state, actor_id=actor.id, scope=pipeline_scope(pipeline))
    return request


async def withdraw_approval(actor: Actor, request_id: int) -> ApprovalRequest:
    """Withdrawing one's own approval while the request is PENDING: it no longer counts
    (R12), audited (R25), serialised with approvals, rejections and deploys by the same
    locks (R17). Refusals decided by `decisions.withdraw`.

    Returns the request with its pipeline, image and remaining approvals fetched."""
    async with transaction():
        request, pipeline = await _lock(actor, request_id)
        scope = pipeline_scope(pipeline)
        approvals_before = await queries.approvals_with_users(request.id)
        approvals = [(a.user_id, a.group_ids) for a in approvals_before]
        refuse(decisions.withdraw(actor, _facts(request, pipeline), {user_id for user_id, _ in approvals}))
        await Approval.filter(request_id=request.id, user_id=actor.id).delete()
        remaining = [a for a in approvals_before if a.user_id != actor.id]
        await queries.keep_approvals(request, remaining)
        snapshot = policy.Snapshot.of(request)
        before = policy.requirements(request.required_approvals, snapshot, approvals)
        after = policy.requirements(
            request.required_approvals, snapshot, [(a.user_id, a.group_ids) for a in remaining]
        )
        state = ApprovalState.PENDING.value
        await audit.record(
            "withdraw_approval",
            request,
            actor_id=actor.id,
            before={"state": state, "progress": ", ".join(map(str, before))},
            after={"state": state, "progress": ", ".join(map(str, after))},
            scope=scope,
        )
    return request


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
            locked = await lifecycle.lock(request_id)  # R17's order, as approve takes them
            if locked is None:
                continue
            request, pipeline = locked
            if request.state not in LIVE_STATES or effective_state(request) != ApprovalState.EXPIRED:
                continue  # another process, or a decision, got there first
            await lifecycle.close(
                request, ApprovalState.EXPIRED, actor_id=None, scope=pipeline_scope(pipeline)
            )
            closed += 1
    return closed
