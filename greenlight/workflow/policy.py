"""Approval policies beyond a count: ANY, SPECIFIC_USERS, GROUP_QUORUMS, and
the users and groups who may deploy without approval.

A pipeline's policy is stored on the pipeline and in three small tables; a request keeps
a snapshot of it taken when it was made (R7), and whether the request is approved is
computed from that snapshot and its approvals, here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from greenlight.errors import BadUserInput
from greenlight.models import (
    Approval,
    ApprovalException,
    ApprovalPolicyKind,
    ApprovalRequest,
    Group,
    GroupMember,
    GroupQuorum,
    Image,
    Pipeline,
    PolicyApprover,
    User,
)
from greenlight.policies import Action, Actor
from greenlight.workflow.guards import pipeline_scope
from greenlight.workflow.validation import MAX_REQUIRED_APPROVALS, in_range

MAX_LISTED_APPROVERS = 20
MAX_QUORUMS = 10


@dataclass(frozen=True)
class Quorum:
    group_id: int
    min_approvals: int


@dataclass
class PolicyChange:
    """What updateApprovalPolicy may change beyond the count; None keeps the current value."""

    kind: ApprovalPolicyKind | None = None
    approver_ids: list[int] | None = None
    group_quorums: list[Quorum] | None = None
    count_once_per_person: bool | None = None
    exception_user_ids: list[int] | None = None
    exception_group_ids: list[int] | None = None
    cancel_stale_requests: bool | None = None
    # greenlight.workflow.checks: required checks, and the environment promoted from
    required_checks: list[str] | None = None
    requires_healthy_on_id: int | None = None
    clear_requires_healthy_on: bool = False


@dataclass(frozen=True)
class Requirement:
    """One line of a request's progress: "sre: 1 of 2"."""

    description: str
    required: int
    approved: int
    user_id: int | None = None
    group_id: int | None = None

    @property
    def met(self) -> bool:
        return self.approved >= self.required

    def __str__(self) -> str:
        return f"{self.description}: {self.approved} of {self.required}"


@dataclass
class Snapshot:
    """The policy a request was made under (R7), as stored in ApprovalRequest.policy."""

    kind: ApprovalPolicyKind = ApprovalPolicyKind.ANY
    users: list[dict[str, Any]] = field(default_factory=list)  # {"id", "email"}
    groups: list[dict[str, Any]] = field(default_factory=list)  # {"id", "name", "min"}
    count_once_per_person: bool = True

    @classmethod
    def of(cls, request: ApprovalRequest) -> Snapshot:
        stored = request.policy or {}
        return cls(
            kind=ApprovalPolicyKind(stored.get("kind", ApprovalPolicyKind.ANY)),
            users=list(stored.get("users", [])),
            groups=list(stored.get("groups", [])),
            count_once_per_person=bool(stored.get("countOncePerPerson", True)),
        )

    def stored(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "users": self.users,
            "groups": self.groups,
            "countOncePerPerson": self.count_once_per_person,
        }

    @property
    def group_ids(self) -> list[int]:
        return [g["id"] for g in self.groups]


async def snapshot(pipeline: Pipeline) -> Snapshot:
    """The pipeline's policy now, to be kept on a new request."""
    kind = ApprovalPolicyKind(pipeline.policy_kind)
    users: list[dict[str, Any]] = []
    groups: list[dict[str, Any]] = []
    if kind == ApprovalPolicyKind.SPECIFIC_USERS:
        rows = (
            await PolicyApprover.filter(pipeline_id=pipeline.id)
            .order_by("id")
            .values_list("user_id", "user__email")
        )
        users = [{"id": user_id, "email": email} for user_id, email in rows]
    elif kind == ApprovalPolicyKind.GROUP_QUORUMS:
        rows = (
            await GroupQuorum.filter(pipeline_id=pipeline.id)
            .order_by("id")
            .values_list("group_id", "group__name", "min_approvals")
        )
        groups = [{"id": group_id, "name": name, "min": k} for group_id, name, k in rows]
    return Snapshot(kind, users, groups, pipeline.count_once_per_person)


async def eligible_approvers(actor: Actor, pipeline: Pipeline, image: Image, requester_id: int) -> list[User]:
    """R9: image-approvers on the scope plus super-admins, minus builder and requester."""
    ids = actor.authorizer.users_with(Action.APPROVE, pipeline_scope(pipeline))
    ids -= {image.built_by_id, requester_id}
    if not ids:
        return []
    return await User.filter(id__in=ids, is_active=True).order_by("name", "id")


# --- progress ------------------------------------------------------------------------------


def _assign(approvers: dict[int, set[int]], quorums: dict[int, int]) -> dict[int, int]:
    """How many approvals count toward each group when one person counts for one group:
    a maximum assignment of approvers to group places (augmenting paths; a handful of
    people and groups)."""
    places = [group_id for group_id, k in quorums.items() for _ in range(k)]
    holder: dict[int, int] = {}  # place index -> approver

    def place(person: int, seen: set[int]) -> bool:
        for index, group_id in enumerate(places):
            if group_id in approvers[person] and index not in seen:
                seen.add(index)
                if index not in holder or place(holder[index], seen):
                    holder[index] = person
                    return True
        return False

    for person in approvers:
        place(person, set())
    counted = dict.fromkeys(quorums, 0)
    for index in holder:
        counted[places[index]] += 1
    return counted


def _group_counts(snap: Snapshot, approvers: dict[int, set[int]]) -> dict[int, int]:
    """How many of `approvers` (person -> their quorum groups) count toward each group of
    the snapshot: one group each with countOncePerPerson, else every group they are in."""
    quorums = {g["id"]: g["min"] for g in snap.groups}
    if snap.count_once_per_person:
        return _assign(approvers, quorums)
    return {group_id: sum(1 for groups in approvers.values() if group_id in groups) for group_id in quorums}


def requirements(
    required_approvals: int, snap: Snapshot, approvals: list[tuple[int, list[int] | None]]
) -> list[Requirement]:
    """The progress lines of a request: the total first, then each listed user or group.

    `approvals` holds (approver id, the snapshot's groups they were in when approving).
    """
    approvers = {user_id: set(group_ids or []) for user_id, group_ids in approvals}
    lines = [Requirement("approvals", required_approvals, min(len(approvers), required_approvals))]
    if snap.kind == ApprovalPolicyKind.SPECIFIC_USERS:
        for user in snap.users:
            lines.append(Requirement(user["email"], 1, int(user["id"] in approvers), user_id=user["id"]))
    elif snap.kind == ApprovalPolicyKind.GROUP_QUORUMS:
        counted = _group_counts(snap, approvers)
        for group in snap.groups:
            approved = min(counted[group["id"]], group["min"])
            lines.append(Requirement(group["name"], group["min"], approved, group_id=group["id"]))
    return lines


async def approvals_of(request: ApprovalRequest) -> list[tuple[int, list[int] | None]]:
    """(approver id, their quorum groups) of each approval of the request."""
    return list(await Approval.filter(request_id=request.id).values_list("user_id", "group_ids"))


async def progress(request: ApprovalRequest) -> list[Requirement]:
    """R12 generalised: the request is APPROVED once every line is met."""
    return requirements(request.required_approvals, Snapshot.of(request), await approvals_of(request))


async def groups_of_approver(request: ApprovalRequest, user_id: int) -> list[int] | None:
    """The snapshot's quorum groups the approver belongs to now, kept on the approval."""
    snap = Snapshot.of(request)
    if snap.kind != ApprovalPolicyKind.GROUP_QUORUMS:
        return None
    return sorted(
        await GroupMember.filter(user_id=user_id, group_id__in=snap.group_ids).values_list(
            "group_id", flat=True
        )
    )


async def unmeetable(snap: Snapshot, eligible_ids: set[int]) -> BadUserInput | None:
    """requestApproval: a snapshot that its eligible approvers (R9) could never meet is
    BAD_USER_INPUT, so nobody waits for an approval that cannot come. The refusal, or None."""
    if snap.kind == ApprovalPolicyKind.SPECIFIC_USERS:
        missing = [u for u in snap.users if u["id"] not in eligible_ids]
        if missing:
            names = ", ".join(u["email"] for u in missing)
            return BadUserInput(
                f"this pipeline needs the approval of {names}, who may not approve this request "
                "(they built the image, made the request, or lost the image-approver role)",
                ineligibleUserIds=[u["id"] for u in missing],
            )
    elif snap.kind == ApprovalPolicyKind.GROUP_QUORUMS:
        members = await GroupMember.filter(group_id__in=snap.group_ids, user_id__in=eligible_ids).values_list(
            "group_id", "user_id"
        )
        approvers: dict[int, set[int]] = {}
        for group_id, user_id in members:
            approvers.setdefault(user_id, set()).add(group_id)
        possible = _group_counts(snap, approvers)
        short = [g for g in snap.groups if possible[g["id"]] < g["min"]]
        if short:
            names = ", ".join(f"{g['name']} ({possible[g['id']]} of {g['min']})" for g in short)
            return BadUserInput(
                f"too few members who may approve this request in: {names}",
                groups=[g["name"] for g in short],
            )
    return None


# --- exceptions ----------------------------------------------------------------------------


async def is_exception(pipeline: Pipeline, user_id: int) -> bool:
    """The user is listed on the pipeline, or is a member of a listed group."""
    rows = await ApprovalException.filter(pipeline_id=pipeline.id).values_list("user_id", "group_id")
    if any(user == user_id for user, _ in rows):
        return True
    group_ids = [group for _, group in rows if group is not None]
    return bool(group_ids) and await GroupMember.exists(group_id__in=group_ids, user_id=user_id)


# --- changing a pipeline's policy ----------------------------------------------------------


def _ids(field_name: str, values: list[int], limit: int) -> list[int]:
    unique = list(dict.fromkeys(values))
    if len(unique) != len(values):
        raise BadUserInput(f"{field_name}: lists someone twice", field=field_name)
    if len(unique) > limit:
        raise BadUserInput(f"{field_name}: at most {limit}", field=field_name)
    return unique


async def _active_users(field_name: str, user_ids: list[int]) -> list[User]:
    users = {u.id: u for u in await User.filter(id__in=user_ids, is_active=True)}
    unknown = [i for i in user_ids if i not in users]
    if unknown:
        raise BadUserInput(
            f"{field_name}: {len(unknown)} of the users do not exist or are deactivated",
            field=field_name,
            ineligibleUserIds=unknown,
        )
    return [users[i] for i in user_ids]


async def _groups(field_name: str, group_ids: list[int]) -> list[Group]:
    groups = {g.id: g for g in await Group.filter(id__in=group_ids)}
    unknown = [i for i in group_ids if i not in groups]
    if unknown:
        raise BadUserInput(f"{field_name}: {len(unknown)} of the groups do not exist", field=field_name)
    return [groups[i] for i in group_ids]


async def apply_change(actor: Actor, pipeline: Pipeline, change: PolicyChange) -> None:
    """Validate `change` against the locked pipeline and write it (the caller's transaction).

    Raises BadUserInput before writing anything when the result would be invalid.
    """
    kind = ApprovalPolicyKind(change.kind or pipeline.policy_kind)
    kind_changed = kind != pipeline.policy_kind
    approver_ids = change.approver_ids
    quorums = change.group_quorums
    if kind == ApprovalPolicyKind.ANY and (approver_ids or quorums):
        raise BadUserInput("kind ANY takes neither approverIds nor groupQuorums", field="kind")
    if kind != ApprovalPolicyKind.ANY and pipeline.required_approvals == 0:
        raise BadUserInput(
            f"kind {kind.value} needs requiredApprovals of at least 1; to need no approval, "
            "set requiredApprovals 0 with kind ANY",
            field="requiredApprovals",
        )

    users: list[User] | None = None
    if kind == ApprovalPolicyKind.SPECIFIC_USERS:
        if quorums:
            raise BadUserInput(
                "kind SPECIFIC_USERS takes approverIds, not groupQuorums", field="groupQuorums"
            )
        if approver_ids is None and kind_changed:
            raise BadUserInput("kind SPECIFIC_USERS needs approverIds", field="approverIds")
        if approver_ids is not None:
            approver_ids = _ids("approverIds", approver_ids, MAX_LISTED_APPROVERS)
            if not approver_ids:
                raise BadUserInput("approverIds: name at least one user", field="approverIds")
            users = await _active_users("approverIds", approver_ids)
            scope = pipeline_scope(pipeline)
            ineligible = [u.id for u in users if not actor.authorizer.may(u.id, Action.APPROVE, scope)]
            if ineligible:
                raise BadUserInput(
                    f"approverIds: {len(ineligible)} of the users may not approve on {scope.domain} "
                    "(they need image-approver there, or to be super-admins)",
                    field="approverIds",
                    ineligibleUserIds=ineligible,
                )

    groups: list[tuple[Group, int]] | None = None
    if kind == ApprovalPolicyKind.GROUP_QUORUMS:
        if approver_ids:
            raise BadUserInput("kind GROUP_QUORUMS takes groupQuorums, not approverIds", field="approverIds")
        if quorums is None and kind_changed:
            raise BadUserInput("kind GROUP_QUORUMS needs groupQuorums", field="groupQuorums")
        if quorums is not None:
            group_ids = _ids("groupQuorums", [q.group_id for q in quorums], MAX_QUORUMS)
            if not group_ids:
                raise BadUserInput("groupQuorums: name at least one group", field="groupQuorums")
            for q in quorums:
                in_range("groupQuorums.minApprovals", q.min_approvals, 1, MAX_REQUIRED_APPROVALS)
            found = await _groups("groupQuorums", group_ids)
            groups = [(g, q.min_approvals) for g, q in zip(found, quorums, strict=True)]

    exception_users = None
    if change.exception_user_ids is not None:
        ids = _ids("exceptionUserIds", change.exception_user_ids, 100)
        exception_users = await _active_users("exceptionUserIds", ids)
    exception_groups = None
    if change.exception_group_ids is not None:
        ids = _ids("exceptionGroupIds", change.exception_group_ids, 100)
        exception_groups = await _groups("exceptionGroupIds", ids)

    # Everything is valid: write.
    pipeline.policy_kind = kind
    if change.count_once_per_person is not None:
        pipeline.count_once_per_person = change.count_once_per_person
    if change.cancel_stale_requests is not None:
        pipeline.cancel_stale_requests = change.cancel_stale_requests
    await pipeline.save(update_fields=["policy_kind", "count_once_per_person", "cancel_stale_requests"])
    if users is not None or kind != ApprovalPolicyKind.SPECIFIC_USERS:
        await PolicyApprover.filter(pipeline_id=pipeline.id).delete()
        await PolicyApprover.bulk_create(
            [PolicyApprover(pipeline_id=pipeline.id, user_id=u.id) for u in users or []]
        )
    if groups is not None or kind != ApprovalPolicyKind.GROUP_QUORUMS:
        await GroupQuorum.filter(pipeline_id=pipeline.id).delete()
        await GroupQuorum.bulk_create(
            [GroupQuorum(pipeline_id=pipeline.id, group_id=g.id, min_approvals=k) for g, k in groups or []]
        )
    if exception_users is not None:
        await ApprovalException.filter(pipeline_id=pipeline.id, user_id__isnull=False).delete()
        await ApprovalException.bulk_create(
            [ApprovalException(pipeline_id=pipeline.id, user_id=u.id) for u in exception_users]
        )
    if exception_groups is not None:
        await ApprovalException.filter(pipeline_id=pipeline.id, group_id__isnull=False).delete()
        await ApprovalException.bulk_create(
            [ApprovalException(pipeline_id=pipeline.id, group_id=g.id) for g in exception_groups]
        )


async def describe(pipeline: Pipeline) -> dict[str, Any]:
    """The whole policy, for the audit log's before and after."""
    snap = await snapshot(pipeline)
    exceptions = await ApprovalException.filter(pipeline_id=pipeline.id).values_list("user_id", "group_id")
    return {
        "requiredApprovals": pipeline.required_approvals,
        "ttlHours": pipeline.ttl_hours,
        "approversCanDeploy": pipeline.approvers_can_deploy,
        "kind": snap.kind.value,
        "approvers": [u["id"] for u in snap.users],
        "groupQuorums": [{"group": g["id"], "minApprovals": g["min"]} for g in snap.groups],
        "countOncePerPerson": pipeline.count_once_per_person,
        "exceptionUsers": sorted(u for u, _ in exceptions if u is not None),
        "exceptionGroups": sorted(g for _, g in exceptions if g is not None),
        "cancelStaleRequests": pipeline.cancel_stale_requests,
        "requiredChecks": list(pipeline.required_checks or ()),
        "requiresHealthyOn": pipeline.requires_healthy_on_id,
    }
