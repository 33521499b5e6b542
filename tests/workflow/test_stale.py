"""Stale image protection: a request for an image older (createdAt, then id) than the
pipeline's active image is stale; deploying a newer image flags the pipeline's live requests
for older images (or, with cancelStaleRequests, cancels them and emails the requester);
approving or deploying a stale one needs acknowledgeStale, else STALE_IMAGE."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from greenlight.config import Settings
from greenlight.models import Image

UPDATE_POLICY = """mutation($p: ID!, $i: ApprovalPolicyInput!) {
  updateApprovalPolicy(pipelineId: $p, input: $i) { id approvalPolicy { cancelStaleRequests } }
}"""
REQUEST_VIEW = "query($id: ID!) { approvalRequest(id: $id) { id state stale approvals { user { id } } } }"
APPROVE = """mutation($id: ID!, $ack: Boolean) {
  approveRequest(id: $id, acknowledgeStale: $ack) { id state stale }
}"""
APPROVE_PLAIN = "mutation($id: ID!) { approveRequest(id: $id) { id state } }"
DEPLOY = """mutation($i: DeployImageInput!) {
  deployImage(input: $i) { id status image { id } approvalRequest { id state } }
}"""
ACTIVE = "query($p: ID!) { pipeline(id: $p) { activeImage { id } } }"
CANCEL = "mutation($id: ID!) { cancelApprovalRequest(id: $id) { id state } }"
AUDIT = """query($f: AuditEventFilter) {
  auditEvents(filter: $f, first: 100) { edges { node { action objectId actor { id } after } } }
}"""
OUTBOX = """{ notificationOutbox(first: 100) { edges { node { kind toAddress subject } } } }"""
CREATE_FREEZE = "mutation($i: DeployFreezeInput!) { createDeployFreeze(input: $i) { id } }"
GRANT = "mutation($i: RoleBindingInput!) { grantRole(input: $i) { id } }"


@pytest.fixture
def settings(database_url) -> Settings:
    """Email on (nothing is sent: no background jobs), so the outbox shows who is told."""
    return Settings(
        database_url=database_url,
        background_jobs=False,
        rollout_seconds=90,
        mutations_per_minute=0,
        smtp_host="127.0.0.1",
        smtp_port=2525,
        smtp_from="greenlight@example.com",
        smtp_security="none",
        secret_key="stale-tests-secret-key-0123456789abcdef",
    )


def pk(global_id: str) -> int:
    return int(global_id.rpartition(":")[2])


async def view(world, request: str, who: str = "admin") -> dict:
    return (await world[who].ok(REQUEST_VIEW, {"id": request}))["approvalRequest"]


async def stale_and_state(world, request: str) -> tuple[bool, str]:
    found = await view(world, request)
    return found["stale"], found["state"]


def deploy_vars(world, image: str, pipeline: str = "shop/prod", **extra) -> dict:
    return {"i": {"pipelineId": world.ids[pipeline], "imageId": image, **extra}}


async def deploy(world, image: str, pipeline: str = "shop/prod", who: str = "dev", **extra) -> dict:
    return (await world[who].ok(DEPLOY, deploy_vars(world, image, pipeline, **extra)))["deployImage"]


async def approve_fully(world, request: str) -> None:
    for approver in ("approver1", "approver2"):
        await world[approver].ok(APPROVE_PLAIN, {"id": request})


async def ship(world, image: str, pipeline: str = "shop/prod") -> str:
    """Requests (dev2), approves and deploys `image` on an approval pipeline; the request."""
    request = await world.request_approval(image, pipeline, who="dev2")
    await approve_fully(world, request)
    await deploy(world, image, pipeline)
    return request


async def active_image(world, pipeline: str = "shop/prod") -> str | None:
    found = (await world["dev"].ok(ACTIVE, {"p": world.ids[pipeline]}))["pipeline"]["activeImage"]
    return found["id"] if found else None


async def set_policy(world, pipeline: str = "shop/prod", **fields) -> dict:
    values = {"requiredApprovals": 2, "ttlHours": 24, **fields}
    data = await world["admin"].ok(UPDATE_POLICY, {"p": world.ids[pipeline], "i": values})
    return data["updateApprovalPolicy"]["approvalPolicy"]


async def audit_events(world, action: str) -> list[dict]:
    data = await world["admin"].ok(AUDIT, {"f": {"action": action}})
    return [e["node"] for e in data["auditEvents"]["edges"]]


async def outbox(world, kind: str) -> list[str]:
    edges = (await world["admin"].ok(OUTBOX))["notificationOutbox"]["edges"]
    return sorted(e["node"]["toAddress"] for e in edges if e["node"]["kind"] == kind)


async def refused(unchanged, client, query: str, variables: dict, code: str, case: object) -> dict:
    async with unchanged():
        body = await client.execute(query, variables)
    assert body.get("errors"), f"{case!r}: expected {code}, got {body}"
    error = body["errors"][0]
    assert error["extensions"]["code"] == code, f"{case!r}: {error}"
    return error


# --- stale when requested ----------------------------------------------------------------------


async def test_request_for_an_image_older_than_the_active_one_is_stale(world):
    """Stale images: with `new` active on shop/prod, a request for `old` (registered
    before it) is stale from the start, one for `newer` is not, and neither is a request for
    `old` on shop/staging, where nothing is active."""
    old = await world.register_image("dev", tag="old")
    new = await world.register_image("dev", tag="new")
    before = await world.request_approval(new, who="dev2")
    assert (await view(world, before))["stale"] is False
    await approve_fully(world, before)
    await deploy(world, new)
    assert await active_image(world) == new

    request = await world.request_approval(old, who="dev2")
    assert await stale_and_state(world, request) == (True, "PENDING")
    assert (await view(world, request, "viewer"))["stale"] is True
    newer = await world.register_image("dev", tag="newer")
    assert (await view(world, await world.request_approval(newer, who="dev2")))["stale"] is False

    await set_policy(world, "shop/staging", requiredApprovals=1, ttlHours=None)
    other = await world.request_approval(old, "shop/staging", who="dev2")
    assert (await view(world, other))["stale"] is False


async def test_stale_compares_created_at_then_id(world):
    """Stale images: age is createdAt first: an image with a higher id but an earlier
    createdAt is older; with equal createdAt the lower id is older."""
    first = await world.register_image("dev", tag="first")
    second = await world.register_image("dev", tag="second")
    stored = await Image.get(id=pk(second))
    await Image.filter(id=pk(first)).update(created_at=stored.created_at + timedelta(minutes=5))
    await ship(world, first)
    request = await world.request_approval(second, who="dev2")
    assert (await view(world, request))["stale"] is True  # higher id, earlier createdAt

    await set_policy(world, "shop/staging", requiredApprovals=1, ttlHours=None)
    low = await world.register_image("dev", tag="low")
    high = await world.register_image("dev", tag="high")
    same = (await Image.get(id=pk(low))).created_at
    await Image.filter(id=pk(high)).update(created_at=same)
    shipped = await world.request_approval(high, "shop/staging", who="dev2")
    await world.approve(shipped, "approver1")
    await deploy(world, high, "shop/staging")
    request = await world.request_approval(low, "shop/staging", who="dev2")
    assert (await view(world, request))["stale"] is True  # same createdAt, lower id


# --- flagged when a newer image is deployed ----------------------------------------------------


async def test_deploying_a_newer_image_flags_older_live_requests(world):
    """Stale images: deploying C on shop/prod makes the live requests for A (PENDING)
    and B (APPROVED) stale, states unchanged, each audited "request_marked_stale"; a request for
    D (newer than C), and one for A on shop/staging, stay fresh; nobody is emailed about it."""
    await set_policy(world, "shop/staging", requiredApprovals=1, ttlHours=None)
    a = await world.register_image("dev", tag="a")
    b = await world.register_image("dev", tag="b")
    c = await world.register_image("dev", tag="c")
    d = await world.register_image("dev", tag="d")
    request_a = await world.request_approval(a, who="dev2")
    request_b = await world.request_approval(b, who="dev2")
    await approve_fully(world, request_b)
    request_d = await world.request_approval(d, who="dev2")
    staging_a = await world.request_approval(a, "shop/staging", who="dev2")
    for request in (request_a, request_b, request_d, staging_a):
        assert (await view(world, request))["stale"] is False

    await ship(world, c)
    assert await stale_and_state(world, request_a) == (True, "PENDING")
    assert await stale_and_state(world, request_b) == (True, "APPROVED")
    assert await stale_and_state(world, request_d) == (False, "PENDING")
    assert await stale_and_state(world, staging_a) == (False, "PENDING")
    marked = [e["objectId"] for e in await audit_events(world, "request_marked_stale")]
    assert sorted(marked) == sorted([request_a, request_b])
    assert await outbox(world, "request_cancelled") == []


async def test_cancel_stale_requests_cancels_and_emails_the_requester(world):
    """Stale images: with cancelStaleRequests the live requests for older images are
    CANCELLED when a newer image is deployed (by no one: actor null), and each requester gets a
    "request_cancelled" email; a request for a newer image is left alone."""
    policy = await set_policy(world, cancelStaleRequests=True)
    assert policy == {"cancelStaleRequests": True}
    a = await world.register_image("dev", tag="a")
    b = await world.register_image("dev", tag="b")
    c = await world.register_image("dev", tag="c")
    d = await world.register_image("dev", tag="d")
    request_a = await world.request_approval(a, who="dev2")
    request_b = await world.request_approval(b, who="admin2")
    await approve_fully(world, request_b)
    request_d = await world.request_approval(d, who="dev2")

    await ship(world, c)
    assert (await view(world, request_a))["state"] == "CANCELLED"
    assert (await view(world, request_b))["state"] == "CANCELLED"
    assert await stale_and_state(world, request_d) == (False, "PENDING")
    everything = [e["node"] for e in (await world["admin"].ok(AUDIT, {"f": None}))["auditEvents"]["edges"]]
    events = {
        e["objectId"]: e
        for e in everything
        if e["objectId"] in (request_a, request_b) and (e["after"] or {}).get("state") == "CANCELLED"
    }
    assert sorted(events) == sorted([request_a, request_b])
    assert all(event["actor"] is None for event in events.values())
    # the requesters, and those who had approved request_b (who hears what: cancelled)
    assert await outbox(world, "request_cancelled") == [
        "admin2@example.com",
        "approver1@example.com",
        "approver2@example.com",
        "dev2@example.com",
    ]

    # A cancelled request is no longer live: a new one can be made (and is stale).
    again = await world.request_approval(a, who="dev2")
    assert await stale_and_state(world, again) == (True, "PENDING")


# --- approving a stale request -----------------------------------------------------------------


async def test_approving_a_stale_request_needs_acknowledgement(world, unchanged):
    """Stale images: approveRequest on a stale request is STALE_IMAGE without
    acknowledgeStale true (omitted or false) and records nothing; with it the approval counts."""
    old = await world.register_image("dev", tag="old")
    request = await world.request_approval(old, who="dev2")
    await ship(world, await world.register_image("dev", tag="new"))
    assert (await view(world, request))["stale"] is True

    await refused(unchanged, world["approver1"], APPROVE_PLAIN, {"id": request}, "STALE_IMAGE", "omitted")
    await refused(
        unchanged, world["approver1"], APPROVE, {"id": request, "ack": False}, "STALE_IMAGE", "false"
    )
    assert (await view(world, request))["approvals"] == []

    data = await world["approver1"].ok(APPROVE, {"id": request, "ack": True})
    assert data["approveRequest"] == {"id": request, "state": "PENDING", "stale": True}
    assert (await view(world, request))["approvals"] == [{"user": {"id": world["approver1"].user_id}}]
    data = await world["approver2"].ok(APPROVE, {"id": request, "ack": True})
    assert data["approveRequest"]["state"] == "APPROVED"


async def test_stale_refusal_comes_after_forbidden_self_approval_and_invalid_state(world, unchanged):
    """Stale images: on a stale request FORBIDDEN (R4), SELF_APPROVAL (R10) and
    INVALID_STATE (R11, R16) are answered before STALE_IMAGE."""
    await world["admin"].ok(
        GRANT,
        {"i": {"userId": world["approver3"].user_id, "role": "BUILD_AND_DEPLOY", "application": "shop"}},
    )
    old = await world.register_image("approver3", tag="old")
    request = await world.request_approval(old, who="dev2")
    cancelled = await world.request_approval(await world.register_image("dev", tag="old2"), who="dev2")
    await ship(world, await world.register_image("dev", tag="new"))
    assert (await view(world, request))["stale"] is True
    await world["dev2"].ok(CANCEL, {"id": cancelled})

    await refused(unchanged, world["viewer"], APPROVE_PLAIN, {"id": request}, "FORBIDDEN", "viewer")
    await refused(unchanged, world["approver3"], APPROVE_PLAIN, {"id": request}, "SELF_APPROVAL", "builder")
    await refused(
        unchanged, world["approver1"], APPROVE_PLAIN, {"id": cancelled}, "INVALID_STATE", "cancelled"
    )
    await world["approver1"].ok(APPROVE, {"id": request, "ack": True})
    await refused(unchanged, world["approver1"], APPROVE_PLAIN, {"id": request}, "INVALID_STATE", "again")


async def test_acknowledging_a_fresh_request_is_harmless(world):
    """Stale images: acknowledgeStale true on a request that is not stale approves as
    usual."""
    image = await world.register_image("dev")
    request = await world.request_approval(image, who="dev2")
    for approver in ("approver1", "approver2"):
        await world[approver].ok(APPROVE, {"id": request, "ack": True})
    assert await stale_and_state(world, request) == (False, "APPROVED")


# --- deploying a stale image -------------------------------------------------------------------


async def test_deploying_a_stale_approved_request_needs_acknowledgement(world, unchanged):
    """Stale images: B was APPROVED, then newer C was deployed; deploying B is
    STALE_IMAGE without acknowledgeStale (request stays APPROVED), and with it B deploys and the
    request is CONSUMED."""
    b = await world.register_image("dev", tag="b")
    request = await world.request_approval(b, who="dev2")
    await approve_fully(world, request)
    c = await world.register_image("dev", tag="c")
    await ship(world, c)
    assert await stale_and_state(world, request) == (True, "APPROVED")

    for extra in ({}, {"acknowledgeStale": False}):
        await refused(unchanged, world["dev"], DEPLOY, deploy_vars(world, b, **extra), "STALE_IMAGE", extra)
    assert await active_image(world) == c
    deployment = await deploy(world, b, acknowledgeStale=True)
    assert deployment["approvalRequest"] == {"id": request, "state": "CONSUMED"}
    assert await active_image(world) == b


async def test_rolling_back_without_a_stale_request_needs_no_acknowledgement(world):
    """Stale images: acknowledgement is asked for a stale *request*; on shop/staging
    (no approval, so no request) rolling back to an older image is a plain deploy (R19)."""
    a = await world.register_image("dev", tag="a")
    b = await world.register_image("dev", tag="b")
    await deploy(world, b, "shop/staging")
    await deploy(world, a, "shop/staging")
    assert await active_image(world, "shop/staging") == a
    c = await world.register_image("dev", tag="c")
    await deploy(world, c, "shop/staging")
    assert await active_image(world, "shop/staging") == c


async def test_stale_image_refusal_order_in_deploy(world, unchanged):
    """Stale images: FORBIDDEN / NOT_FOUND and CONFLICT (R22) come before
    STALE_IMAGE, and DEPLOY_FROZEN before it too."""
    old = await world.register_image("dev", tag="old")
    active = await world.register_image("dev", tag="active")
    await ship(world, active)

    await refused(unchanged, world["viewer"], DEPLOY, deploy_vars(world, old), "FORBIDDEN", "viewer")
    await refused(unchanged, world["nobody"], DEPLOY, deploy_vars(world, old), "NOT_FOUND", "nobody")
    await refused(
        unchanged,
        world["dev"],
        DEPLOY,
        deploy_vars(world, active, acknowledgeStale=True),
        "CONFLICT",
        "active",
    )
    # An older image without any request is not approved; staleness belongs to requests.
    await refused(unchanged, world["dev"], DEPLOY, deploy_vars(world, old), "NOT_APPROVED", "no request")

    now = datetime.now(UTC).replace(microsecond=0)
    await world["admin"].ok(
        CREATE_FREEZE,
        {
            "i": {
                "name": "quiet",
                "pipelineId": world.ids["shop/prod"],
                "startsAt": (now - timedelta(hours=1)).isoformat(),
                "endsAt": (now + timedelta(hours=1)).isoformat(),
            }
        },
    )
    await refused(unchanged, world["dev"], DEPLOY, deploy_vars(world, old), "DEPLOY_FROZEN", "frozen")
