"""Reminders and escalation of requests left PENDING.

A pipeline's `remindAfterHours` reminds the named approvers who have not approved yet of a
request pending for that long, and again every such period while it stays pending;
`escalateAfterHours` tells the members of `escalateToGroup`, or else the super-admins,
once, that it has waited that long. Both follow the pipeline's settings of now (not a
snapshot): a change applies to the requests already pending.

The background jobs of every process call `send_due`. Each reminder and each escalation
is claimed by a conditional UPDATE of the request (`last_reminded_at`, `escalated_at`) in
the transaction that writes its emails and its audit event: of two processes claiming the
same one, the second finds the row changed and sends nothing (on PostgreSQL it waits for
the first's row lock, then re-reads the condition).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from tortoise.expressions import Q

from greenlight import notifications
from greenlight.clock import now
from greenlight.errors import BadUserInput
from greenlight.models import (
    Approval,
    ApprovalRequest,
    ApprovalState,
    Group,
    GroupMember,
    NamedApprover,
    Pipeline,
    User,
)
from greenlight.policies import Action, Authorizer, Scope
from greenlight.tx import transaction
from greenlight.workflow import audit, policy
from greenlight.workflow.guards import pipeline_scope
from greenlight.workflow.validation import MAX_TTL_HOURS, in_range

EVERYTHING = Scope("*", "*")
# The pipeline's columns the settings are stored in.
SETTINGS = ("remind_after_hours", "escalate_after_hours", "escalate_group_id")


# --- the settings ----------------------------------------------------------------------------


async def apply_settings(pipeline: Pipeline, edit) -> None:
    """Set the reminder settings an edit of the pipeline names (None keeps; `clear_*`
    removes), and check the result: hours from 1 to 8760, escalation after the first
    reminder when both are set, an escalation group that exists. BAD_USER_INPUT otherwise,
    before anything is written (the caller writes the pipeline)."""
    remind = _setting("remindAfterHours", edit.remind_after_hours, edit.clear_remind_after_hours)
    escalate = _setting("escalateAfterHours", edit.escalate_after_hours, edit.clear_escalate_after_hours)
    if edit.escalate_to_group_id is not None and edit.clear_escalate_to_group:
        raise BadUserInput(
            "escalateToGroupId: give a group or clearEscalateToGroup, not both", field="escalateToGroupId"
        )
    if remind is not None:
        pipeline.remind_after_hours = remind or None
    if escalate is not None:
        pipeline.escalate_after_hours = escalate or None
    if edit.clear_escalate_to_group:
        pipeline.escalate_group_id = None
    elif edit.escalate_to_group_id is not None:
        if not await Group.exists(id=edit.escalate_to_group_id):
            raise BadUserInput("escalateToGroupId: the group does not exist", field="escalateToGroupId")
        pipeline.escalate_group_id = edit.escalate_to_group_id
    if (
        pipeline.remind_after_hours is not None
        and pipeline.escalate_after_hours is not None
        and pipeline.escalate_after_hours <= pipeline.remind_after_hours
    ):
        raise BadUserInput(
            f"escalateAfterHours ({pipeline.escalate_after_hours}) must be more than remindAfterHours "
            f"({pipeline.remind_after_hours})",
            field="escalateAfterHours",
        )


def _setting(field: str, value: int | None, clear: bool) -> int | None:
    """The new value, 0 to clear it, None to keep it."""
    if value is not None and clear:
        raise BadUserInput(
            f"{field}: give a value or clear{field[0].upper()}{field[1:]}, not both", field=field
        )
    if clear:
        return 0
    if value is not None:
        in_range(field, value, 1, MAX_TTL_HOURS)
    return value


def describe(pipeline: Pipeline) -> dict:
    """The settings, for the audit log's before and after."""
    return {
        "remindAfterHours": pipeline.remind_after_hours,
        "escalateAfterHours": pipeline.escalate_after_hours,
        "escalateToGroup": pipeline.escalate_group_id,
    }


# --- the job -------------------------------------------------------------------------------


def _still_pending(moment: datetime) -> Q:
    """Stored PENDING and not past its expiry (R15: an expired one is EXPIRED already)."""
    return Q(state=ApprovalState.PENDING) & (Q(expires_at__isnull=True) | Q(expires_at__gt=moment))


async def send_due(authorizer: Authorizer) -> int:
    """One round: every reminder and escalation due now, each in a transaction of its own.
    Returns how many emails it wrote."""
    moment = now()
    pipelines = await Pipeline.filter(
        Q(remind_after_hours__isnull=False) | Q(escalate_after_hours__isnull=False)
    ).values("id", "remind_after_hours", "escalate_after_hours", "escalate_group_id")
    written = 0
    for settings in pipelines:
        if hours := settings["remind_after_hours"]:
            cutoff = moment - timedelta(hours=hours)
            due = await ApprovalRequest.filter(
                _still_pending(moment),
                _not_reminded_since(cutoff),
                pipeline_id=settings["id"],
                requested_at__lte=cutoff,
            ).values_list("id", flat=True)
            for request_id in due:
                written += await _remind(request_id, cutoff, hours)
        if hours := settings["escalate_after_hours"]:
            due = await ApprovalRequest.filter(
                _still_pending(moment),
                pipeline_id=settings["id"],
                requested_at__lte=moment - timedelta(hours=hours),
                escalated_at__isnull=True,
            ).values_list("id", flat=True)
            if due:
                await authorizer.refresh()  # who the super-admins are now (R5)
            for request_id in due:
                written += await _escalate(request_id, hours, settings["escalate_group_id"], authorizer)
    return written


def _not_reminded_since(cutoff: datetime) -> Q:
    return Q(last_reminded_at__isnull=True) | Q(last_reminded_at__lte=cutoff)


async def _claimed(request_id: int, condition: Q, mark: str) -> ApprovalRequest | None:
    """Set the request's `mark` to now if it still meets `condition` (a conditional UPDATE:
    one claimer wins), and read it back; None when another process claimed it first or the
    request moved on meanwhile."""
    moment = now()
    changed = await ApprovalRequest.filter(condition, _still_pending(moment), id=request_id).update(
        **{mark: moment}
    )
    if not changed:
        return None
    return await ApprovalRequest.get(id=request_id).prefetch_related(
        "pipeline__application", "pipeline__environment"
    )


async def _remind(request_id: int, cutoff: datetime, hours: int) -> int:
    """The named approvers who have not approved yet, once for this period."""
    async with transaction():
        request = await _claimed(request_id, _not_reminded_since(cutoff), "last_reminded_at")
        if request is None:
            return 0
        named = await NamedApprover.filter(request_id=request.id).values_list("user_id", flat=True)
        approved = set(await Approval.filter(request_id=request.id).values_list("user_id", flat=True))
        waiting = await User.filter(id__in=[u for u in named if u not in approved]).order_by("id")
        told = await notifications.reminder(request, waiting, hours)
        if told:
            scope = pipeline_scope(request.pipeline)
            await audit.record(
                "request_reminded",
                request,
                actor_id=None,
                after={"reminded": told, "pendingHours": hours},
                scope=scope,
            )
        return len(told)


async def _escalate(request_id: int, hours: int, group_id: int | None, authorizer: Authorizer) -> int:
    """The escalation group's members, or the super-admins, once; never the requester."""
    async with transaction():
        request = await _claimed(request_id, Q(escalated_at__isnull=True), "escalated_at")
        if request is None:
            return 0
        if group_id is not None and await Group.exists(id=group_id):
            user_ids = set(await GroupMember.filter(group_id=group_id).values_list("user_id", flat=True))
        else:
            group_id = None
            user_ids = set(authorizer.users_with(Action.ADMINISTER, EVERYTHING))
        user_ids.discard(request.requested_by_id)
        users = await User.filter(id__in=user_ids).order_by("id")
        approvals = await Approval.filter(request_id=request.id).values_list("user_id", "group_ids")
        lines = policy.requirements(request.required_approvals, policy.Snapshot.of(request), list(approvals))
        told = await notifications.escalation(request, users, hours, ", ".join(map(str, lines)))
        scope = pipeline_scope(request.pipeline)
        await audit.record(
            "request_escalated",
            request,
            actor_id=None,
            after={"escalatedTo": told, "group": group_id, "pendingHours": hours},
            scope=scope,
        )
        return len(told)
