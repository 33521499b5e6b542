"""Withdrawing an approval: an approver takes back their own approval while the request is
still PENDING; it no longer counts (R12), the audit log says so (R25), and under races the
outcome is one some serial order gives (R17)."""

from __future__ import annotations

from datetime import timedelta

from greenlight import models
from greenlight.clock import now
from tests.workflow.test_concurrency import later, outcome, race

WITHDRAW = """mutation($id: ID!) { withdrawApproval(requestId: $id) {
  id state progress approvals { user { email } }
} }"""
VIEW = "query($id: ID!) { approvalRequest(id: $id) { state progress approvals { user { email } } } }"
AUDIT = """query { auditEvents(filter: {action: "withdraw_approval"}, first: 10) {
  edges { node { objectId actor { email } before after } }
} }"""
APPROVE = "mutation($id: ID!) { approveRequest(id: $id) { id state } }"
EXPIRE = "mutation($id: ID!) { expireApproval(id: $id) { id } }"


def pk(global_id: str) -> int:
    return int(global_id.rpartition(":")[2])


async def pending_request(world, *approvers: str) -> str:
    image = await world.register_image("dev")
    request = await world.request_approval(image, who="dev2")
    for who in approvers:
        await world.approve(request, who)
    return request


async def test_withdraw_own_pending_approval_no_longer_counts_and_is_audited(world):
    """R12, R25: approver1's approval (1 of 2) withdrawn: 0 of 2, no approvals, an audit
    event with the progress before and after; approving again counts, and with approver2
    the request is APPROVED."""
    request = await pending_request(world, "approver1")
    found = (await world["approver1"].ok(WITHDRAW, {"id": request}))["withdrawApproval"]
    assert found == {"id": request, "state": "PENDING", "progress": "approvals: 0 of 2", "approvals": []}
    assert (await world["viewer"].ok(VIEW, {"id": request}))["approvalRequest"]["approvals"] == []
    (event,) = [e["node"] for e in (await world["admin"].ok(AUDIT))["auditEvents"]["edges"]]
    assert event["objectId"] == request
    assert event["actor"] == {"email": world["approver1"].email}
    assert event["before"] == {"state": "PENDING", "progress": "approvals: 1 of 2"}
    assert event["after"] == {"state": "PENDING", "progress": "approvals: 0 of 2"}

    await world.approve(request, "approver1")
    assert (await world.approve(request, "approver2"))["state"] == "APPROVED"


async def test_withdraw_refusals_change_nothing(world, unchanged):
    """R1, R16: withdrawing what one never approved, on an APPROVED or no longer live
    request, is INVALID_STATE; on a request one cannot see, NOT_FOUND; nothing changes."""
    pending = await pending_request(world, "approver1")
    approved = await pending_request(world, "approver1", "approver2")
    expired_by_clock = await pending_request(world, "approver1")
    await models.ApprovalRequest.filter(id=pk(expired_by_clock)).update(
        expires_at=now() - timedelta(seconds=1)
    )
    expired = await pending_request(world, "approver1", "approver2")
    await world["dev2"].ok(EXPIRE, {"id": expired})
    cases = [
        ("approver2", pending, "INVALID_STATE"),
        ("admin", pending, "INVALID_STATE"),
        ("approver1", approved, "INVALID_STATE"),
        ("approver1", expired_by_clock, "INVALID_STATE"),
        ("approver1", expired, "INVALID_STATE"),
        ("billing_approver", pending, "NOT_FOUND"),
        ("nobody", pending, "NOT_FOUND"),
    ]
    for who, request, code in cases:
        async with unchanged():
            assert await world[who].code(WITHDRAW, {"id": request}) == code, (who, request)
    assert (await world["viewer"].ok(VIEW, {"id": approved}))["approvalRequest"]["state"] == "APPROVED"


async def test_r17_withdraw_racing_the_completing_approval(world):
    """R17: approver1 withdraws (1 of 2) while approver2 approves, in varied interleavings:
    either the withdrawal comes first (PENDING, approver2's approval alone) or the approval
    does (APPROVED with both, the withdrawal refused). Never APPROVED with one approval."""
    for ticks in range(6):
        request = await pending_request(world, "approver1")
        (withdrawn, _), (approved, _) = await race(
            later(outcome(world["approver1"], WITHDRAW, {"id": request}), ticks % 3),
            later(outcome(world["approver2"], APPROVE, {"id": request}), ticks // 3),
        )
        assert approved == "OK", ticks
        row = await models.ApprovalRequest.get(id=pk(request))
        voters = set(await models.Approval.filter(request_id=row.id).values_list("user__email", flat=True))
        if withdrawn == "OK":
            assert row.state == "PENDING" and voters == {world["approver2"].email}, ticks
        else:
            assert withdrawn == "INVALID_STATE", ticks
            assert row.state == "APPROVED", ticks
            assert voters == {world["approver1"].email, world["approver2"].email}, ticks


async def test_r17_withdrawing_twice_at_once_withdraws_once(world):
    """R17: the same approval withdrawn by two calls at once: one succeeds, the other is
    INVALID_STATE, and one audit event is written."""
    request = await pending_request(world, "approver1")
    results = await race(*(outcome(world["approver1"], WITHDRAW, {"id": request}) for _ in range(2)))
    assert sorted(code for code, _ in results) == ["INVALID_STATE", "OK"]
    assert await models.Approval.filter(request_id=pk(request)).count() == 0
    assert await models.AuditEvent.filter(action="withdraw_approval", object_id=pk(request)).count() == 1
