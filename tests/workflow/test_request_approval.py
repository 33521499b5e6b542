"""requestApproval and eligibleApprovers at the GraphQL boundary: R3, R6, R7, R8, R9."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from greenlight.models import (
    ApprovalRequest,
    ApprovalState,
    Deployment,
    DeploymentStatus,
    NamedApprover,
)

REQUEST = """
mutation($i: RequestApprovalInput!) {
  requestApproval(input: $i) {
    id state requiredApprovals requestedAt expiresAt comment
    requestedBy { id }
    image { id }
    pipeline { id }
    notifiedApprovers { id }
  }
}"""

GET_REQUEST = """
query($id: ID!) {
  approvalRequest(id: $id) {
    id state requiredApprovals requestedAt expiresAt
    approvals { user { id } }
    notifiedApprovers { id }
  }
}"""

ELIGIBLE = "query($p: ID!, $i: ID!) { eligibleApprovers(pipelineId: $p, imageId: $i) { id email } }"

CANCEL = "mutation($id: ID!) { cancelApprovalRequest(id: $id) { id state } }"
REJECT = "mutation($id: ID!, $r: String!) { rejectRequest(id: $id, reason: $r) { id state } }"

UPDATE_POLICY = """
mutation($p: ID!, $i: ApprovalPolicyInput!) {
  updateApprovalPolicy(pipelineId: $p, input: $i) {
    approvalPolicy { requiredApprovals ttlHours }
  }
}"""

GRANT = "mutation($i: RoleBindingInput!) { grantRole(input: $i) { id } }"
REVOKE = "mutation($id: ID!) { revokeRole(id: $id) { id } }"


def pk(global_id: str) -> int:
    return int(global_id.rpartition(":")[2])


def request_input(world, image_id: str, pipeline: str = "shop/prod", approvers=(), **extra) -> dict:
    return {
        "i": {
            "pipelineId": world.ids[pipeline],
            "imageId": image_id,
            "approverIds": list(approvers),
            **extra,
        }
    }


def user_ids(world, *names: str) -> set[str]:
    return {world[n].user_id for n in names}


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def grant(world, user: str, role: str, application: str = "*", environment: str = "*") -> str:
    data = await world["admin"].ok(
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
    return data["grantRole"]["id"]


async def set_policy(world, pipeline: str, required: int, ttl: int | None) -> None:
    await world["admin"].ok(
        UPDATE_POLICY,
        {"p": world.ids[pipeline], "i": {"requiredApprovals": required, "ttlHours": ttl}},
    )


async def live_requests(image_id: str, pipeline_id: str) -> list[ApprovalRequest]:
    return await ApprovalRequest.filter(
        image_id=pk(image_id),
        pipeline_id=pk(pipeline_id),
        state__in=[ApprovalState.PENDING, ApprovalState.APPROVED],
    )


# --- R3: who may request ----------------------------------------------------------------------


async def test_r3_build_and_deploy_and_super_admin_may_request(world):
    """R3: build-and-deploy on the scope, or super-admin, may request approval."""
    image = await world.register_image("dev")
    data = await world["dev"].ok(REQUEST, request_input(world, image, comment="ship it"))
    created = data["requestApproval"]
    assert created["state"] == "PENDING"
    assert created["requestedBy"]["id"] == world["dev"].user_id
    assert created["image"]["id"] == image
    assert created["pipeline"]["id"] == world.ids["shop/prod"]
    assert created["comment"] == "ship it"
    stored = await ApprovalRequest.get(id=pk(created["id"]))
    assert stored.state == ApprovalState.PENDING
    assert stored.requested_by_id == pk(world["dev"].user_id)

    other = await world.register_image("dev")
    data = await world["admin"].ok(REQUEST, request_input(world, other))
    assert data["requestApproval"]["requestedBy"]["id"] == world["admin"].user_id

    billing_image = await world.register_image("billing_dev", "billing")
    data = await world["billing_dev"].ok(REQUEST, request_input(world, billing_image, "billing/prod"))
    assert data["requestApproval"]["state"] == "PENDING"
    assert await ApprovalRequest.all().count() == 3


async def test_r3_callers_without_build_and_deploy_are_refused(world, unchanged):
    """R3 (with R1): a caller who sees the pipeline but lacks build-and-deploy gets FORBIDDEN;
    one who cannot see it at all gets NOT_FOUND. Nothing is created."""
    image = await world.register_image("dev")
    variables = request_input(world, image)
    async with unchanged():
        for who in ("viewer", "approver1", "prod_approver"):
            assert await world[who].code(REQUEST, variables) == "FORBIDDEN", who
        for who in ("nobody", "billing_dev", "billing_approver"):
            assert await world[who].code(REQUEST, variables) == "NOT_FOUND", who
        assert await world.anonymous.code(REQUEST, variables) == "UNAUTHENTICATED"
    assert await ApprovalRequest.all().count() == 0


async def test_r3_build_and_deploy_must_cover_the_pipeline_environment(world, unchanged):
    """R3: build-and-deploy on shop/staging does not allow requesting on shop/prod (FORBIDDEN
    when the caller sees shop/prod through another role); build-and-deploy on */prod does."""
    await grant(world, "viewer", "BUILD_AND_DEPLOY", "shop", "staging")
    await grant(world, "nobody", "BUILD_AND_DEPLOY", "*", "prod")
    image = await world.register_image("dev")
    async with unchanged():
        assert await world["viewer"].code(REQUEST, request_input(world, image)) == "FORBIDDEN"
    data = await world["nobody"].ok(REQUEST, request_input(world, image))
    assert data["requestApproval"]["requestedBy"]["id"] == world["nobody"].user_id
    assert len(await live_requests(image, world.ids["shop/prod"])) == 1


# --- R6: what may be requested ----------------------------------------------------------------


async def test_r6_image_of_another_application_is_bad_user_input(world, unchanged):
    """R6: an image must belong to the pipeline's application (BAD_USER_INPUT); a caller who
    cannot see the other application's image gets NOT_FOUND (R1); malformed or wrong-kind ids are
    BAD_USER_INPUT."""
    billing_image = await world.register_image("billing_dev", "billing")
    shop_image = await world.register_image("dev")
    async with unchanged():
        assert await world["admin"].code(REQUEST, request_input(world, billing_image)) == "BAD_USER_INPUT"
        assert (
            await world["admin"].code(REQUEST, request_input(world, shop_image, "billing/prod"))
            == "BAD_USER_INPUT"
        )
        assert await world["dev"].code(REQUEST, request_input(world, billing_image)) == "NOT_FOUND"
        # a wrong-kind or malformed pipelineId / imageId is BAD_USER_INPUT
        for pipeline_id, image_id in (
            (world.ids["shop"], shop_image),
            ("Pipeline:abc", shop_image),
            (world.ids["shop/prod"], world.ids["shop/prod"]),
            (world.ids["shop/prod"], "nonsense"),
        ):
            variables = {"i": {"pipelineId": pipeline_id, "imageId": image_id}}
            assert await world["dev"].code(REQUEST, variables) == "BAD_USER_INPUT", (pipeline_id, image_id)


async def test_r6_active_image_is_conflict(world, unchanged):
    """R6: the pipeline's active image cannot be requested again (CONFLICT); once its deployment
    is no longer active (FAILED), it can."""
    image, _ = await world.approved_image("shop/prod")
    deployment = await world.deploy(image, "shop/prod", who="dev")
    assert deployment["status"] == "PROGRESSING"
    async with unchanged():
        assert await world["dev2"].code(REQUEST, request_input(world, image)) == "CONFLICT"

    await Deployment.filter(id=pk(deployment["id"])).update(status=DeploymentStatus.FAILED)
    data = await world["dev2"].ok(REQUEST, request_input(world, image))
    assert data["requestApproval"]["state"] == "PENDING"


async def test_r6_second_live_request_is_conflict_naming_the_first(world, unchanged):
    """R6: one live (PENDING or APPROVED) request per (image, pipeline); the CONFLICT names the
    live one in extensions.existingId, whoever asks; the same image on another pipeline is fine."""
    image = await world.register_image("dev")
    first = await world.request_approval(image, "shop/prod", who="dev")
    async with unchanged():
        for who in ("dev", "dev2", "admin"):
            error = await world[who].fails(REQUEST, request_input(world, image))
            assert error["extensions"]["code"] == "CONFLICT", who
            assert error["extensions"]["existingId"] == first, who

    await world.approve(first, "approver1")
    assert (await world.approve(first, "approver2"))["state"] == "APPROVED"
    async with unchanged():
        error = await world["dev2"].fails(REQUEST, request_input(world, image))
        assert error["extensions"]["code"] == "CONFLICT"
        assert error["extensions"]["existingId"] == first
    live = await live_requests(image, world.ids["shop/prod"])
    assert [r.id for r in live] == [pk(first)]
    # the limit is per (image, pipeline), not per image
    await set_policy(world, "shop/staging", 1, None)
    second = await world.request_approval(image, "shop/staging", who="dev")
    assert first != second
    assert len(await live_requests(image, world.ids["shop/prod"])) == 1
    assert len(await live_requests(image, world.ids["shop/staging"])) == 1


@pytest.mark.parametrize("ending", ["cancelled", "rejected", "expired"])
async def test_r6_new_request_allowed_once_the_first_is_closed(world, ending):
    """R6: after the live request is CANCELLED, REJECTED or EXPIRED (R15, by time), a new
    request for the same (image, pipeline) is accepted and the old one keeps its state."""
    image = await world.register_image("dev")
    first = await world.request_approval(image, "shop/prod", who="dev2")
    if ending == "cancelled":
        await world["dev2"].ok(CANCEL, {"id": first})
        expected = "CANCELLED"
    elif ending == "rejected":
        await world["approver1"].ok(REJECT, {"id": first, "r": "no"})
        expected = "REJECTED"
    else:
        past = datetime.now(UTC) - timedelta(minutes=5)
        await ApprovalRequest.filter(id=pk(first)).update(expires_at=past)
        expected = "EXPIRED"

    data = await world["dev2"].ok(REQUEST, request_input(world, image))
    second = data["requestApproval"]
    assert second["id"] != first
    assert second["state"] == "PENDING"
    old = await world["dev2"].ok(GET_REQUEST, {"id": first})
    assert old["approvalRequest"]["state"] == expected
    live = await live_requests(image, world.ids["shop/prod"])
    assert [r.id for r in live] == [pk(second["id"])]


async def test_r6_pipeline_without_required_approvals_is_bad_user_input(world, unchanged):
    """R6: requesting on a pipeline with requiredApprovals = 0 (shop/staging) is BAD_USER_INPUT."""
    image = await world.register_image("dev")
    async with unchanged():
        assert (
            await world["dev"].code(REQUEST, request_input(world, image, "shop/staging")) == "BAD_USER_INPUT"
        )
        assert (
            await world["admin"].code(REQUEST, request_input(world, image, "shop/staging"))
            == "BAD_USER_INPUT"
        )


# --- R7: the snapshot -------------------------------------------------------------------------


async def test_r7_required_approvals_and_expiry_are_snapshotted(world):
    """R7: requiredApprovals and expiresAt (requestedAt + ttlHours) are fixed when the request is
    made; lowering, raising or removing the policy afterwards does not alter them."""
    image = await world.register_image("dev")
    data = await world["dev2"].ok(REQUEST, request_input(world, image))
    created = data["requestApproval"]
    assert created["requiredApprovals"] == 2
    requested_at, expires_at = parse(created["requestedAt"]), parse(created["expiresAt"])
    assert expires_at - requested_at == timedelta(hours=24)
    stored = await ApprovalRequest.get(id=pk(created["id"]))
    assert stored.required_approvals == 2
    assert stored.expires_at - stored.requested_at == timedelta(hours=24)

    await set_policy(world, "shop/prod", 1, None)
    read = (await world["dev2"].ok(GET_REQUEST, {"id": created["id"]}))["approvalRequest"]
    assert read["requiredApprovals"] == 2
    assert parse(read["expiresAt"]) == expires_at
    # one approval no longer satisfies the new policy's count, but the snapshot's 2 still rules
    assert (await world.approve(created["id"], "approver1"))["state"] == "PENDING"

    await set_policy(world, "shop/prod", 5, 1)
    read = (await world["dev2"].ok(GET_REQUEST, {"id": created["id"]}))["approvalRequest"]
    assert read["requiredApprovals"] == 2
    assert parse(read["expiresAt"]) == expires_at
    assert (await world.approve(created["id"], "approver2"))["state"] == "APPROVED"

    stored = await ApprovalRequest.get(id=pk(created["id"]))
    assert stored.required_approvals == 2
    assert stored.expires_at == expires_at
    assert stored.state == ApprovalState.APPROVED


async def test_r7_new_requests_follow_the_new_policy(world):
    """R7: a request made after a policy change snapshots the new values; a pipeline without
    ttlHours gives expiresAt null, and giving it a ttl later leaves that request without expiry."""
    image = await world.register_image("billing_dev", "billing")
    data = await world["billing_dev"].ok(REQUEST, request_input(world, image, "billing/prod"))
    old = data["requestApproval"]
    assert old["requiredApprovals"] == 1
    assert old["expiresAt"] is None

    await set_policy(world, "billing/prod", 3, 2)
    read = (await world["billing_dev"].ok(GET_REQUEST, {"id": old["id"]}))["approvalRequest"]
    assert read["requiredApprovals"] == 1
    assert read["expiresAt"] is None
    assert (await ApprovalRequest.get(id=pk(old["id"]))).expires_at is None

    other = await world.register_image("billing_dev", "billing")
    data = await world["billing_dev"].ok(REQUEST, request_input(world, other, "billing/prod"))
    new = data["requestApproval"]
    assert new["requiredApprovals"] == 3
    assert parse(new["expiresAt"]) - parse(new["requestedAt"]) == timedelta(hours=2)


# --- R8: named approvers ----------------------------------------------------------------------


async def test_r8_named_approvers_appear_in_notified_approvers(world):
    """R8: the approvers named by the requester are the request's notifiedApprovers (none named:
    none listed; one named twice: listed once)."""
    image = await world.register_image("dev")
    named = ("approver1", "prod_approver", "admin2")
    data = await world["dev2"].ok(
        REQUEST, request_input(world, image, approvers=[world[n].user_id for n in named])
    )
    created = data["requestApproval"]
    assert {u["id"] for u in created["notifiedApprovers"]} == user_ids(world, *named)
    read = (await world["approver1"].ok(GET_REQUEST, {"id": created["id"]}))["approvalRequest"]
    assert {u["id"] for u in read["notifiedApprovers"]} == user_ids(world, *named)
    rows = await NamedApprover.filter(request_id=pk(created["id"])).values_list("user_id", flat=True)
    assert sorted(rows) == sorted(pk(world[n].user_id) for n in named)

    plain = await world.register_image("dev")
    data = await world["dev2"].ok(REQUEST, request_input(world, plain))
    assert data["requestApproval"]["notifiedApprovers"] == []
    assert await NamedApprover.filter(request_id=pk(data["requestApproval"]["id"])).count() == 0
    # a user named twice is one named approver
    twice = await world.register_image("dev")
    approver = world["approver1"].user_id
    data = await world["dev2"].ok(REQUEST, request_input(world, twice, approvers=[approver, approver]))
    created = data["requestApproval"]
    assert [u["id"] for u in created["notifiedApprovers"]] == [approver]
    assert await NamedApprover.filter(request_id=pk(created["id"])).count() == 1


async def test_r8_ineligible_named_approver_is_refused_and_nothing_created(world, unchanged):
    """R8, R9: naming anyone who is not an eligible approver is BAD_USER_INPUT and creates
    nothing: no role to approve, approver of another scope, the builder, the caller, a user
    that does not exist, or one ineligible among eligible ones."""
    admin_image = await world.register_image("admin")
    cases = [
        ("dev2", admin_image, ["viewer"]),
        ("dev2", admin_image, ["billing_approver"]),
        ("dev2", admin_image, ["nobody"]),
        ("dev2", admin_image, ["dev"]),  # build-and-deploy only
        ("dev2", admin_image, ["admin"]),  # super-admin, but the image's builder
        ("admin2", admin_image, ["admin2"]),  # super-admin, but the caller
        ("dev2", admin_image, ["approver1", "viewer", "approver2"]),
    ]
    async with unchanged():
        for who, image, names in cases:
            variables = request_input(world, image, approvers=[world[n].user_id for n in names])
            assert await world[who].code(REQUEST, variables) == "BAD_USER_INPUT", (who, names)
        for bogus in ("User:999999", world.ids["shop"], "garbage"):
            variables = request_input(world, admin_image, approvers=[world["approver1"].user_id, bogus])
            assert await world["dev2"].code(REQUEST, variables) == "BAD_USER_INPUT", bogus
    assert await ApprovalRequest.all().count() == 0
    assert await NamedApprover.all().count() == 0


async def test_r8_every_eligible_approver_may_be_named(world):
    """R8: eligibleApprovers lists exactly who the caller could name: naming them all works."""
    image = await world.register_image("dev")
    data = await world["dev2"].ok(ELIGIBLE, {"p": world.ids["shop/prod"], "i": image})
    eligible = [u["id"] for u in data["eligibleApprovers"]]
    assert eligible
    data = await world["dev2"].ok(REQUEST, request_input(world, image, approvers=eligible))
    assert {u["id"] for u in data["requestApproval"]["notifiedApprovers"]} == set(eligible)


# --- R9: eligible approvers -------------------------------------------------------------------


async def test_r9_eligible_approvers_are_scope_approvers_and_super_admins(world):
    """R9: image-approvers on shop/prod (shop/* and shop/prod bindings) plus super-admins;
    never build-and-deploy users, viewers, other applications' approvers, or nobody."""
    image = await world.register_image("dev")
    data = await world["dev2"].ok(ELIGIBLE, {"p": world.ids["shop/prod"], "i": image})
    ids = [u["id"] for u in data["eligibleApprovers"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == user_ids(
        world, "approver1", "approver2", "approver3", "prod_approver", "admin", "admin2"
    )


async def test_r9_builder_and_caller_are_left_out_super_admins_included(world):
    """R9: the builder and the caller are excluded, even when they are super-admins."""
    image = await world.register_image("admin")
    data = await world["admin2"].ok(ELIGIBLE, {"p": world.ids["shop/prod"], "i": image})
    assert {u["id"] for u in data["eligibleApprovers"]} == user_ids(
        world, "approver1", "approver2", "approver3", "prod_approver"
    )
    # an approver who also builds: excluded as builder when dev asks
    await grant(world, "approver1", "BUILD_AND_DEPLOY", "shop", "*")
    own = await world.register_image("approver1")
    data = await world["dev"].ok(ELIGIBLE, {"p": world.ids["shop/prod"], "i": own})
    assert {u["id"] for u in data["eligibleApprovers"]} == user_ids(
        world, "approver2", "approver3", "prod_approver", "admin", "admin2"
    )
    # and as caller when they ask themselves
    dev_image = await world.register_image("dev")
    data = await world["approver1"].ok(ELIGIBLE, {"p": world.ids["shop/prod"], "i": dev_image})
    assert {u["id"] for u in data["eligibleApprovers"]} == user_ids(
        world, "approver2", "approver3", "prod_approver", "admin", "admin2"
    )


async def test_r9_prod_approver_only_for_shop_prod_billing_approver_never_for_shop(world):
    """R9: prod_approver (image-approver on shop/prod) is eligible on shop/prod only;
    billing_approver is eligible on billing, never on shop."""
    shop_image = await world.register_image("dev")
    staging = await world["dev2"].ok(ELIGIBLE, {"p": world.ids["shop/staging"], "i": shop_image})
    assert {u["id"] for u in staging["eligibleApprovers"]} == user_ids(
        world, "approver1", "approver2", "approver3", "admin", "admin2"
    )
    prod = await world["dev2"].ok(ELIGIBLE, {"p": world.ids["shop/prod"], "i": shop_image})
    prod_ids = {u["id"] for u in prod["eligibleApprovers"]}
    assert world["prod_approver"].user_id in prod_ids
    assert world["billing_approver"].user_id not in prod_ids

    billing_image = await world.register_image("billing_dev", "billing")
    billing = await world["billing_dev"].ok(ELIGIBLE, {"p": world.ids["billing/prod"], "i": billing_image})
    assert {u["id"] for u in billing["eligibleApprovers"]} == user_ids(
        world, "billing_approver", "admin", "admin2"
    )


async def test_r9_eligible_approvers_follow_role_changes(world):
    """R9 with R5: granting image-approver makes a user eligible at once; revoking removes them."""
    image = await world.register_image("dev")
    variables = {"p": world.ids["shop/prod"], "i": image}
    binding = await grant(world, "viewer", "IMAGE_APPROVER", "*", "prod")
    data = await world["dev2"].ok(ELIGIBLE, variables)
    assert world["viewer"].user_id in {u["id"] for u in data["eligibleApprovers"]}
    await world["admin"].ok(REVOKE, {"id": binding})
    data = await world["dev2"].ok(ELIGIBLE, variables)
    assert world["viewer"].user_id not in {u["id"] for u in data["eligibleApprovers"]}


async def test_r9_eligible_approvers_refusals(world):
    """eligibleApprovers: a pipeline the caller cannot see is NOT_FOUND (R1); an image of another
    application is BAD_USER_INPUT (R6); a wrong-kind id is BAD_USER_INPUT."""
    shop_image = await world.register_image("dev")
    billing_image = await world.register_image("billing_dev", "billing")
    assert await world["nobody"].code(ELIGIBLE, {"p": world.ids["shop/prod"], "i": shop_image}) == "NOT_FOUND"
    assert (
        await world["billing_dev"].code(ELIGIBLE, {"p": world.ids["shop/prod"], "i": shop_image})
        == "NOT_FOUND"
    )
    assert (
        await world["admin"].code(ELIGIBLE, {"p": world.ids["shop/prod"], "i": billing_image})
        == "BAD_USER_INPUT"
    )
    assert await world["dev"].code(ELIGIBLE, {"p": world.ids["shop"], "i": shop_image}) == "BAD_USER_INPUT"
