"""A database integrity check after fuzzing, faults and races: what RULES.md makes
impossible must not be in the database, whatever happened to the server."""

from __future__ import annotations

from collections import Counter

from greenlight.models import (
    Approval,
    ApprovalRequest,
    ApprovalState,
    Deployment,
    DeploymentStatus,
    Image,
    Rejection,
)

LIVE = {ApprovalState.PENDING.value, ApprovalState.APPROVED.value}


async def problems() -> list[str]:
    """Every inconsistency found (empty when the database is sound)."""
    found: list[str] = []
    approvals = Counter(await Approval.all().values_list("request_id", flat=True))
    approvers: dict[int, set[int]] = {}
    for request_id, user_id in await Approval.all().values_list("request_id", "user_id"):
        approvers.setdefault(request_id, set()).add(user_id)
    rejected = set(await Rejection.all().values_list("request_id", flat=True))
    builders = dict(await Image.all().values_list("id", "built_by_id"))
    consumed_by = Counter(
        await Deployment.filter(approval_request_id__isnull=False).values_list(
            "approval_request_id", flat=True
        )
    )
    live_pairs: Counter = Counter()
    for r in await ApprovalRequest.all():
        state = str(r.state)
        count = approvals.get(r.id, 0)
        where = f"request {r.id} ({state})"
        if state == ApprovalState.APPROVED.value and count < r.required_approvals:
            found.append(f"{where}: APPROVED with {count} of {r.required_approvals} approvals")
        if state == ApprovalState.PENDING.value and count >= r.required_approvals:
            found.append(f"{where}: PENDING with {count} of {r.required_approvals} approvals")
        if state == ApprovalState.CONSUMED.value and consumed_by.get(r.id, 0) != 1:
            found.append(f"{where}: CONSUMED by {consumed_by.get(r.id, 0)} deployments")
        if state != ApprovalState.CONSUMED.value and consumed_by.get(r.id, 0):
            found.append(f"{where}: used by a deployment but not CONSUMED")
        if state == ApprovalState.REJECTED.value and r.id not in rejected:
            found.append(f"{where}: REJECTED without a rejection")
        if (r.live_key is not None) != (state in LIVE):
            found.append(f"{where}: live_key {r.live_key!r} disagrees with the state")
        if state in LIVE:
            live_pairs[(r.image_id, r.pipeline_id)] += 1
        forbidden = {r.requested_by_id, builders.get(r.image_id)} & approvers.get(r.id, set())
        if forbidden:
            found.append(f"{where}: approved by its requester or builder {sorted(forbidden)}")
    for pair, n in live_pairs.items():
        if n > 1:
            found.append(f"image/pipeline {pair}: {n} live requests")
    progressing = Counter(
        await Deployment.filter(status=DeploymentStatus.PROGRESSING).values_list("pipeline_id", flat=True)
    )
    for pipeline_id, n in progressing.items():
        if n > 1:
            found.append(f"pipeline {pipeline_id}: {n} deployments PROGRESSING at once")
    return found
