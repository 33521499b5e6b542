"""May this actor take this action on this object now, and if not, why not.

One decision per action (approve, reject, cancel, expire, deploy, request approval). Each
returns the first refusal, in the order the mutation has always checked them, with the error
the mutation raises and plain words for a person; or None (or a plan with no refusal) when
the action is allowed. The mutation decides inside its transaction, on the rows it locked
(R17), and raises the refusal; the explanations (`viewerCan`, `viewerCanDeploy`,
`viewerCanRequestApproval`) decide on the same rows read without a lock, outside any
transaction, and write nothing. Being the same function, they cannot disagree.

An explanation assumes what the mutation assumes when its optional arguments are left
out: no acknowledgeStale, no freezeOverrideReason, no approverIds.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from greenlight.errors import (
    ApplicationArchived,
    ApproverCannotDeploy,
    BadUserInput,
    ChecksNotPassed,
    Conflict,
    DeployFrozen,
    EnvironmentArchived,
    Forbidden,
    GreenlightError,
    InvalidState,
    NotApproved,
    PromotionRequired,
    SelfApproval,
    StaleImage,
    not_found,
)
from greenlight.models import (
    LIVE_STATES,
    Approval,
    ApprovalRequest,
    ApprovalState,
    Deployment,
    Image,
    Pipeline,
    Role,
)
from greenlight.policies import Action, Actor, Scope
from greenlight.workflow import checks, freezes, policy
from greenlight.workflow.guards import (
    find_image,
    find_pipeline,
    other_application,
    pipeline_scope,
    sees_image,
    sees_pipeline,
    token_refusal,
)
from greenlight.workflow.states import active_deployment, active_image, effective_state, state_q


@dataclass(frozen=True)
class Refusal:
    """The error the mutation raises, and the same refusal in words for a person."""

    error: GreenlightError
    reason: str

    @property
    def code(self) -> str:
        return self.error.code


def refuse(refusal: Refusal | None) -> None:
    """What a mutation does with its decision."""
    if refusal is not None:
        raise refusal.error


@dataclass(frozen=True)
class Verdict:
    """An explanation: allowed, or the code the mutation would give and why."""

    allowed: bool
    code: str | None
    reason: str

    @classmethod
    def of(cls, refusal: Refusal | None, allowed_reason: str) -> Verdict:
        if refusal is None:
            return cls(True, None, allowed_reason)
        return cls(False, refusal.code, refusal.reason)


def _where(scope: Scope) -> str:
    return f"{scope.application}/{scope.environment}"


def _role(actor: Actor, action: Action, scope: Scope, what: str) -> Refusal | None:
    """R3, R4: the role the action needs on the scope (as `guards.require`)."""
    if actor.may(action, scope):
        return None
    if (limited := token_refusal(actor, action, scope)) is not None:
        return Refusal(limited, limited.message)
    decision = actor.authorizer.explain(actor.id, action, scope)
    needed = [r.value for r in decision.roles_needed if r.value != Role.SUPER_ADMIN.value]
    reason = (
        f"You need the {' or '.join(needed)} role on {_where(scope)}"
        if needed
        else f"Only super-admins may {what}"
    )
    return Refusal(Forbidden(f"you may not {what} on {_where(scope)}"), reason)


def _utc(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC" if moment.second else "%Y-%m-%d %H:%M UTC")


# --- one request: approve, reject, cancel, expire -------------------------------------------


@dataclass(frozen=True)
class RequestFacts:
    """What the decisions on one request are made on: the request (its state, expiry,
    requester and staleness), its pipeline's scope, and who built its image."""

    request: ApprovalRequest
    scope: Scope
    built_by_id: int
    unmet_checks: checks.Unmet = checks.Unmet()  # the pipeline's required checks not PASSED


def _sees_request(actor: Actor, facts: RequestFacts) -> Refusal | None:
    """R1: a request the actor cannot see is NOT_FOUND, its explanations too."""
    if actor.may(Action.VIEW, facts.scope):
        return None
    return Refusal(not_found("approval request"), "Approval request not found")


def _self_approval(actor: Actor, facts: RequestFacts, verb: str) -> Refusal | None:
    """R10, super-admins included."""
    if actor.id == facts.built_by_id:
        return Refusal(
            SelfApproval(f"you built this image, so you may not {verb} it"), "You built this image"
        )
    if actor.id == facts.request.requested_by_id:
        return Refusal(
            SelfApproval(f"you requested this approval, so you may not {verb} it"),
            "You requested this approval",
        )
    return None


def _checks_not_passed(unmet: checks.Unmet, verb: str) -> Refusal | None:
    """Required checks: each must have PASSED on the image before it is approved or deployed."""
    if not unmet:
        return None
    error = ChecksNotPassed(
        f"required checks have not passed ({unmet.words()}): the image may not be {verb} yet",
        **unmet.extensions(),
    )
    return Refusal(error, f"Required checks have not passed: {unmet.words()}")


def _no_longer_live(state: ApprovalState) -> str:
    return f"This request is no longer live ({state.value})"


def approve(
    actor: Actor, facts: RequestFacts, approver_ids: Collection[int], *, acknowledge_stale: bool = False
) -> Refusal | None:
    """approveRequest: R1, R4, R10, R16 (and R15: an expired request is EXPIRED), R11, the
    pipeline's required checks (CHECKS_NOT_PASSED, `facts.unmet_checks`), then a stale image
    needs acknowledging. `approver_ids`: who approved the request already."""
    request = facts.request
    refusal = (
        _sees_request(actor, facts)
        or _role(actor, Action.APPROVE, facts.scope, "approve requests")
        or _self_approval(actor, facts, "approve")
    )
    if refusal is not None:
        return refusal
    state = effective_state(request)
    if state != ApprovalState.PENDING:
        reason = (
            "This request is approved already" if state == ApprovalState.APPROVED else _no_longer_live(state)
        )
        return Refusal(
            InvalidState(f"this request is {state.value}; only a PENDING one can be approved"), reason
        )
    if actor.id in approver_ids:
        return Refusal(
            InvalidState("you have approved this request already"), "You already approved this request"
        )
    refusal = _checks_not_passed(facts.unmet_checks, "approved")
    if refusal is not None:
        return refusal
    if request.stale and not acknowledge_stale:
        return Refusal(
            StaleImage(
                "this image is older than the one active on the pipeline; approve with "
                "acknowledgeStale: true if you mean to"
            ),
            "The image is older than the one running: tick the acknowledgement",
        )
    return None


def reject(actor: Actor, facts: RequestFacts) -> Refusal | None:
    """rejectRequest: R1, R4, R10, R16: a PENDING or APPROVED (not yet used) request."""
    refusal = (
        _sees_request(actor, facts)
        or _role(actor, Action.APPROVE, facts.scope, "reject requests")
        or _self_approval(actor, facts, "reject")
    )
    if refusal is not None:
        return refusal
    state = effective_state(facts.request)
    if state not in LIVE_STATES:
        return Refusal(
            InvalidState(f"this request is {state.value}; it can no longer be rejected"),
            _no_longer_live(state),
        )
    return None


def _close(actor: Actor, facts: RequestFacts, allowed: tuple, verb: str, words: str) -> Refusal | None:
    """R14, R15: the requester, or a super-admin, closes a request in an `allowed` state."""
    refusal = _sees_request(actor, facts)
    if refusal is not None:
        return refusal
    if actor.id != facts.request.requested_by_id and not actor.may(Action.CLOSE_ANY_REQUEST, facts.scope):
        return Refusal(
            Forbidden("only the requester or a super-admin may close this request"),
            f"Only the requester or a super-admin may {words}",
        )
    state = effective_state(facts.request)
    if state not in allowed:
        names = " or ".join(s.value for s in allowed)
        reason = (
            _no_longer_live(state)
            if state not in LIVE_STATES
            else f"Only an {names} request can be let expire; this one is {state.value}"
        )
        return Refusal(InvalidState(f"this request is {state.value}; only a {names} one can {verb}"), reason)
    return None


def cancel(actor: Actor, facts: RequestFacts) -> Refusal | None:
    """cancelApprovalRequest: R1, R14, R16."""
    return _close(actor, facts, LIVE_STATES, "be cancelled", "cancel it")


def expire(actor: Actor, facts: RequestFacts) -> Refusal | None:
    """expireApproval: R1, R15, R16: only an APPROVED request."""
    return _close(actor, facts, (ApprovalState.APPROVED,), "be let expire", "let it expire")


def withdraw(actor: Actor, facts: RequestFacts, approver_ids: Collection[int]) -> Refusal | None:
    """withdrawApproval: R1; only while the request is PENDING (once APPROVED it has been
    decided, R12, R16); only one's own approval."""
    refusal = _sees_request(actor, facts)
    if refusal is not None:
        return refusal
    state = effective_state(facts.request)
    if state != ApprovalState.PENDING:
        reason = (
            "This request is approved already: approvals can be withdrawn only while it is pending"
            if state == ApprovalState.APPROVED
            else _no_longer_live(state)
        )
        error = InvalidState(
            f"this request is {state.value}; approvals can be withdrawn only while it is PENDING"
        )
        return Refusal(error, reason)
    if actor.id not in approver_ids:
        return Refusal(
            InvalidState("you have not approved this request"), "You have not approved this request"
        )
    return None


@dataclass(frozen=True)
class RequestVerdicts:
    approve: Verdict
    reject: Verdict
    cancel: Verdict
    expire: Verdict


def explain_request(actor: Actor, facts: RequestFacts, approver_ids: Collection[int]) -> RequestVerdicts:
    """`ApprovalRequest.viewerCan`: the four decisions above, as the mutations take them."""
    return RequestVerdicts(
        approve=Verdict.of(approve(actor, facts, approver_ids), "You may approve this request"),
        reject=Verdict.of(reject(actor, facts), "You may reject this request, giving a reason"),
        cancel=Verdict.of(cancel(actor, facts), "You may cancel this request"),
        expire=Verdict.of(expire(actor, facts), "You may let this approval expire"),
    )


# --- a pipeline and an image: deploy, request approval ---------------------------------------


async def _pipeline_and_image(
    actor: Actor, pipeline_id: int, image_id: int, action: Action, what: str, *, lock: bool
) -> tuple[Pipeline | None, Image | None, Refusal | None]:
    """R1, then R3 (the role on the pipeline's scope), then R1 for the image, then R6 (the
    image belongs to the pipeline's application). `lock` locks the pipeline's row."""
    pipeline = await find_pipeline(pipeline_id, lock=lock)
    if not sees_pipeline(actor, pipeline):
        return None, None, Refusal(not_found("pipeline"), "Pipeline not found")
    scope = pipeline_scope(pipeline)
    refusal = _role(actor, action, scope, what) or archived(pipeline)
    if refusal is not None:
        return pipeline, None, refusal
    image = await find_image(image_id)
    if not sees_image(actor, image):
        return pipeline, None, Refusal(not_found("image"), "Image not found")
    error = other_application(image, pipeline)
    if error is not None:
        reason = f"This image belongs to {image.application.name}, not to {pipeline.application.name}"
        return pipeline, image, Refusal(error, reason)
    return pipeline, image, None


def archived(pipeline: Pipeline) -> Refusal | None:
    """An archived application or environment takes no new requests or deployments; its
    history stays readable."""
    if pipeline.application.archived_at is not None:
        name = pipeline.application.name
        return Refusal(
            ApplicationArchived(f"application {name} is archived: it takes no new requests or deployments"),
            f"{name} is archived: it takes no new requests or deployments",
        )
    if pipeline.environment.archived_at is not None:
        name = pipeline.environment.name
        return Refusal(
            EnvironmentArchived(f"environment {name} is archived: it takes no new requests or deployments"),
            f"{name} is archived: it takes no new requests or deployments",
        )
    return None


def _running(scope: Scope, active: Deployment | Image) -> Refusal:
    """R6, R22: the pipeline's active image."""
    if isinstance(active, Deployment):
        error = Conflict(f"this image is already active on {scope.environment}", existing=active)
    else:
        error = Conflict(f"this image is already active on {scope.environment}")
    return Refusal(error, f"This image is already running on {scope.environment}")


@dataclass(frozen=True)
class DeployPlan:
    """What deployImage would do: refused, or deploy `image`, using up `request` (R20;
    None when the pipeline needs no approval, or by an approval `exception`)."""

    refusal: Refusal | None
    pipeline: Pipeline | None = None
    image: Image | None = None
    request: ApprovalRequest | None = None
    exception: bool = False
    overridden: str | None = None  # the freeze override's reason, if a freeze was overridden


async def _approved_request(pipeline: Pipeline, image: Image, *, lock: bool) -> ApprovalRequest | None:
    """The usable APPROVED request for (image, pipeline); None if there is none (R15, R20)."""
    query = ApprovalRequest.filter(image_id=image.id, pipeline_id=pipeline.id, state=ApprovalState.APPROVED)
    if lock:
        query = query.select_for_update()
    request = await query.first()
    if request is None or effective_state(request) != ApprovalState.APPROVED:
        return None
    return request


async def _approved_live_request(pipeline: Pipeline, image: Image, user_id: int) -> bool:
    """R21: the user approved a live (PENDING or APPROVED) request for (image, pipeline)."""
    return await Approval.filter(
        state_q(list(LIVE_STATES), prefix="request__"),
        user_id=user_id,
        request__image_id=image.id,
        request__pipeline_id=pipeline.id,
    ).exists()


def _progress_words(lines: Sequence[policy.Requirement]) -> str:
    """ "Not approved yet: 1 of 2 approvals. Needs 1 more from group qa" """
    total, *others = lines
    words = [f"Not approved yet: {total.approved} of {total.required} approvals"]
    for line in others:
        if line.met:
            continue
        if line.group_id is not None:
            words.append(f"Needs {line.required - line.approved} more from group {line.description}")
        else:
            words.append(f"Needs the approval of {line.description}")
    return ". ".join(words)


async def _not_approved(pipeline: Pipeline, image: Image) -> Refusal:
    """R20, R12: no request, or only a partial one."""
    partial = await ApprovalRequest.filter(
        image_id=image.id, pipeline_id=pipeline.id, state=ApprovalState.PENDING
    ).first()
    if partial is not None and effective_state(partial) == ApprovalState.PENDING:
        lines = await policy.progress(partial)
        return Refusal(
            NotApproved(f"this image is not approved for this pipeline yet ({', '.join(map(str, lines))})"),
            _progress_words(lines),
        )
    return Refusal(
        NotApproved("this image has no usable approval for this pipeline"),
        f"Not approved: this image has no approved request on {_where(pipeline_scope(pipeline))}",
    )


async def _freeze(
    actor: Actor, pipeline: Pipeline, override_reason: str | None
) -> tuple[str | None, Refusal | None]:
    """Deploy freezes, as `freezes.check_deploy` decides them: (the override's reason, None)
    or (None, the refusal)."""
    try:
        return await freezes.check_deploy(actor, pipeline, override_reason), None
    except DeployFrozen as error:
        until = _utc(datetime.fromisoformat(error.extensions["frozenUntil"]))
        hint = " (as a super-admin you may override it, giving a reason)" if actor.is_super_admin else ""
        return None, Refusal(error, f"Frozen until {until}{hint}")
    except Forbidden as error:
        return None, Refusal(error, "Only a super-admin may override a deploy freeze")


async def deploy(
    actor: Actor,
    pipeline_id: int,
    image_id: int,
    *,
    lock: bool = False,
    acknowledge_stale: bool = False,
    override_reason: str | None = None,
) -> DeployPlan:
    """deployImage: R1, R3, R6; R22 (CONFLICT); deploy freezes (DEPLOY_FROZEN); required
    checks (CHECKS_NOT_PASSED, whatever the approval or exception); a stale
    approval needs acknowledging (STALE_IMAGE); R20 (NOT_APPROVED) unless the actor is an
    approval exception; R21 (APPROVER_CANNOT_DEPLOY). `lock`: the pipeline and the approved
    request are locked (the caller's transaction)."""
    pipeline, image, refusal = await _pipeline_and_image(
        actor, pipeline_id, image_id, Action.DEPLOY, "deploy", lock=lock
    )
    if refusal is not None:
        return DeployPlan(refusal)
    scope = pipeline_scope(pipeline)
    active = await active_deployment(pipeline.id)
    if active is not None and active.image_id == image.id:
        return DeployPlan(_running(scope, active))
    overridden, refusal = await _freeze(actor, pipeline, override_reason)
    if refusal is not None:
        return DeployPlan(refusal)
    if pipeline.required_approvals == 0:
        refusal = _checks_not_passed(await checks.unmet_for(pipeline, image.id, lock=lock), "deployed")
        return DeployPlan(refusal) if refusal else DeployPlan(None, pipeline, image, overridden=overridden)
    request = await _approved_request(pipeline, image, lock=lock)
    # the check rows are locked after the request, in approve's order
    refusal = _checks_not_passed(await checks.unmet_for(pipeline, image.id, lock=lock), "deployed")
    if refusal is not None:
        return DeployPlan(refusal)
    if request is not None and request.stale and not acknowledge_stale:
        return DeployPlan(
            Refusal(
                StaleImage(
                    f"this image's approval is stale: a newer image was deployed on {scope.domain} "
                    "after it was requested; deploy with acknowledgeStale: true if you mean to roll back"
                ),
                "The image is older than the one running: tick the acknowledgement",
            )
        )
    if request is None and not await policy.is_exception(pipeline, actor.id):
        return DeployPlan(await _not_approved(pipeline, image))
    if not pipeline.approvers_can_deploy and await _approved_live_request(pipeline, image, actor.id):
        # R21: approving makes you an approver of the request, approval exception or not
        return DeployPlan(
            Refusal(
                ApproverCannotDeploy(
                    "you approved this request, and this pipeline does not let approvers deploy"
                ),
                f"You approved this image's request, and {_where(scope)} does not let approvers deploy",
            )
        )
    return DeployPlan(None, pipeline, image, request, exception=request is None, overridden=overridden)


async def explain_deploy(actor: Actor, pipeline_id: int, image_id: int) -> Verdict:
    """`Pipeline.viewerCanDeploy`: `deploy` on rows read without a lock."""
    plan = await deploy(actor, pipeline_id, image_id)
    if plan.refusal is not None:
        return Verdict.of(plan.refusal, "")
    where = _where(pipeline_scope(plan.pipeline))
    if plan.exception:
        allowed = f"You may deploy this image without approval: you are an approval exception on {where}"
    elif plan.request is not None:
        allowed = "You may deploy this image; its approval is used up by the deploy"
    else:
        allowed = f"You may deploy this image: {where} needs no approval"
    return Verdict.of(None, allowed)


@dataclass(frozen=True)
class RequestApprovalPlan:
    """What requestApproval would do: refused, or request `image` on `pipeline`, first
    closing `expired` (a live request whose expiry has passed, R15)."""

    refusal: Refusal | None
    pipeline: Pipeline | None = None
    image: Image | None = None
    active: Image | None = None
    expired: ApprovalRequest | None = None
    named: list[int] | None = None
    snapshot: policy.Snapshot | None = None


async def request_approval(
    actor: Actor, pipeline_id: int, image_id: int, approver_ids: Sequence[int] = (), *, lock: bool = False
) -> RequestApprovalPlan:
    """requestApproval: R1, R3, R6 (needs approval at all, not the active image, one live
    request), promotion (PROMOTION_REQUIRED), R8 and R9 (named approvers eligible), and a
    policy its eligible approvers can meet. `lock`: the pipeline and a live request are
    locked (the caller's transaction)."""
    pipeline, image, refusal = await _pipeline_and_image(
        actor, pipeline_id, image_id, Action.REQUEST_APPROVAL, "request approval", lock=lock
    )
    if refusal is not None:
        return RequestApprovalPlan(refusal)
    scope = pipeline_scope(pipeline)
    if pipeline.required_approvals == 0:
        error = BadUserInput(
            f"pipeline {scope.domain} needs no approval (requiredApprovals is 0): deploy directly"
        )
        return RequestApprovalPlan(Refusal(error, f"{_where(scope)} needs no approval: deploy directly"))
    active = await active_image(pipeline.id)
    if active is not None and active.id == image.id:
        return RequestApprovalPlan(_running(scope, active))
    query = ApprovalRequest.filter(image_id=image.id, pipeline_id=pipeline.id, state__in=list(LIVE_STATES))
    existing = await (query.select_for_update() if lock else query).first()
    expired = None
    if existing is not None:
        state = effective_state(existing)
        if state != ApprovalState.EXPIRED:
            error = Conflict("a live approval request for this image and pipeline exists", existing=existing)
            reason = f"This image has a live request on {_where(scope)} already ({state.value})"
            return RequestApprovalPlan(Refusal(error, reason))
        expired = existing
    refusal = await _promotion(pipeline, image)
    if refusal is not None:
        return RequestApprovalPlan(refusal)
    eligible = {u.id for u in await policy.eligible_approvers(actor, pipeline, image, actor.id)}
    wanted = list(dict.fromkeys(approver_ids))
    ineligible = [i for i in wanted if i not in eligible]
    if ineligible:
        error = BadUserInput(
            f"approverIds: {len(ineligible)} of the named users may not approve this "
            "request (see eligibleApprovers)",
            field="approverIds",
            ineligibleUserIds=ineligible,
        )
        return RequestApprovalPlan(Refusal(error, "Some of the people named may not approve this request"))
    snapshot = await policy.snapshot(pipeline)
    error = await policy.unmeetable(snapshot, eligible)
    if error is not None:
        return RequestApprovalPlan(Refusal(error, error.message[0].upper() + error.message[1:]))
    return RequestApprovalPlan(None, pipeline, image, active, expired, wanted, snapshot)


async def _promotion(pipeline: Pipeline, image: Image) -> Refusal | None:
    """Promotion: the image must have been HEALTHY on the environment the pipeline names."""
    environment = await checks.promotion_missing(pipeline, image)
    if environment is None:
        return None
    application = pipeline.application.name
    error = PromotionRequired(
        f"this image has not been HEALTHY on {application}/{environment.name} yet: deploy it there first",
        environment=environment.name,
    )
    reason = f"Deploy this image to {environment.name} first: it has not been healthy there yet"
    return Refusal(error, reason)


async def explain_request_approval(actor: Actor, pipeline_id: int, image_id: int) -> Verdict:
    """`Pipeline.viewerCanRequestApproval`: `request_approval` on rows read without a lock."""
    plan = await request_approval(actor, pipeline_id, image_id)
    where = "" if plan.pipeline is None else _where(pipeline_scope(plan.pipeline))
    return Verdict.of(plan.refusal, f"You may request approval of this image on {where}")
