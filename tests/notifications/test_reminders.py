"""Reminders and escalation (the issue's item "reminders and escalation"): the pipeline's
remindAfterHours, escalateAfterHours and escalateToGroupId through updatePipeline, their
checks; the background job reminding the named approvers once per period, escalating
once to the super-admins or a named group, quiet when nothing is pending, and two job
runners at once sending each email once. Time moves with the `clock` fixture."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from greenlight import jobs
from greenlight.clock import now
from greenlight.models import AuditEvent, EmailOutbox, Pipeline
from greenlight.policies import Authorizer
from greenlight.workflow import reminders
from tests.notifications.mailbox import SETTINGS, email_settings, mail, received, start_smtp, written
from tests.notifications.test_email import click, pk, request_approval, token_of

UPDATE = """mutation($id: ID!, $i: PipelineUpdateInput!) {
  updatePipeline(id: $id, input: $i) {
    approvalPolicy { requiredApprovals ttlHours remindAfterHours escalateAfterHours escalateToGroup { id name } }
  }
}"""
CANCEL = "mutation($id: ID!) { cancelApprovalRequest(id: $id) { id state } }"


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


async def update(world, who: str = "admin", pipeline: str = "shop/prod", **fields) -> dict:
    data = await world[who].ok(UPDATE, {"id": world.ids[pipeline], "i": fields})
    return data["updatePipeline"]["approvalPolicy"]


async def refused(world, **fields) -> str:
    return await world["admin"].code(UPDATE, {"id": world.ids["shop/prod"], "i": fields})


async def group_of(world, name: str, *members: str) -> str:
    admin = world["admin"]
    group = (await admin.ok("mutation($n: String!) { createGroup(name: $n) { id } }", {"n": name}))[
        "createGroup"
    ]
    for member in members:
        await admin.ok(
            "mutation($g: ID!, $u: ID!) { addGroupMember(groupId: $g, userId: $u) { id } }",
            {"g": group["id"], "u": world[member].user_id},
        )
    return group["id"]


async def run_job() -> int:
    return await reminders.send_due(Authorizer())


def at(start, hours: float):
    return start + timedelta(hours=hours)


# --- the settings ----------------------------------------------------------------------------


async def test_settings_set_kept_when_omitted_and_cleared(world):
    """Reminder settings through updatePipeline, like the other approval settings: a field
    left out keeps its value, clear* removes it; the audit event shows before and after."""
    sre = await group_of(world, "sre")
    policy = await update(world, remindAfterHours=4, escalateAfterHours=24, escalateToGroupId=sre)
    assert policy["remindAfterHours"] == 4 and policy["escalateAfterHours"] == 24
    assert policy["escalateToGroup"] == {"id": sre, "name": "sre"}
    policy = await update(world, ttlHours=48)
    assert (policy["ttlHours"], policy["remindAfterHours"], policy["escalateAfterHours"]) == (48, 4, 24)
    assert policy["escalateToGroup"]["name"] == "sre"
    event = await AuditEvent.filter(action="update_pipeline").order_by("-id").first()
    assert event.after["remindAfterHours"] == 4 and event.after["escalateToGroup"] == pk(sre)
    policy = await update(world, clearRemindAfterHours=True, clearEscalateToGroup=True)
    assert (policy["remindAfterHours"], policy["escalateAfterHours"], policy["escalateToGroup"]) == (
        None,
        24,
        None,
    )
    policy = await update(world, clearEscalateAfterHours=True)
    assert policy["escalateAfterHours"] is None


@pytest.mark.parametrize(
    "fields",
    [
        {"remindAfterHours": 0},
        {"remindAfterHours": -3},
        {"escalateAfterHours": 0},
        {"remindAfterHours": 8761},
        {"remindAfterHours": 4, "escalateAfterHours": 4},  # escalation must come after a reminder
        {"remindAfterHours": 8, "escalateAfterHours": 4},
        {"remindAfterHours": 4, "clearRemindAfterHours": True},
        {"escalateToGroupId": "Group:999"},
    ],
)
async def test_bad_settings_are_bad_user_input_and_change_nothing(world, unchanged, fields):
    """Reminder settings are checked: positive hours (at most 8760), escalation later than
    the reminder when both are set, an existing group; otherwise BAD_USER_INPUT, nothing
    written."""
    async with unchanged():
        assert await refused(world, **fields) == "BAD_USER_INPUT"


async def test_escalation_must_follow_the_reminder_already_set(world, unchanged):
    """Reminder settings: escalateAfterHours is checked against the remindAfterHours kept."""
    await update(world, remindAfterHours=6)
    async with unchanged():
        error = await world["admin"].fails(
            UPDATE, {"id": world.ids["shop/prod"], "i": {"escalateAfterHours": 6}}
        )
    assert error["extensions"]["code"] == "BAD_USER_INPUT" and "remindAfterHours" in error["message"]


async def test_only_super_admins_change_them(world, unchanged):
    """R2: reminder settings are the super-admins' to change."""
    async with unchanged():
        assert (
            await world["dev"].code(UPDATE, {"id": world.ids["shop/prod"], "i": {"remindAfterHours": 2}})
            == "FORBIDDEN"
        )


# --- reminders ---------------------------------------------------------------------------


async def test_named_approvers_reminded_once_per_period(world, settings, smtp, clock):
    """Reminders: a request pending longer than remindAfterHours reminds the named
    approvers who have not approved yet, once per period, audited; the reminder's one-click
    link approves."""
    await update(world, remindAfterHours=2)
    start = now()
    clock.set(start)
    request = await request_approval(world, await world.register_image("dev"), ["approver1", "prod_approver"])
    await world.approve(request["id"], "approver1")

    clock.set(at(start, 1.9))
    assert await run_job() == 0
    clock.set(at(start, 2))
    assert await run_job() == 1
    assert await run_job() == 0  # once for this period
    assert await written("request_reminder") == [mail("prod_approver")]  # approver1 approved already
    clock.set(at(start, 3.5))
    assert await run_job() == 0
    clock.set(at(start, 4))
    assert await run_job() == 1
    assert await written("request_reminder") == [mail("prod_approver")] * 2
    events = await AuditEvent.filter(action="request_reminded").order_by("id")
    assert [(e.actor_id, e.after["reminded"]) for e in events] == [
        (None, [pk(world["prod_approver"].user_id)])
    ] * 2

    got = await received(settings, smtp)
    assert [s for s in got[mail("prod_approver")] if "Reminder" in s] != []
    reminder = [m for m in smtp.to(mail("prod_approver")) if "Reminder" in m.message["Subject"]][-1]
    assert "still pending" in reminder.text and f"/requests/{request['id']}" in reminder.text
    assert (await click(world, token_of(reminder))).status_code == 200
    state = await world["admin"].ok(
        "query($id: ID!) { approvalRequest(id: $id) { state } }", {"id": request["id"]}
    )
    assert state["approvalRequest"]["state"] == "APPROVED"
    clock.set(at(start, 10))
    assert await run_job() == 0  # no longer pending: no more reminders


async def test_no_reminder_after_the_request_closed_nor_to_who_turned_notices_off(world, settings, clock):
    """Reminders: a cancelled request reminds nobody; a named approver who turned notices
    off is not reminded (reminders respect the opt-out)."""
    await update(world, remindAfterHours=1)
    start = now()
    clock.set(start)
    await world["approver1"].ok(SETTINGS, {"on": False})
    kept = await request_approval(world, await world.register_image("dev"), ["approver1", "prod_approver"])
    gone = await request_approval(world, await world.register_image("dev"), ["prod_approver"])
    await world["dev2"].ok(CANCEL, {"id": gone["id"]})
    clock.set(at(start, 1))
    assert await run_job() == 1
    rows = await EmailOutbox.filter(kind="request_reminder").values_list("to_address", "request_id")
    assert rows == [(mail("prod_approver"), pk(kept["id"]))]


async def test_quiet_when_nothing_is_pending(world, settings, clock):
    """Reminders: with reminders and escalation set but nothing pending (no request, or only
    approved ones), the job writes no email and no audit event."""
    await update(world, remindAfterHours=1, escalateAfterHours=2)
    start = now()
    clock.set(start)
    assert await run_job() == 0
    _, approved = await world.approved_image()
    clock.set(at(start, 5))
    assert await run_job() == 0
    await jobs.run_once(settings)
    assert await EmailOutbox.filter(kind__in=["request_reminder", "request_escalated"]).count() == 0
    assert await AuditEvent.filter(action__in=["request_reminded", "request_escalated"]).count() == 0


async def test_no_reminder_without_the_setting(world, settings, clock):
    """Reminders: a pipeline without remindAfterHours reminds nobody, however long it waits."""
    start = now()
    clock.set(start)
    await request_approval(world, await world.register_image("dev"), ["approver1"])
    clock.set(at(start, 23))
    assert await run_job() == 0


# --- escalation --------------------------------------------------------------------------


async def test_escalated_once_to_the_super_admins(world, settings, smtp, clock):
    """Escalation: after escalateAfterHours the super-admins are told, once, with the
    request's progress; the requester (dev2) is not among them, and the named approvers keep
    getting their reminders."""
    await update(world, remindAfterHours=2, escalateAfterHours=5)
    start = now()
    clock.set(start)
    request = await request_approval(world, await world.register_image("dev"), ["approver1"])
    clock.set(at(start, 4))
    assert await run_job() == 1  # two reminder periods passed: one reminder
    assert await written("request_escalated") == []
    clock.set(at(start, 5))
    assert await run_job() == 2
    assert await written("request_escalated") == sorted([mail("admin"), mail("admin2")])
    clock.set(at(start, 6))
    assert await run_job() == 1  # the next reminder, no second escalation
    assert await written("request_escalated") == sorted([mail("admin"), mail("admin2")])
    event = await AuditEvent.get(action="request_escalated")
    assert event.actor_id is None and event.after["group"] is None and event.after["pendingHours"] == 5
    got = await received(settings, smtp)
    assert any("Escalated" in s for s in got[mail("admin")])
    escalation = [m for m in smtp.to(mail("admin2")) if "Escalated" in m.message["Subject"]][0]
    assert "approvals: 0 of 2" in escalation.text and f"/requests/{request['id']}" in escalation.text


async def test_escalated_to_the_named_group(world, settings, clock):
    """Escalation to escalateToGroupId: its active members hear of it, not the super-admins;
    a member who turned notices off does not."""
    sre = await group_of(world, "sre", "approver3", "viewer", "prod_approver")
    await world["prod_approver"].ok(SETTINGS, {"on": False})
    await update(world, escalateAfterHours=3, escalateToGroupId=sre)
    start = now()
    clock.set(start)
    await request_approval(world, await world.register_image("dev"), [])
    clock.set(at(start, 3))
    assert await run_job() == 2
    assert await written("request_escalated") == [mail("approver3"), mail("viewer")]
    event = await AuditEvent.get(action="request_escalated")
    assert event.after["group"] == pk(sre)


async def test_two_job_runners_at_once_send_each_reminder_once(world, settings, smtp, clock):
    """Done by the background jobs on any process, once: two runners (each with its own
    authorizer, as two processes have) at the same moment write each reminder and each
    escalation once."""
    await update(world, remindAfterHours=1, escalateAfterHours=2)
    start = now()
    clock.set(start)
    for _ in range(3):
        await request_approval(world, await world.register_image("dev"), ["approver1", "prod_approver"])
    clock.set(at(start, 2))
    counts = await asyncio.gather(run_job(), run_job())
    assert sum(counts) == 3 * 2 + 3 * 2  # 2 reminders and 2 escalations (admin, admin2) per request
    assert await EmailOutbox.filter(kind="request_reminder").count() == 6
    assert await EmailOutbox.filter(kind="request_escalated").count() == 6
    assert await AuditEvent.filter(action="request_reminded").count() == 3
    assert await AuditEvent.filter(action="request_escalated").count() == 3
    await received(settings, smtp)
    assert len([m for m in smtp.to(mail("approver1")) if "Reminder" in m.message["Subject"]]) == 3


async def test_the_background_round_sends_reminders(world, settings, smtp, clock):
    """Reminders are one of the background jobs of every process (their own task)."""
    assert "send_reminders" in jobs.kinds(settings, None)
    await update(world, remindAfterHours=1)
    start = now()
    clock.set(start)
    await request_approval(world, await world.register_image("dev"), ["approver1"])
    clock.set(at(start, 1))
    await jobs.run_once(settings)
    await jobs.run_once(settings)  # the emails written by the first round go out in the second
    assert any("Reminder" in m.message["Subject"] for m in smtp.to(mail("approver1")))
    assert (await Pipeline.get(id=pk(world.ids["shop/prod"]))).remind_after_hours == 1
