"""Cancelling (R14), letting an approval expire (R15), states that refuse an action (R16),
approval policy changes (R2, R7, R18) and the audit trail of closings (R25)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from greenlight.models import ApprovalRequest, ApprovalState, AuditEvent, Pipeline

CANCEL = "mutation($id: ID!) { cancelApprovalRequest(id: $id) { id state } }"
EXPIRE = "mutation($id: ID!) { expireApproval(id: $id) { id state } }"
APPROVE = "mutation($id: ID!) { approveRequest(id: $id) { id state } }"
REJECT = "mutation($id: ID!, $r: String!) { rejectRequest(id: $id, reason: $r) { id state } }"
DEPLOY = """mutation($i: DeployImageInput!) {
  deployImage(input: $i) { id status image { id } approvalRequest { id state } }
}"""
REQUEST = "mutation($i: RequestApprovalInput!) { requestApproval(input: $i) { id state } }"
READ_REQUEST = """query($id: ID!) {
  approvalRequest(id: $id) { id state requiredApprovals expiresAt viewerCanApprove }
}"""
REQUESTS = """query($f: ApprovalRequestFilter) {
  approvalRequests(filter: $f, first: 100) { totalCount edges { node { id state } } }
}"""
DEPLOYABLE = """query($p: ID!) {
  pipeline(id: $p) { deployableImages { id } }
}"""
APPROVAL_STATE = """query($app: ID!, $p: ID!) {
  images(applicationId: $app, first: 100) { edges { node { id approvalState(pipelineId: $p) } } }
}"""
UPDATE_POLICY = """mutation($p: ID!, $i: ApprovalPolicyInput!) {
  updateApprovalPolicy(pipelineId: $p, input: $i) {
    id approvalPolicy { requiredApprovals ttlHours approversCanDeploy }
  }
}"""


def pk(global_id: str) -> int:
    return int(global_id.split(":")[1])


async def stored_state(request_id: str) -> ApprovalState:
    return ApprovalState((await ApprovalRequest.get(id=pk(request_id))).state)


async def read_state(world, request_id: str, who: str = "admin") -> str:
    data = await world[who].ok(READ_REQUEST, {"id": request_id})
    return data["approvalRequest"]["state"]


async def last_audit(request_id: str) -> AuditEvent:
    event = (
        await AuditEvent.filter(object_type="ApprovalRequest", object_id=pk(request_id))
        .order_by("-id")
        .first()
    )
    assert event is not None, "no audit event for the request"
    return event


async def pending_request(world, pipeline: str = "shop/prod", who: str = "dev2") -> tuple[str, str]:
    """An image built by dev and a PENDING request for it made by `who`; (image, request)."""
    image = await world.register_image("dev")
    request = await world.request_approval(image, pipeline, who=who)
    return image, request


async def deploy_code(world, image: str, pipeline: str = "shop/prod", who: str = "dev") -> str:
    return await world[who].code(DEPLOY, {"i": {"pipelineId": world.ids[pipeline], "imageId": image}})


async def deployable(world, pipeline: str = "shop/prod", who: str = "dev") -> list[str]:
    data = await world[who].ok(DEPLOYABLE, {"p": world.ids[pipeline]})
    return [i["id"] for i in data["pipeline"]["deployableImages"]]


async def approval_state_of(world, image: str, pipeline: str = "shop/prod", who: str = "dev") -> str | None:
    data = await world[who].ok(APPROVAL_STATE, {"app": world.ids["shop"], "p": world.ids[pipeline]})
    states = {e["node"]["id"]: e["node"]["approvalState"] for e in data["images"]["edges"]}
    return states[image]


async def set_policy(
    world, pipeline: str, required: int, ttl: int | None, can_deploy: bool = False, who="admin"
):
    return await world[who].ok(
        UPDATE_POLICY,
        {
            "p": world.ids[pipeline],
            "i": {"requiredApprovals": required, "ttlHours": ttl, "approversCanDeploy": can_deploy},
        },
    )


async def make_expired(request_id: str) -> None:
    past = datetime.now(UTC) - timedelta(minutes=5)
    await ApprovalRequest.filter(id=pk(request_id)).update(expires_at=past)


# --- R14: cancelling -------------------------------------------------------------------


async def test_r14_requester_cancels_pending_request(world):
    _, request = await pending_request(world)
    data = await world["dev2"].ok(CANCEL, {"id": request})
    assert data["cancelApprovalRequest"] == {"id": request, "state": "CANCELLED"}
    assert await stored_state(request) == ApprovalState.CANCELLED
    assert await read_state(world, request, "viewer") == "CANCELLED"


async def test_r14_requester_cancels_approved_request_and_it_is_no_longer_deployable(world):
    image, request = await world.approved_image()
    assert image in await deployable(world)
    data = await world["dev2"].ok(CANCEL, {"id": request})
    assert data["cancelApprovalRequest"]["state"] == "CANCELLED"
    assert await stored_state(request) == ApprovalState.CANCELLED
    assert image not in await deployable(world)
    assert await approval_state_of(world, image) == "CANCELLED"
    assert await deploy_code(world, image) == "NOT_APPROVED"


async def test_r14_super_admin_cancels_someone_elses_request(world):
    _, pending = await pending_request(world)
    _, approved = await world.approved_image()
    for request in (pending, approved):
        data = await world["admin2"].ok(CANCEL, {"id": request})
        assert data["cancelApprovalRequest"]["state"] == "CANCELLED"
        assert await stored_state(request) == ApprovalState.CANCELLED


async def test_r14_others_who_see_the_request_get_forbidden(world, unchanged):
    """dev built the image and holds build-and-deploy, but did not request it: FORBIDDEN."""
    _, pending = await pending_request(world)
    _, approved = await world.approved_image()
    async with unchanged():
        for who in ("dev", "approver1", "approver2", "prod_approver", "viewer"):
            for request in (pending, approved):
                assert await world[who].code(CANCEL, {"id": request}) == "FORBIDDEN", who
    assert await stored_state(pending) == ApprovalState.PENDING
    assert await stored_state(approved) == ApprovalState.APPROVED


async def test_r14_r15_r1_users_who_cannot_see_the_request_get_not_found(world, unchanged):
    _, request = await world.approved_image()
    async with unchanged():
        for who in ("nobody", "billing_dev", "billing_approver"):
            assert await world[who].code(CANCEL, {"id": request}) == "NOT_FOUND", who
            assert await world[who].code(EXPIRE, {"id": request}) == "NOT_FOUND", who


async def test_r14_r16_cancelling_twice_is_invalid_state(world, unchanged):
    _, request = await pending_request(world)
    await world["dev2"].ok(CANCEL, {"id": request})
    async with unchanged():
        assert await world["dev2"].code(CANCEL, {"id": request}) == "INVALID_STATE"
        assert await world["admin"].code(CANCEL, {"id": request}) == "INVALID_STATE"
    assert await stored_state(request) == ApprovalState.CANCELLED


async def test_r14_a_new_request_is_allowed_after_cancelling(world):
    image, request = await pending_request(world)
    await world["dev2"].ok(CANCEL, {"id": request})
    again = await world.request_approval(image, "shop/prod", who="dev2")
    assert again != request
    assert await read_state(world, again) == "PENDING"
    assert await approval_state_of(world, image) == "PENDING"


async def test_r25_cancel_is_audited_with_actor_and_states(world):
    _, pending = await pending_request(world)
    _, approved = await world.approved_image()
    await world["dev2"].ok(CANCEL, {"id": pending})
    await world["admin"].ok(CANCEL, {"id": approved})

    event = await last_audit(pending)
    assert event.actor_id == pk(world["dev2"].user_id)
    assert event.before["state"] == "PENDING"
    assert event.after["state"] == "CANCELLED"
    assert event.at is not None

    event = await last_audit(approved)
    assert event.actor_id == pk(world["admin"].user_id)
    assert event.before["state"] == "APPROVED"
    assert event.after["state"] == "CANCELLED"


# --- R15: expiring ---------------------------------------------------------------------


async def test_r15_requester_lets_an_approved_request_expire(world):
    image, request = await world.approved_image()
    data = await world["dev2"].ok(EXPIRE, {"id": request})
    assert data["expireApproval"] == {"id": request, "state": "EXPIRED"}
    assert await stored_state(request) == ApprovalState.EXPIRED
    assert await read_state(world, request) == "EXPIRED"
    assert image not in await deployable(world)
    assert await deploy_code(world, image) == "NOT_APPROVED"


async def test_r15_super_admin_lets_an_approved_request_expire(world):
    _, request = await world.approved_image()
    data = await world["admin2"].ok(EXPIRE, {"id": request})
    assert data["expireApproval"]["state"] == "EXPIRED"
    assert await stored_state(request) == ApprovalState.EXPIRED


async def test_r15_r16_expiring_a_pending_request_is_invalid_state(world, unchanged):
    _, request = await pending_request(world)
    async with unchanged():
        assert await world["dev2"].code(EXPIRE, {"id": request}) == "INVALID_STATE"
        assert await world["admin"].code(EXPIRE, {"id": request}) == "INVALID_STATE"
    assert await stored_state(request) == ApprovalState.PENDING


async def test_r15_others_get_forbidden_on_expire(world, unchanged):
    _, request = await world.approved_image()
    async with unchanged():
        for who in ("dev", "approver1", "approver3", "viewer"):
            assert await world[who].code(EXPIRE, {"id": request}) == "FORBIDDEN", who
    assert await stored_state(request) == ApprovalState.APPROVED


async def test_r25_expire_is_audited_with_actor_and_states(world):
    _, request = await world.approved_image()
    await world["dev2"].ok(EXPIRE, {"id": request})
    event = await last_audit(request)
    assert event.actor_id == pk(world["dev2"].user_id)
    assert event.before["state"] == "APPROVED"
    assert event.after["state"] == "EXPIRED"
    assert event.at is not None


async def test_r15_passed_expiry_reads_expired_everywhere_before_any_sweep(world):
    """A PENDING and an APPROVED request whose expiresAt passed: EXPIRED in every read."""
    pending_image, pending = await pending_request(world)
    approved_image, approved = await world.approved_image()
    await make_expired(pending)
    await make_expired(approved)
    # Nothing has written the state yet.
    assert await stored_state(pending) == ApprovalState.PENDING
    assert await stored_state(approved) == ApprovalState.APPROVED

    for request in (pending, approved):
        data = await world["approver3"].ok(READ_REQUEST, {"id": request})
        assert data["approvalRequest"]["state"] == "EXPIRED"
        assert data["approvalRequest"]["viewerCanApprove"] is False

    data = await world["dev"].ok(REQUESTS, {"f": {"states": ["EXPIRED"]}})
    assert {e["node"]["id"] for e in data["approvalRequests"]["edges"]} == {pending, approved}
    assert {e["node"]["state"] for e in data["approvalRequests"]["edges"]} == {"EXPIRED"}
    assert data["approvalRequests"]["totalCount"] == 2
    data = await world["dev"].ok(REQUESTS, {"f": {"states": ["PENDING", "APPROVED"]}})
    assert data["approvalRequests"]["edges"] == []
    assert data["approvalRequests"]["totalCount"] == 0

    assert await approval_state_of(world, pending_image) == "EXPIRED"
    assert await approval_state_of(world, approved_image) == "EXPIRED"
    assert await deployable(world) == []


async def test_r15_expired_pending_request_is_not_awaiting_my_approval(world):
    _, live = await pending_request(world)
    _, expired = await pending_request(world)
    await make_expired(expired)
    data = await world["approver3"].ok(REQUESTS, {"f": {"awaitingMyApproval": True}})
    assert [e["node"]["id"] for e in data["approvalRequests"]["edges"]] == [live]


async def test_r15_r16_passed_expiry_refuses_approve_and_deploy(world, unchanged):
    _, pending = await pending_request(world)
    approved_image, approved = await world.approved_image()
    await make_expired(pending)
    await make_expired(approved)
    async with unchanged():
        assert await world["approver3"].code(APPROVE, {"id": pending}) == "INVALID_STATE"
        assert await deploy_code(world, approved_image) == "NOT_APPROVED"
        assert await deploy_code(world, approved_image, who="admin") == "NOT_APPROVED"


async def test_r15_r16_passed_expiry_refuses_cancel_and_expire(world, unchanged):
    _, pending = await pending_request(world)
    _, approved = await world.approved_image()
    await make_expired(pending)
    await make_expired(approved)
    async with unchanged():
        for request in (pending, approved):
            assert await world["dev2"].code(CANCEL, {"id": request}) == "INVALID_STATE"
            assert await world["dev2"].code(EXPIRE, {"id": request}) == "INVALID_STATE"


async def test_r15_new_request_allowed_once_the_old_one_expired(world):
    pending_image, pending = await pending_request(world)
    approved_image, approved = await world.approved_image()
    await make_expired(pending)
    await make_expired(approved)
    for image, old in ((pending_image, pending), (approved_image, approved)):
        data = await world["dev2"].ok(
            REQUEST, {"i": {"pipelineId": world.ids["shop/prod"], "imageId": image}}
        )
        new = data["requestApproval"]
        assert new["state"] == "PENDING"
        assert new["id"] != old
        assert await read_state(world, old) == "EXPIRED"
        assert await approval_state_of(world, image) == "PENDING"


async def test_r15_sweep_expired_writes_the_stored_state(world):
    from greenlight.workflow.approvals import sweep_expired

    _, pending = await pending_request(world)
    _, approved = await world.approved_image()
    _, fresh = await pending_request(world)
    await make_expired(pending)
    await make_expired(approved)

    assert await sweep_expired() == 2
    assert await stored_state(pending) == ApprovalState.EXPIRED
    assert await stored_state(approved) == ApprovalState.EXPIRED
    assert await stored_state(fresh) == ApprovalState.PENDING
    for request in (pending, approved):
        event = await last_audit(request)
        assert event.actor_id is None  # the system acted
        assert event.after["state"] == "EXPIRED"
        assert await read_state(world, request) == "EXPIRED"
    # Nothing more is due.
    assert await sweep_expired() == 0
    assert await stored_state(fresh) == ApprovalState.PENDING


async def test_r25_sweep_expired_audits_the_state_it_leaves(world):
    from greenlight.workflow.approvals import sweep_expired

    _, pending = await pending_request(world)
    _, approved = await world.approved_image()
    await make_expired(pending)
    await make_expired(approved)
    await sweep_expired()
    for request, before in ((pending, "PENDING"), (approved, "APPROVED")):
        event = await last_audit(request)
        assert event.before["state"] == before
        assert event.after["state"] == "EXPIRED"


# --- R16: actions on closed requests ---------------------------------------------------


async def test_r16_closed_requests_refuse_every_action(world, unchanged):
    """CANCELLED, EXPIRED (let expire), REJECTED and CONSUMED requests: INVALID_STATE."""
    _, cancelled = await pending_request(world)
    await world["dev2"].ok(CANCEL, {"id": cancelled})
    _, expired = await world.approved_image()
    await world["dev2"].ok(EXPIRE, {"id": expired})
    _, rejected = await pending_request(world)
    await world["approver1"].ok(REJECT, {"id": rejected, "r": "broken build"})
    consumed_image, consumed = await world.approved_image()
    await world.deploy(consumed_image)
    assert await stored_state(consumed) == ApprovalState.CONSUMED

    async with unchanged():
        for request in (cancelled, expired, rejected, consumed):
            assert await world["dev2"].code(CANCEL, {"id": request}) == "INVALID_STATE", request
            assert await world["dev2"].code(EXPIRE, {"id": request}) == "INVALID_STATE", request
            assert await world["approver3"].code(APPROVE, {"id": request}) == "INVALID_STATE", request
            assert await world["approver3"].code(REJECT, {"id": request, "r": "no"}) == "INVALID_STATE", (
                request
            )


# --- R18, R7, R2: approval policy changes ----------------------------------------------


async def test_r18_zero_required_approvals_cancels_live_requests(world):
    pending_image, pending = await pending_request(world)
    approved_image, approved = await world.approved_image()
    data = await set_policy(world, "shop/prod", 0, None)
    assert data["updateApprovalPolicy"]["approvalPolicy"] == {
        "requiredApprovals": 0,
        "ttlHours": None,
        "approversCanDeploy": False,
    }
    assert await stored_state(pending) == ApprovalState.CANCELLED
    assert await stored_state(approved) == ApprovalState.CANCELLED
    assert await read_state(world, pending) == "CANCELLED"
    assert await read_state(world, approved) == "CANCELLED"
    for request, before in ((pending, "PENDING"), (approved, "APPROVED")):
        event = await last_audit(request)
        assert event.actor_id == pk(world["admin"].user_id)
        assert event.before["state"] == before
        assert event.after["state"] == "CANCELLED"

    # Deploys now need no approval: every image of the application is deployable.
    assert set(await deployable(world)) == {pending_image, approved_image}
    deployment = await world.deploy(pending_image)
    assert deployment["status"] == "PROGRESSING"
    data = await world["dev"].ok(
        "query($id: ID!) { deployment(id: $id) { approvalRequest { id } } }", {"id": deployment["id"]}
    )
    assert data["deployment"]["approvalRequest"] is None
    # The cancelled request was not consumed by the deploy.
    assert await stored_state(pending) == ApprovalState.CANCELLED


async def test_r18_zero_required_approvals_leaves_other_pipelines_alone(world):
    _, shop_request = await pending_request(world)
    image = await world.register_image("billing_dev", "billing")
    billing_request = await world.request_approval(image, "billing/prod", who="billing_dev")
    await set_policy(world, "shop/prod", 0, None)
    assert await stored_state(shop_request) == ApprovalState.CANCELLED
    assert await stored_state(billing_request) == ApprovalState.PENDING


async def test_r18_r7_raising_required_approvals_keeps_live_requests_and_snapshot(world):
    approved_image, approved = await world.approved_image()
    pending_image, pending = await pending_request(world)
    await world.approve(pending, "approver1")
    await set_policy(world, "shop/prod", 4, 24)

    assert await stored_state(approved) == ApprovalState.APPROVED
    assert await stored_state(pending) == ApprovalState.PENDING
    for request in (approved, pending):
        data = await world["admin"].ok(READ_REQUEST, {"id": request})
        assert data["approvalRequest"]["requiredApprovals"] == 2
        assert (await ApprovalRequest.get(id=pk(request))).required_approvals == 2

    # The pending one still needs 2 (its snapshot), not 4.
    result = await world.approve(pending, "approver2")
    assert result["state"] == "APPROVED"
    # Both are deployable as approved before.
    assert set(await deployable(world)) == {approved_image, pending_image}
    deployment = await world.deploy(approved_image)
    assert deployment["status"] == "PROGRESSING"
    assert await stored_state(approved) == ApprovalState.CONSUMED

    # New requests take the new policy.
    image = await world.register_image("dev")
    new = await world.request_approval(image, "shop/prod", who="dev2")
    data = await world["admin"].ok(READ_REQUEST, {"id": new})
    assert data["approvalRequest"]["requiredApprovals"] == 4


async def test_r7_lowering_required_approvals_keeps_the_snapshot(world):
    _, pending = await pending_request(world)
    await world.approve(pending, "approver1")
    await set_policy(world, "shop/prod", 1, 24)
    assert await stored_state(pending) == ApprovalState.PENDING
    assert await read_state(world, pending) == "PENDING"
    assert (await world.approve(pending, "approver2"))["state"] == "APPROVED"


async def test_r7_ttl_change_does_not_move_expires_at(world):
    _, request = await pending_request(world)
    before = (await ApprovalRequest.get(id=pk(request))).expires_at
    assert before is not None
    await set_policy(world, "shop/prod", 2, 1)
    assert (await ApprovalRequest.get(id=pk(request))).expires_at == before
    await set_policy(world, "shop/prod", 2, None)
    assert (await ApprovalRequest.get(id=pk(request))).expires_at == before


async def test_r2_non_admin_cannot_update_approval_policy(world, unchanged):
    _, request = await pending_request(world)
    async with unchanged():
        for who in ("dev", "approver1", "prod_approver", "viewer"):
            for required in (0, 3):
                data = {
                    "p": world.ids["shop/prod"],
                    "i": {"requiredApprovals": required, "ttlHours": 24, "approversCanDeploy": True},
                }
                assert await world[who].code(UPDATE_POLICY, data) == "FORBIDDEN", who
    assert await stored_state(request) == ApprovalState.PENDING


async def test_r2_second_super_admin_may_update_approval_policy(world):
    data = await set_policy(world, "shop/prod", 3, 48, True, who="admin2")
    assert data["updateApprovalPolicy"]["approvalPolicy"] == {
        "requiredApprovals": 3,
        "ttlHours": 48,
        "approversCanDeploy": True,
    }
    pipeline = await Pipeline.get(id=pk(world.ids["shop/prod"]))
    assert (pipeline.required_approvals, pipeline.ttl_hours, pipeline.approvers_can_deploy) == (3, 48, True)


async def test_out_of_range_policy_is_bad_user_input_and_changes_nothing(world, unchanged):
    """RULES 'Things': requiredApprovals 0..6, ttlHours 1..8760 or none."""
    _, request = await pending_request(world)
    async with unchanged():
        for required, ttl in ((-1, 24), (7, 24), (2, 0), (2, 8761), (0, 0), (0, 8761), (-1, None)):
            error = await world["admin"].fails(
                UPDATE_POLICY,
                {
                    "p": world.ids["shop/prod"],
                    "i": {"requiredApprovals": required, "ttlHours": ttl, "approversCanDeploy": True},
                },
            )
            assert error["extensions"]["code"] == "BAD_USER_INPUT", (required, ttl)
            field = "requiredApprovals" if not 0 <= required <= 6 else "ttlHours"
            assert field in error["message"], error["message"]
    pipeline = await Pipeline.get(id=pk(world.ids["shop/prod"]))
    assert (pipeline.required_approvals, pipeline.ttl_hours, pipeline.approvers_can_deploy) == (2, 24, False)
    assert await stored_state(request) == ApprovalState.PENDING


async def test_policy_boundaries_are_accepted(world):
    """requiredApprovals 6 and ttlHours 8760 / 1 are in range."""
    data = await set_policy(world, "shop/prod", 6, 8760)
    assert data["updateApprovalPolicy"]["approvalPolicy"]["requiredApprovals"] == 6
    assert data["updateApprovalPolicy"]["approvalPolicy"]["ttlHours"] == 8760
    data = await set_policy(world, "shop/prod", 1, 1)
    assert data["updateApprovalPolicy"]["approvalPolicy"]["ttlHours"] == 1
