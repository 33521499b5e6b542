"""approveRequest, rejectRequest, viewerCanApprove and the approvalRequests filters:
R4, R10, R11, R12, R13, R16 (and R1, R15 where they meet)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from greenlight.models import Approval, ApprovalRequest, ApprovalState, Rejection

APPROVE = """
mutation($id: ID!, $c: String) {
  approveRequest(id: $id, comment: $c) {
    id state requiredApprovals
    approvals { user { id } comment }
  }
}"""

REJECT = """
mutation($id: ID!, $r: String!) {
  rejectRequest(id: $id, reason: $r) {
    id state
    rejection { user { id } comment decidedAt }
  }
}"""

GET_REQUEST = """
query($id: ID!) {
  approvalRequest(id: $id) {
    id state requiredApprovals viewerCanApprove
    approvals { user { id } comment }
    rejection { user { id } comment }
  }
}"""

CAN_APPROVE = "query($id: ID!) { approvalRequest(id: $id) { viewerCanApprove } }"

CANCEL = "mutation($id: ID!) { cancelApprovalRequest(id: $id) { id state } }"
EXPIRE = "mutation($id: ID!) { expireApproval(id: $id) { id state } }"

DEPLOY = """
mutation($i: DeployImageInput!) { deployImage(input: $i) { id status } }"""

PIPELINE = """
query($p: ID!) {
  pipeline(id: $p) { deployableImages { id } }
  approvalRequests(filter: {pipelineId: $p}) { edges { node { id image { id approvalState(pipelineId: $p) } } } }
}"""

LIST = """
query($f: ApprovalRequestFilter) {
  approvalRequests(filter: $f, first: 100) {
    totalCount
    edges { node { id state viewerCanApprove } }
  }
}"""

UPDATE_POLICY = """
mutation($p: ID!, $i: ApprovalPolicyInput!) {
  updateApprovalPolicy(pipelineId: $p, input: $i) { id }
}"""

GRANT = "mutation($i: RoleBindingInput!) { grantRole(input: $i) { id } }"


def pk(global_id: str) -> int:
    return int(global_id.rpartition(":")[2])


async def grant(world, user: str, role: str, application: str = "*", environment: str = "*") -> None:
    await world["admin"].ok(
        GRANT,
        {
            "i": {
                "userId": world[user].user_id,
                "role": role,
                "application": application,
                "environment": environment,
            }
        },
    )


async def pending(world, builder: str = "dev", requester: str = "dev2", pipeline: str = "shop/prod"):
    """A fresh image built by `builder` and requested by `requester`; (image, request)."""
    image = await world.register_image(builder, pipeline.split("/")[0])
    request = await world.request_approval(image, pipeline, who=requester)
    return image, request


async def expire_by_time(request_id: str) -> None:
    """R15: let time pass, by moving the stored expiry into the past."""
    past = datetime.now(UTC) - timedelta(minutes=1)
    await ApprovalRequest.filter(id=pk(request_id)).update(expires_at=past)


async def stored_approvers(request_id: str) -> list[int]:
    return sorted(await Approval.filter(request_id=pk(request_id)).values_list("user_id", flat=True))


async def _can_approve(world, who: str, request: str) -> bool:
    return (await world[who].ok(CAN_APPROVE, {"id": request}))["approvalRequest"]["viewerCanApprove"]


def ids_of(world, *names: str) -> list[int]:
    return sorted(pk(world[n].user_id) for n in names)


# --- R4: who may approve or reject ------------------------------------------------------------


async def test_r4_image_approvers_and_super_admins_may_approve(world):
    """R4: image-approver on the scope (shop/* or shop/prod) or a super-admin approves; the
    approval is recorded with its user and comment."""
    _, request = await pending(world)
    data = await world["prod_approver"].ok(APPROVE, {"id": request, "c": "looks good"})
    assert data["approveRequest"]["state"] == "PENDING"
    assert data["approveRequest"]["approvals"] == [
        {"user": {"id": world["prod_approver"].user_id}, "comment": "looks good"}
    ]
    data = await world["admin"].ok(APPROVE, {"id": request})
    assert data["approveRequest"]["state"] == "APPROVED"
    assert await stored_approvers(request) == ids_of(world, "prod_approver", "admin")

    _, other = await pending(world)
    await world.approve(other, "approver1")
    assert (await world.approve(other, "admin2"))["state"] == "APPROVED"

    _, billing = await pending(world, "billing_dev", "billing_dev", "billing/prod")
    assert (await world.approve(billing, "billing_approver"))["state"] == "APPROVED"


async def test_r4_others_may_not_approve_or_reject(world, unchanged):
    """R4 (with R1): callers who see the request but are not approvers get FORBIDDEN; callers who
    cannot see it (billing_approver, billing_dev, nobody) get NOT_FOUND; so does an unknown id,
    and a malformed one is BAD_USER_INPUT. Nothing changes."""
    _, request = await pending(world, builder="dev2", requester="dev2")
    async with unchanged():
        for who in ("dev", "viewer"):
            assert await world[who].code(APPROVE, {"id": request}) == "FORBIDDEN", who
            assert await world[who].code(REJECT, {"id": request, "r": "no"}) == "FORBIDDEN", who
        for who in ("billing_approver", "billing_dev", "nobody"):
            assert await world[who].code(APPROVE, {"id": request}) == "NOT_FOUND", who
            assert await world[who].code(REJECT, {"id": request, "r": "no"}) == "NOT_FOUND", who
        assert await world.anonymous.code(APPROVE, {"id": request}) == "UNAUTHENTICATED"
        # a wrong-kind or malformed id is BAD_USER_INPUT; an unknown one NOT_FOUND
        for bad in (world.ids["shop/prod"], "ApprovalRequest:x", "42"):
            assert await world["approver1"].code(APPROVE, {"id": bad}) == "BAD_USER_INPUT", bad
            assert await world["approver1"].code(REJECT, {"id": bad, "r": "no"}) == "BAD_USER_INPUT", bad
        assert await world["approver1"].code(APPROVE, {"id": "ApprovalRequest:999999"}) == "NOT_FOUND"
        assert await world["admin"].code(REJECT, {"id": "ApprovalRequest:999999", "r": "x"}) == "NOT_FOUND"
    stored = await ApprovalRequest.get(id=pk(request))
    assert stored.state == ApprovalState.PENDING


async def test_r4_approver_scope_is_per_environment(world, unchanged):
    """R4: prod_approver (image-approver on shop/prod only) cannot act on a shop/staging request
    (invisible to them: NOT_FOUND); approver1 (shop/*) can."""
    await world["admin"].ok(
        UPDATE_POLICY, {"p": world.ids["shop/staging"], "i": {"requiredApprovals": 1, "ttlHours": None}}
    )
    _, request = await pending(world, pipeline="shop/staging")
    async with unchanged():
        assert await world["prod_approver"].code(APPROVE, {"id": request}) == "NOT_FOUND"
        assert await world["prod_approver"].code(REJECT, {"id": request, "r": "no"}) == "NOT_FOUND"
    assert (await world.approve(request, "approver1"))["state"] == "APPROVED"


# --- R10: no self-approval --------------------------------------------------------------------


async def test_r10_builder_cannot_approve_or_reject(world, unchanged):
    """R10: an image-approver who built the image gets SELF_APPROVAL on approve and reject."""
    await grant(world, "approver1", "BUILD_AND_DEPLOY", "shop", "*")
    _, request = await pending(world, builder="approver1", requester="dev")
    async with unchanged():
        assert await world["approver1"].code(APPROVE, {"id": request}) == "SELF_APPROVAL"
        assert await world["approver1"].code(REJECT, {"id": request, "r": "mine"}) == "SELF_APPROVAL"
    assert await stored_approvers(request) == []


async def test_r10_requester_cannot_approve_or_reject(world, unchanged):
    """R10: an image-approver who requested the approval gets SELF_APPROVAL."""
    await grant(world, "approver1", "BUILD_AND_DEPLOY", "shop", "*")
    _, request = await pending(world, builder="dev", requester="approver1")
    async with unchanged():
        assert await world["approver1"].code(APPROVE, {"id": request}) == "SELF_APPROVAL"
        assert await world["approver1"].code(REJECT, {"id": request, "r": "mine"}) == "SELF_APPROVAL"


async def test_r10_super_admins_get_self_approval_too(world, unchanged):
    """R10: admin registers an image, admin2 requests it: neither super-admin may approve or
    reject it (and viewerCanApprove is false for them); two other approvers can."""
    _, request = await pending(world, builder="admin", requester="admin2")
    async with unchanged():
        for who in ("admin", "admin2"):
            assert await world[who].code(APPROVE, {"id": request}) == "SELF_APPROVAL", who
            assert await world[who].code(REJECT, {"id": request, "r": "mine"}) == "SELF_APPROVAL", who
    # viewerCanApprove agrees
    assert await _can_approve(world, "admin", request) is False
    assert await _can_approve(world, "admin2", request) is False
    assert await _can_approve(world, "approver3", request) is True
    await world.approve(request, "approver1")
    # still refused once partly approved
    assert await world["admin"].code(APPROVE, {"id": request}) == "SELF_APPROVAL"
    assert (await world.approve(request, "approver2"))["state"] == "APPROVED"
    assert await stored_approvers(request) == ids_of(world, "approver1", "approver2")


# --- R11: one approval per user ---------------------------------------------------------------


async def test_r11_approving_twice_is_invalid_state_and_counts_once(world, unchanged):
    """R11: a second approval by the same user is INVALID_STATE and is not counted."""
    _, request = await pending(world)
    await world.approve(request, "approver1")
    async with unchanged():
        assert await world["approver1"].code(APPROVE, {"id": request}) == "INVALID_STATE"
    data = await world["dev2"].ok(GET_REQUEST, {"id": request})
    assert data["approvalRequest"]["state"] == "PENDING"
    assert [a["user"]["id"] for a in data["approvalRequest"]["approvals"]] == [world["approver1"].user_id]
    assert await stored_approvers(request) == ids_of(world, "approver1")


# --- R12: partial approval is no approval -----------------------------------------------------


async def test_r12_partial_approval_is_not_deployable(world, unchanged):
    """R12: with 1 of 2 approvals the request is PENDING, the image is not deployable and
    deployImage is NOT_APPROVED; the second approval makes it APPROVED and deployable."""
    image, request = await pending(world)
    assert (await world.approve(request, "approver1"))["state"] == "PENDING"
    variables = {"p": world.ids["shop/prod"]}
    data = await world["dev"].ok(PIPELINE, variables)
    assert data["pipeline"]["deployableImages"] == []
    [node] = [e["node"] for e in data["approvalRequests"]["edges"]]
    assert node["image"]["approvalState"] == "PENDING"
    async with unchanged():
        code = await world["dev"].code(
            DEPLOY, {"i": {"pipelineId": world.ids["shop/prod"], "imageId": image}}
        )
        assert code == "NOT_APPROVED"
    assert (await ApprovalRequest.get(id=pk(request))).state == ApprovalState.PENDING

    assert (await world.approve(request, "approver2"))["state"] == "APPROVED"
    data = await world["dev"].ok(PIPELINE, variables)
    assert [i["id"] for i in data["pipeline"]["deployableImages"]] == [image]
    assert data["approvalRequests"]["edges"][0]["node"]["image"]["approvalState"] == "APPROVED"
    assert (await ApprovalRequest.get(id=pk(request))).state == ApprovalState.APPROVED


# --- R13: rejecting ---------------------------------------------------------------------------


async def test_r13_reject_needs_a_non_empty_reason(world, unchanged):
    """R13: an empty or blank reason is BAD_USER_INPUT (so is a missing one) and changes nothing."""
    _, request = await pending(world)
    async with unchanged():
        for reason in ("", "   ", "\n\t"):
            assert await world["approver1"].code(REJECT, {"id": request, "r": reason}) == "BAD_USER_INPUT"
        query = "mutation($id: ID!) { rejectRequest(id: $id) { id } }"
        assert await world["approver1"].code(query, {"id": request}) == "BAD_USER_INPUT"
    assert (await ApprovalRequest.get(id=pk(request))).state == ApprovalState.PENDING
    assert await Rejection.all().count() == 0


async def test_r13_rejection_holds_the_reason_and_state_is_rejected(world):
    """R13: a rejection, even after a partial approval, makes the request REJECTED and
    rejection.comment holds the reason; the image is not deployable."""
    image, request = await pending(world)
    await world.approve(request, "approver2")
    data = await world["approver1"].ok(REJECT, {"id": request, "r": "fails the smoke test"})
    rejected = data["rejectRequest"]
    assert rejected["state"] == "REJECTED"
    assert rejected["rejection"]["user"]["id"] == world["approver1"].user_id
    assert rejected["rejection"]["comment"] == "fails the smoke test"
    assert rejected["rejection"]["decidedAt"]

    read = (await world["dev2"].ok(GET_REQUEST, {"id": request}))["approvalRequest"]
    assert read["state"] == "REJECTED"
    assert read["rejection"] == {
        "user": {"id": world["approver1"].user_id},
        "comment": "fails the smoke test",
    }
    stored = await ApprovalRequest.get(id=pk(request))
    assert stored.state == ApprovalState.REJECTED
    rejection = await Rejection.get(request_id=pk(request))
    assert rejection.user_id == pk(world["approver1"].user_id)
    assert rejection.reason == "fails the smoke test"
    data = await world["dev"].ok(PIPELINE, {"p": world.ids["shop/prod"]})
    assert data["pipeline"]["deployableImages"] == []


# --- R16: approve / reject in the wrong state -------------------------------------------------


async def _closed_request(world, state: str) -> str:
    if state == "CONSUMED":
        image, request = await world.approved_image("shop/prod")
        await world.deploy(image, "shop/prod", who="dev")
        return request
    if state == "EXPIRED_BY_REQUESTER":
        _, request = await world.approved_image("shop/prod")
        await world["dev2"].ok(EXPIRE, {"id": request})
        return request
    _, request = await pending(world)
    if state == "REJECTED":
        await world["approver1"].ok(REJECT, {"id": request, "r": "no"})
    elif state == "CANCELLED":
        await world["dev2"].ok(CANCEL, {"id": request})
    elif state == "EXPIRED_BY_TIME":
        await expire_by_time(request)
    return request


@pytest.mark.parametrize(
    ("setup", "state"),
    [
        ("REJECTED", "REJECTED"),
        ("CANCELLED", "CANCELLED"),
        ("CONSUMED", "CONSUMED"),
        ("EXPIRED_BY_REQUESTER", "EXPIRED"),
        ("EXPIRED_BY_TIME", "EXPIRED"),
    ],
)
async def test_r16_approve_and_reject_on_closed_request_are_invalid_state(world, unchanged, setup, state):
    """R16: approving or rejecting a REJECTED, CANCELLED, CONSUMED or EXPIRED request (stored or
    past its expiresAt, R15) is INVALID_STATE and changes nothing."""
    request = await _closed_request(world, setup)
    async with unchanged():
        for who in ("approver3", "admin"):
            assert await world[who].code(APPROVE, {"id": request}) == "INVALID_STATE", who
            assert await world[who].code(REJECT, {"id": request, "r": "late"}) == "INVALID_STATE", who
    data = await world["approver3"].ok(GET_REQUEST, {"id": request})
    assert data["approvalRequest"]["state"] == state
    assert data["approvalRequest"]["viewerCanApprove"] is False


async def test_r16_approving_an_approved_request_is_invalid_state(world, unchanged):
    """R16 (R12): once APPROVED, a further approval is INVALID_STATE and not counted."""
    _, request = await world.approved_image("shop/prod")
    async with unchanged():
        assert await world["approver3"].code(APPROVE, {"id": request}) == "INVALID_STATE"
        assert await world["admin"].code(APPROVE, {"id": request}) == "INVALID_STATE"
    assert await stored_approvers(request) == ids_of(world, "approver1", "approver2")


# --- viewerCanApprove -------------------------------------------------------------------------


async def test_viewer_can_approve_depends_on_caller_and_state(world):
    """viewerCanApprove (R4, R10, R11, R12, R15): true only for an eligible approver who has not
    approved yet, while the request is PENDING and not past its expiry."""
    _, request = await pending(world)
    expected = {
        "approver1": True,
        "approver2": True,
        "prod_approver": True,
        "admin": True,
        "admin2": True,
        "dev": False,  # builder
        "dev2": False,  # requester
        "viewer": False,
    }
    for who, can in expected.items():
        assert await _can_approve(world, who, request) is can, who
    # invisible to billing_approver (R1)
    assert await world["billing_approver"].code(CAN_APPROVE, {"id": request}) == "NOT_FOUND"

    await world.approve(request, "approver1")
    assert await _can_approve(world, "approver1", request) is False
    assert await _can_approve(world, "approver2", request) is True

    await world.approve(request, "approver2")
    for who in ("approver1", "approver2", "approver3", "admin"):
        assert await _can_approve(world, who, request) is False, who

    _, other = await pending(world)
    await expire_by_time(other)
    for who in ("approver1", "admin"):
        assert await _can_approve(world, who, other) is False, who


# --- approvalRequests filters -----------------------------------------------------------------


async def _listed(world, who: str, filter_: dict | None) -> set[str]:
    data = await world[who].ok(LIST, {"f": filter_})
    connection = data["approvalRequests"]
    ids = [e["node"]["id"] for e in connection["edges"]]
    assert connection["totalCount"] == len(ids)
    assert len(set(ids)) == len(ids)
    return set(ids)


@pytest.fixture
async def requests(world):
    """A spread of requests:
    - r1: shop/prod PENDING (dev built, dev2 requested)
    - r2: shop/prod PENDING with approver1's approval
    - r3: billing/prod PENDING
    - r4: shop/prod APPROVED (approver1, approver2)
    - r5: shop/prod PENDING but past its expiry (reads EXPIRED)
    - r6: shop/prod PENDING built by approver3 (given build-and-deploy), requested by dev
    - r7: shop/prod REJECTED by approver2
    """
    await grant(world, "approver3", "BUILD_AND_DEPLOY", "shop", "*")
    r = {}
    _, r["r1"] = await pending(world)
    _, r["r2"] = await pending(world)
    await world.approve(r["r2"], "approver1")
    _, r["r3"] = await pending(world, "billing_dev", "billing_dev", "billing/prod")
    _, r["r4"] = await world.approved_image("shop/prod")
    _, r["r5"] = await pending(world)
    await expire_by_time(r["r5"])
    _, r["r6"] = await pending(world, builder="approver3", requester="dev")
    _, r["r7"] = await pending(world)
    await world["approver2"].ok(REJECT, {"id": r["r7"], "r": "no"})
    return r


async def test_awaiting_my_approval_lists_pending_requests_the_caller_may_approve(world, requests):
    """approvalRequests(filter: {awaitingMyApproval: true}): PENDING (not expired) requests on
    the caller's approver scopes, minus the ones they built, requested or already approved."""
    r = requests
    expected = {
        "approver1": {"r1", "r6"},
        "approver2": {"r1", "r2", "r6"},
        "approver3": {"r1", "r2"},
        "prod_approver": {"r1", "r2", "r6"},
        "admin": {"r1", "r2", "r3", "r6"},
        "billing_approver": {"r3"},
        "dev": set(),
        "viewer": set(),
        "nobody": set(),
    }
    for who, names in expected.items():
        got = await _listed(world, who, {"awaitingMyApproval": True})
        assert got == {r[n] for n in names}, who
    # every listed request is one the caller may approve
    data = await world["approver2"].ok(LIST, {"f": {"awaitingMyApproval": True}})
    assert all(e["node"]["viewerCanApprove"] for e in data["approvalRequests"]["edges"])
    # combined with the other filters
    assert await _listed(world, "admin", {"states": ["APPROVED"], "awaitingMyApproval": True}) == set()
    assert await _listed(
        world, "admin", {"pipelineId": world.ids["billing/prod"], "awaitingMyApproval": True}
    ) == {r["r3"]}
    assert await _listed(
        world, "approver1", {"pipelineId": world.ids["shop/prod"], "awaitingMyApproval": True}
    ) == {r["r1"], r["r6"]}
    # awaitingMyApproval: false filters nothing
    assert await _listed(world, "approver1", {"awaitingMyApproval": False}) == await _listed(
        world, "approver1", None
    )


async def test_approval_requests_states_and_pipeline_filters(world, requests):
    """approvalRequests(filter: {states, pipelineId}): states by effective state, so a request past
    its expiry is EXPIRED, not PENDING (R15); pipelineId keeps that pipeline's requests; only
    visible requests are listed (R1); a wrong-kind pipelineId is BAD_USER_INPUT."""
    r = requests
    cases = [
        (["PENDING"], {"r1", "r2", "r3", "r6"}),
        (["APPROVED"], {"r4"}),
        (["EXPIRED"], {"r5"}),
        (["REJECTED"], {"r7"}),
        (["CANCELLED", "CONSUMED"], set()),
        (["PENDING", "APPROVED"], {"r1", "r2", "r3", "r4", "r6"}),
    ]
    for states, names in cases:
        assert await _listed(world, "admin", {"states": states}) == {r[n] for n in names}, states
    assert await _listed(world, "admin", None) == set(r.values())
    # dev sees shop only
    assert await _listed(world, "dev", {"states": ["PENDING"]}) == {r[n] for n in ("r1", "r2", "r6")}
    assert await _listed(world, "billing_dev", None) == {r["r3"]}
    # pipelineId: only that pipeline's requests, and only if the caller can see it
    shop_prod, billing_prod = world.ids["shop/prod"], world.ids["billing/prod"]
    assert await _listed(world, "admin", {"pipelineId": billing_prod}) == {r["r3"]}
    assert await _listed(world, "admin", {"pipelineId": shop_prod}) == {
        r[n] for n in ("r1", "r2", "r4", "r5", "r6", "r7")
    }
    assert await _listed(world, "admin", {"pipelineId": world.ids["shop/staging"]}) == set()
    assert await _listed(world, "admin", {"pipelineId": shop_prod, "states": ["APPROVED"]}) == {r["r4"]}
    assert await _listed(world, "dev", {"pipelineId": billing_prod}) == set()
    assert await world["admin"].code(LIST, {"f": {"pipelineId": world.ids["shop"]}}) == "BAD_USER_INPUT"


async def test_r13_an_approved_request_not_yet_used_can_still_be_rejected(world):
    """An approver who spots a problem after approval can stop the deploy: rejecting an
    APPROVED request makes it REJECTED, the image leaves "Select Image" and deploying it
    is NOT_APPROVED (our reading where R13/R16 are silent)."""
    image, request = await world.approved_image("shop/prod")
    data = await world["approver3"].ok(REJECT, {"id": request, "r": "CVE found after approval"})
    assert data["rejectRequest"]["state"] == "REJECTED"

    data = await world["dev"].ok(PIPELINE, {"p": world.ids["shop/prod"]})
    assert data["pipeline"]["deployableImages"] == []
    error = await world["dev"].fails(DEPLOY, {"i": {"pipelineId": world.ids["shop/prod"], "imageId": image}})
    assert error["extensions"]["code"] == "NOT_APPROVED"
