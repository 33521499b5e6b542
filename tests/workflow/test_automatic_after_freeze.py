"""R24 after a freeze: a request approved on a frozen AUTOMATIC pipeline deploys when the
freeze ends (the background jobs do it, once, whichever process), or the requester is told,
in the audit log and by email, that it did not."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from greenlight import jobs
from greenlight.config import Settings
from greenlight.models import ApprovalRequest, AuditEvent, Deployment, EmailOutbox
from greenlight.policies import Authorizer
from greenlight.workflow.deployments import deploy_after_freezes
from tests.workflow.test_freezes import ACTIVE, DELETE_FREEZE, one_off, real_now

REQUEST_STATE = "query($id: ID!) { approvalRequest(id: $id) { state } }"
DEACTIVATE = "mutation($id: ID!) { deactivateUser(id: $id) { id isActive } }"


@pytest.fixture
def settings(database_url) -> Settings:
    """Email on (nothing is sent here: the outbox shows what would be)."""
    return Settings(
        database_url=database_url,
        background_jobs=False,
        smtp_host="127.0.0.1",
        smtp_port=1,
        smtp_from="greenlight@example.com",
        smtp_security="none",
        secret_key="s" * 40,
    )


async def frozen_automatic_approval(world, ttl_hours: int | None = None) -> tuple[str, str, dict]:
    """billing/staging, AUTOMATIC, frozen for the next hour; an image requested by billing_dev
    and approved by billing_approver while frozen. Returns (image, request, freeze)."""
    data = await world["admin"].ok(
        "mutation($i: CreatePipelineInput!) { createPipeline(input: $i) { id } }",
        {
            "i": {
                "applicationId": world.ids["billing"],
                "environmentId": world.ids["staging"],
                "requiredApprovals": 1,
                "triggerType": "AUTOMATIC",
                "ttlHours": ttl_hours,
            }
        },
    )
    world.ids["billing/staging"] = data["createPipeline"]["id"]
    freeze = await one_off(
        world, real_now() - timedelta(hours=1), real_now() + timedelta(hours=1), pipeline="billing/staging"
    )
    image = await world.register_image("admin", "billing")
    request = await world.request_approval(image, "billing/staging", who="billing_dev")
    assert (await world.approve(request, "billing_approver"))["state"] == "APPROVED"
    assert await Deployment.all().count() == 0
    return image, request, freeze


async def state_of(world, request: str) -> str:
    return (await world["billing_dev"].ok(REQUEST_STATE, {"id": request}))["approvalRequest"]["state"]


async def told(world) -> list[EmailOutbox]:
    requester = int(world["billing_dev"].user_id.split(":")[1])
    return await EmailOutbox.filter(kind="automatic_deploy_not_done", recipient_id=requester)


async def test_r24_approved_while_frozen_deploys_for_the_requester_when_the_freeze_ends(world, settings):
    image, request, freeze = await frozen_automatic_approval(world)
    assert await deploy_after_freezes(Authorizer()) == 0, "still frozen: it waits"
    assert await state_of(world, request) == "APPROVED"

    await world["admin"].ok(DELETE_FREEZE, {"id": freeze["id"]})
    assert await deploy_after_freezes(Authorizer()) == 1
    active = (await world["billing_dev"].ok(ACTIVE, {"p": world.ids["billing/staging"]}))["pipeline"]
    assert active["activeImage"] == {"id": image}
    assert await state_of(world, request) == "CONSUMED"
    (deployment,) = await Deployment.all()
    assert deployment.triggered_by_id == int(world["billing_dev"].user_id.split(":")[1])
    assert (await AuditEvent.get(action="deploy")).actor_id is None  # the system acted
    assert await deploy_after_freezes(Authorizer()) == 0
    assert await Deployment.all().count() == 1
    assert await told(world) == []


async def test_r24_r17_after_a_freeze_deploys_once_however_many_processes_try(world, settings):
    _, request, freeze = await frozen_automatic_approval(world)
    await world["admin"].ok(DELETE_FREEZE, {"id": freeze["id"]})
    results = await asyncio.gather(*(deploy_after_freezes(Authorizer()) for _ in range(4)))
    assert sorted(results) == [0, 0, 0, 1]
    assert await Deployment.all().count() == 1
    assert await state_of(world, request) == "CONSUMED"


async def test_r24_background_jobs_deploy_after_the_freeze(world, settings):
    """The periodic work of every process includes it."""
    image, _, freeze = await frozen_automatic_approval(world)
    await world["admin"].ok(DELETE_FREEZE, {"id": freeze["id"]})
    await jobs.run_once(Settings(database_url=settings.database_url, background_jobs=False))
    active = (await world["billing_dev"].ok(ACTIVE, {"p": world.ids["billing/staging"]}))["pipeline"]
    assert active["activeImage"] == {"id": image}


async def test_r24_approval_expired_during_the_freeze_tells_the_requester(world, settings, clock):
    _, request, _ = await frozen_automatic_approval(world, ttl_hours=1)
    clock.set(real_now() + timedelta(hours=2))  # past the expiry and the freeze's end
    assert await deploy_after_freezes(Authorizer()) == 0
    assert await Deployment.all().count() == 0
    assert await state_of(world, request) == "EXPIRED"
    (event,) = await AuditEvent.filter(action="automatic_deploy_abandoned")
    assert event.object_id == int(request.split(":")[1]) and "expired" in event.after["reason"]
    (email,) = await told(world)
    assert "expired" in email.text_body and "billing" in email.subject
    assert await deploy_after_freezes(Authorizer()) == 0
    assert len(await told(world)) == 1, "told once"


async def test_r24_requester_who_lost_the_right_during_the_freeze_is_told(world, settings):
    _, request, freeze = await frozen_automatic_approval(world)
    await world["admin"].ok(DEACTIVATE, {"id": world["billing_dev"].user_id})
    await world["admin"].ok(DELETE_FREEZE, {"id": freeze["id"]})
    assert await deploy_after_freezes(Authorizer()) == 0
    assert await Deployment.all().count() == 0
    stored = await ApprovalRequest.get(id=int(request.split(":")[1]))
    assert stored.state == "APPROVED" and not stored.deploy_after_freeze  # usable by someone who may
    (event,) = await AuditEvent.filter(action="automatic_deploy_abandoned")
    assert "may no longer deploy" in event.after["reason"]
    # A deactivated user gets no email (R8); the audit log says it.
    assert await told(world) == []


async def test_r24_requester_whose_role_was_revoked_during_the_freeze_gets_an_email(world, settings):
    _, request, freeze = await frozen_automatic_approval(world)
    bindings = (await world["billing_dev"].ok("{ me { roleBindings { id } } }"))["me"]["roleBindings"]
    for binding in bindings:
        await world["admin"].ok("mutation($id: ID!) { revokeRole(id: $id) { id } }", {"id": binding["id"]})
    await world["admin"].ok(DELETE_FREEZE, {"id": freeze["id"]})
    assert await deploy_after_freezes(Authorizer()) == 0
    assert await Deployment.all().count() == 0
    (email,) = await told(world)
    assert "may no longer deploy" in email.text_body
    assert await AuditEvent.filter(action="automatic_deploy_abandoned").count() == 1


async def test_r24_stale_approval_after_the_freeze_is_not_rolled_back_automatically(world, settings):
    """A newer image deployed during the freeze (an override) makes the approval stale:
    deploying it by hand needs acknowledgeStale, so the system must not roll back on its own."""
    image, request, freeze = await frozen_automatic_approval(world)
    await ApprovalRequest.filter(id=int(request.split(":")[1])).update(stale=True)
    await world["admin"].ok(DELETE_FREEZE, {"id": freeze["id"]})
    assert await deploy_after_freezes(Authorizer()) == 0
    assert await Deployment.all().count() == 0
    assert await state_of(world, request) == "APPROVED"
    (event,) = await AuditEvent.filter(action="automatic_deploy_abandoned")
    assert "stale" in event.after["reason"]
