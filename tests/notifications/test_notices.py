"""Everyone concerned hears about every outcome (the issue's item "who hears what"): the
table of greenlight.notifications.recipients per outcome, what really reaches the SMTP
server after approving, rejecting, cancelling and expiring, the actor never told of their
own action, and a user turning notices off for themself."""

from __future__ import annotations

from datetime import timedelta

import pytest

from greenlight.clock import now
from greenlight.models import ApprovalRequest, AuditEvent, EmailOutbox
from greenlight.notifications.recipients import who_hears
from greenlight.workflow.approvals import sweep_expired
from tests.notifications.mailbox import SETTINGS, email_settings, mail, received, start_smtp, written
from tests.notifications.test_email import click, pk, request_approval, token_of

REJECT = "mutation($id: ID!, $r: String!) { rejectRequest(id: $id, reason: $r) { id state } }"
CANCEL = "mutation($id: ID!) { cancelApprovalRequest(id: $id) { id state } }"
EXPIRE = "mutation($id: ID!) { expireApproval(id: $id) { id state } }"
USER = "query($id: ID!) { node(id: $id) { ... on User { email emailNotices } } }"


@pytest.fixture
def smtp():
    server = start_smtp()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def settings(database_url, smtp):
    return email_settings(database_url, smtp)


# --- the one function deciding it, per outcome --------------------------------------------

REQUESTER, NAMED, BOTH, APPROVER = 1, 2, 3, 4  # BOTH: named, and approved


@pytest.mark.parametrize(
    ("outcome", "actor", "told"),
    [
        ("requested", REQUESTER, [NAMED, BOTH]),
        ("approved", APPROVER, [REQUESTER, NAMED, BOTH]),  # the approver who completed it: not told
        ("rejected", 9, [REQUESTER, NAMED, BOTH, APPROVER]),
        ("cancelled", REQUESTER, [NAMED, BOTH, APPROVER]),  # the requester cancelling: not told
        ("cancelled", 9, [REQUESTER, NAMED, BOTH, APPROVER]),  # a super-admin cancelling
        ("cancelled", None, [REQUESTER, NAMED, BOTH, APPROVER]),  # the system (stale, R18)
        ("expired", None, [REQUESTER, NAMED, BOTH]),  # the clock
        ("expired", REQUESTER, [NAMED, BOTH]),  # expireApproval by the requester
    ],
)
def test_who_hears_each_outcome_once_never_the_actor(outcome, actor, told):
    """Who hears what: the table, each person once, the actor never."""
    assert (
        who_hears(
            outcome,
            requester_id=REQUESTER,
            named_ids=[BOTH, NAMED],
            approver_ids=[BOTH, APPROVER],
            actor_id=actor,
        )
        == told
    )


# --- what reaches people, through the API and the SMTP server -----------------------------


async def named_request(world, approvers=("approver1", "prod_approver")) -> str:
    """A shop/prod request (built by dev, requested by dev2, 2 approvals needed) naming
    `approvers`; the approval requests' emails are written."""
    image = await world.register_image("dev")
    request = await request_approval(world, image, list(approvers))
    return request["id"]


async def test_approved_tells_requester_and_named_approvers_not_the_completing_approver(
    world, settings, smtp
):
    """Who hears what, approved: the requester and the named approvers; approver2, whose
    approval completed it, is not told of their own action."""
    request = await named_request(world)
    await world.approve(request, "approver1")
    assert await written("request_approved") == []  # a partial approval tells nobody (R12)
    await world.approve(request, "approver2")
    assert await written("request_approved") == [mail("approver1"), mail("dev2"), mail("prod_approver")]
    got = await received(settings, smtp)
    assert got[mail("dev2")][-1].startswith("[Greenlight] Your request was approved")
    assert got[mail("prod_approver")][-1].startswith("[Greenlight] Request was approved")
    assert mail("approver2") not in got
    notice = smtp.to(mail("prod_approver"))[-1]
    assert "dev2@example.com" in notice.text and "/one-click/" not in notice.text


async def test_rejected_tells_requester_named_approvers_and_those_who_approved(world, settings, smtp):
    """Who hears what, rejected: requester, named approvers, and approver2, who had
    approved; approver3, who rejected, is not told. The reason goes with it, escaped."""
    request = await named_request(world)
    await world.approve(request, "approver2")
    await world["approver3"].ok(REJECT, {"id": request, "r": "CVE <b>found</b>"})
    assert await written("request_rejected") == [
        mail("approver1"),
        mail("approver2"),
        mail("dev2"),
        mail("prod_approver"),
    ]
    got = await received(settings, smtp)
    assert mail("approver3") not in got
    for name in ("approver1", "approver2", "dev2", "prod_approver"):
        notice = smtp.to(mail(name))[-1]
        assert "rejected" in notice.message["Subject"].lower()
        assert "CVE <b>found</b>" in notice.text and "CVE &lt;b&gt;found&lt;/b&gt;" in notice.html


async def test_cancelled_by_the_requester_tells_named_approvers_and_approvers_not_the_requester(
    world, settings, smtp
):
    """Who hears what, cancelled (today cancelling emailed nobody): the named approver and
    approver2, who had approved; dev2 cancelled it and is not told."""
    request = await named_request(world, ["approver1"])
    await world.approve(request, "approver2")
    await world["dev2"].ok(CANCEL, {"id": request})
    assert await written("request_cancelled") == [mail("approver1"), mail("approver2")]
    got = await received(settings, smtp)
    assert "cancelled" in got[mail("approver1")][-1]
    assert all("cancelled" not in s for s in got.get(mail("dev2"), []))


async def test_cancelled_by_a_super_admin_tells_the_requester_too(world, settings, smtp):
    """Who hears what, cancelled by someone else: the requester hears of it as well."""
    request = await named_request(world, ["approver1"])
    await world["admin"].ok(CANCEL, {"id": request})
    assert await written("request_cancelled") == [mail("approver1"), mail("dev2")]
    got = await received(settings, smtp)
    assert got[mail("dev2")][-1].startswith("[Greenlight] Your request was cancelled")


async def test_expired_tells_requester_and_named_approvers(world, settings, smtp):
    """Who hears what, expired by the clock (R15): the requester and the named approvers,
    not approver2 who had approved."""
    request = await named_request(world, ["approver1"])
    await world.approve(request, "approver2")
    await ApprovalRequest.filter(id=pk(request)).update(expires_at=now() - timedelta(minutes=1))
    assert await sweep_expired() == 1
    assert await written("request_expired") == [mail("approver1"), mail("dev2")]
    got = await received(settings, smtp)
    assert "expired" in got[mail("approver1")][-1]


async def test_expired_by_the_requester_tells_the_named_approvers_only(world, settings, smtp):
    """Who hears what: expireApproval by the requester (R15) tells the named approvers, not
    the requester who did it."""
    request = await named_request(world, ["approver1"])
    await world.approve(request, "approver1")
    await world.approve(request, "approver2")
    await world["dev2"].ok(EXPIRE, {"id": request})
    assert await written("request_expired") == [mail("approver1")]


async def test_a_refused_action_tells_nobody(world, settings, smtp, unchanged):
    """A notice exists only if its outcome committed: a refused cancel writes no email."""
    request = await named_request(world, ["approver1"])
    async with unchanged():
        assert await world["approver2"].code(CANCEL, {"id": request}) == "FORBIDDEN"
    assert await EmailOutbox.filter(kind="request_cancelled").count() == 0


# --- turning notices off -------------------------------------------------------------------


async def test_a_user_turns_notices_off_for_themself_and_hears_no_outcome(world, settings, smtp):
    """Opt-out: approver1 turns notices off; the outcome of a request naming them reaches
    the others but not them. The approval request itself still reaches them (R8), and its
    one-click link still works."""
    data = await world["approver1"].ok(SETTINGS, {"on": False})
    assert data["updateMyNotificationSettings"] == {"id": world["approver1"].user_id, "emailNotices": False}
    assert (await world["approver1"].ok("{ me { emailNotices } }"))["me"]["emailNotices"] is False
    event = await AuditEvent.get(action="update_notification_settings")
    assert (event.before, event.after) == ({"emailNotices": True}, {"emailNotices": False})

    request = await named_request(world)
    assert await written("approval_requested") == [mail("approver1"), mail("prod_approver")]
    await received(settings, smtp)
    assert (await click(world, token_of(smtp.to(mail("approver1"))[-1]))).status_code == 200
    await world.approve(request, "approver2")  # completes it
    assert await written("request_approved") == [mail("dev2"), mail("prod_approver")]

    await world["approver1"].ok(SETTINGS, {"on": True})
    other = await named_request(world, ["approver1"])
    await world["dev2"].ok(CANCEL, {"id": other})
    assert await written("request_cancelled", pk(other)) == [mail("approver1")]


async def test_notice_settings_visible_to_self_and_super_admins_only(world):
    """Opt-out: a user's emailNotices is theirs and the super-admins' to see; others read null."""
    await world["approver1"].ok(SETTINGS, {"on": False})
    target = {"id": world["approver1"].user_id}
    assert (await world["admin"].ok(USER, target))["node"]["emailNotices"] is False
    assert (await world["approver1"].ok(USER, target))["node"]["emailNotices"] is False
    request = await named_request(world, [])
    await world.approve(request, "approver1")
    approvals = "query($id: ID!) { approvalRequest(id: $id) { approvals { user { email emailNotices } } } }"
    seen = await world["approver2"].ok(approvals, {"id": request})  # approver1, as another user sees them
    assert seen["approvalRequest"]["approvals"] == [
        {"user": {"email": mail("approver1"), "emailNotices": None}}
    ]
    assert (await world["approver2"].ok("{ me { emailNotices } }"))["me"]["emailNotices"] is True
