"""R17: however many approvals, rejections, cancellations and deployments race on one
request, the outcome is one that some serial order of them would give.

The calls really run at once: asyncio.gather of HTTP requests through the ASGI app. On
PostgreSQL each request takes its own pooled connection, so the row locks of the workflow
are what keeps the outcome serial; on SQLite the single connection serialises transactions,
and the same scenarios must come out right there too.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from greenlight.models import Approval, ApprovalRequest, AuditEvent, Deployment
from tests.conftest import Client

APPROVE = "mutation($id: ID!) { approveRequest(id: $id) { id state } }"
REJECT = "mutation($id: ID!, $r: String!) { rejectRequest(id: $id, reason: $r) { id state } }"
CANCEL = "mutation($id: ID!) { cancelApprovalRequest(id: $id) { id state } }"
DEPLOY = "mutation($i: DeployImageInput!) { deployImage(input: $i) { id status } }"
POLICY = """mutation($p: ID!, $i: ApprovalPolicyInput!) {
  updateApprovalPolicy(pipelineId: $p, input: $i) { id }
}"""


def pk(global_id: str) -> int:
    return int(global_id.rpartition(":")[2])


async def outcome(client: Client, query: str, variables: dict) -> tuple[str, dict | None]:
    """("OK", data) or (error code, None): one call of a race."""
    body = await client.execute(query, variables)
    if body.get("errors"):
        return body["errors"][0]["extensions"]["code"], None
    return "OK", body["data"]


async def later(call, ticks: int):
    """Start `call` after `ticks` turns of the event loop, to vary how a race interleaves."""
    for _ in range(ticks):
        await asyncio.sleep(0)
    return await call


async def race(*calls) -> list[tuple[str, dict | None]]:
    return list(await asyncio.gather(*calls))


async def extra_approvers(world, count: int) -> list[Client]:
    """`count` new users with IMAGE_APPROVER on shop/*, each with a token."""
    admin = world["admin"]
    clients = []
    for n in range(count):
        email = f"racer{n}@example.com"
        user_id = (
            await admin.ok(
                "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }",
                {"i": {"email": email, "name": f"racer {n}"}},
            )
        )["createUser"]["id"]
        await admin.ok(
            "mutation($i: RoleBindingInput!) { grantRole(input: $i) { id } }",
            {"i": {"userId": user_id, "role": "IMAGE_APPROVER", "application": "shop", "environment": "*"}},
        )
        token = (
            await admin.ok(
                "mutation($i: IssueApiTokenInput!) { issueApiToken(input: $i) { token } }",
                {"i": {"userId": user_id, "name": "race"}},
            )
        )["issueApiToken"]["token"]
        clients.append(Client(world.http, token, user_id, email))
    return clients


async def require_approvals(world, count: int, pipeline: str = "shop/prod") -> None:
    await world["admin"].ok(
        POLICY, {"p": world.ids[pipeline], "i": {"requiredApprovals": count, "ttlHours": 24}}
    )


async def audit_count(action: str, request_id: str) -> int:
    return await AuditEvent.filter(
        action=action, object_type="ApprovalRequest", object_id=pk(request_id)
    ).count()


# --- (a) many approvers at once ---------------------------------------------------------------


async def test_r17_twenty_approvers_at_once_count_exactly_six(world):
    """20 approvers race on a request needing 6: exactly 6 approvals are recorded (R11, R12),
    the request turns APPROVED exactly once, the other 14 get INVALID_STATE (R16)."""
    approvers = await extra_approvers(world, 20)
    await require_approvals(world, 6)
    for _ in range(3):
        image = await world.register_image()
        request = await world.request_approval(image, who="dev2")

        results = await race(*(outcome(a, APPROVE, {"id": request}) for a in approvers))

        codes = Counter(code for code, _ in results)
        assert codes == {"OK": 6, "INVALID_STATE": 14}
        winners = {a.user_id for a, (code, _) in zip(approvers, results, strict=True) if code == "OK"}
        states = [data["approveRequest"]["state"] for code, data in results if code == "OK"]
        assert sorted(states) == ["APPROVED"] + ["PENDING"] * 5

        stored = await ApprovalRequest.get(id=pk(request))
        assert stored.state == "APPROVED"
        rows = await Approval.filter(request_id=pk(request)).values_list("user_id", flat=True)
        assert sorted(rows) == sorted(pk(w) for w in winners)
        assert await audit_count("approve", request) == 6
        assert await audit_count("request_approved", request) == 1

        data = await world["dev"].ok(
            "query($id: ID!) { approvalRequest(id: $id) { state approvals { user { id } } } }",
            {"id": request},
        )
        assert data["approvalRequest"]["state"] == "APPROVED"
        assert {a["user"]["id"] for a in data["approvalRequest"]["approvals"]} == winners


async def test_r17_twenty_approvals_at_once_record_six_rows(world):
    """The count of stored approvals is exactly the required number, never more, for a
    request needing 6 that 20 approvers hit at the same moment."""
    approvers = await extra_approvers(world, 20)
    await require_approvals(world, 6)
    image = await world.register_image()
    request = await world.request_approval(image, who="dev2")

    await race(*(outcome(a, APPROVE, {"id": request}) for a in approvers))

    assert await Approval.filter(request_id=pk(request)).count() == 6
    assert (await ApprovalRequest.get(id=pk(request))).state == "APPROVED"
    deployed = await world.deploy(image)
    assert deployed["status"] == "PROGRESSING"


async def test_r17_approvals_racing_a_rejection(world):
    """10 approvals and one rejection at once on a request needing 6: the rejection always
    succeeds (it is allowed on PENDING and APPROVED), approvals after it get INVALID_STATE,
    and every approval that succeeded is stored, never more than 6."""
    approvers = await extra_approvers(world, 10)
    await require_approvals(world, 6)
    pipeline = world.ids["shop/prod"]
    for ticks in (0, 1, 2, 3, 4, 6):
        image = await world.register_image()
        request = await world.request_approval(image, who="dev2")

        results = await race(
            later(outcome(world["approver1"], REJECT, {"id": request, "r": "not this one"}), ticks),
            *(outcome(a, APPROVE, {"id": request}) for a in approvers),
        )

        reject_code, approve_codes = results[0][0], [code for code, _ in results[1:]]
        assert reject_code == "OK"
        assert set(approve_codes) <= {"OK", "INVALID_STATE"}
        succeeded = approve_codes.count("OK")
        assert succeeded <= 6
        assert await Approval.filter(request_id=pk(request)).count() == succeeded
        assert (await ApprovalRequest.get(id=pk(request))).state == "REJECTED"
        assert await audit_count("request_approved", request) == (1 if succeeded == 6 else 0)
        assert await audit_count("request_rejected", request) == 1
        code = await world["dev"].code(DEPLOY, {"i": {"pipelineId": pipeline, "imageId": image}})
        assert code == "NOT_APPROVED"


# --- (b) one approver twice at once ------------------------------------------------------------


async def test_r17_r11_same_approver_twice_at_once_counts_once(world):
    for _ in range(5):
        image = await world.register_image()
        request = await world.request_approval(image, who="dev2")

        results = await race(
            outcome(world["approver1"], APPROVE, {"id": request}),
            outcome(world["approver1"], APPROVE, {"id": request}),
        )

        assert sorted(code for code, _ in results) == ["INVALID_STATE", "OK"]
        assert await Approval.filter(request_id=pk(request)).count() == 1
        assert (await ApprovalRequest.get(id=pk(request))).state == "PENDING"
        assert await audit_count("approve", request) == 1


# --- (c) deploy racing cancel ------------------------------------------------------------------


async def test_r17_deploy_racing_cancel_never_both(world):
    """50 rounds of deploy and cancel on one APPROVED request at the same moment: exactly
    one wins. A won deploy consumed the request; a won cancel left no deployment."""
    await require_approvals(world, 1)
    pipeline = world.ids["shop/prod"]
    wins = Counter()
    for round_ in range(50):
        image = await world.register_image()
        request = await world.request_approval(image, who="dev2")
        await world.approve(request, "approver1")
        deploy = outcome(world["dev"], DEPLOY, {"i": {"pipelineId": pipeline, "imageId": image}})
        # The cancel starts 0 to 48 loop turns after the deploy, so both orders happen.
        cancel = later(outcome(world["dev2"], CANCEL, {"id": request}), 2 * round_)

        (deploy_code, _), (cancel_code, _) = await race(deploy, cancel)

        stored = await ApprovalRequest.get(id=pk(request))
        deployments = await Deployment.filter(pipeline_id=pk(pipeline), image_id=pk(image)).values_list(
            "approval_request_id", flat=True
        )
        if deploy_code == "OK":
            wins["deploy"] += 1
            assert cancel_code == "INVALID_STATE", round_
            assert stored.state == "CONSUMED"
            assert deployments == [pk(request)]
            assert await audit_count("request_consumed", request) == 1
            assert await audit_count("request_cancelled", request) == 0
        else:
            wins["cancel"] += 1
            assert (deploy_code, cancel_code) == ("NOT_APPROVED", "OK"), round_
            assert stored.state == "CANCELLED"
            assert deployments == []
            assert await audit_count("request_cancelled", request) == 1
            assert await audit_count("request_consumed", request) == 0
    assert sum(wins.values()) == 50


async def test_r17_last_approval_racing_deploy(world):
    """The approval that completes a request and a deploy at once: either the deploy came
    first (NOT_APPROVED, the request ends APPROVED) or second (deployed, CONSUMED)."""
    pipeline = world.ids["shop/prod"]
    for round_ in range(10):
        image = await world.register_image()
        request = await world.request_approval(image, who="dev2")
        await world.approve(request, "approver1")
        # The approval starts 0 to 180 loop turns after the deploy, so both orders happen.
        approve = later(outcome(world["approver2"], APPROVE, {"id": request}), 20 * round_)
        deploy = outcome(world["dev"], DEPLOY, {"i": {"pipelineId": pipeline, "imageId": image}})

        (approve_code, _), (deploy_code, _) = await race(approve, deploy)

        assert approve_code == "OK"
        stored = await ApprovalRequest.get(id=pk(request))
        count = await Deployment.filter(approval_request_id=pk(request)).count()
        if deploy_code == "OK":
            assert (stored.state, count) == ("CONSUMED", 1)
        else:
            assert deploy_code == "NOT_APPROVED"
            assert (stored.state, count) == ("APPROVED", 0)
        assert await Approval.filter(request_id=pk(request)).count() == 2


# --- (d) two deploys of one approved image -----------------------------------------------------


async def test_r17_r20_two_deploys_of_one_approval_only_one_succeeds(world):
    """One approval, two deploys at once (different deployers, then the same one): exactly one
    deployment is made, the other sees the image active (CONFLICT, R22)."""
    pipeline = world.ids["shop/prod"]
    for deployers in (("dev", "dev2"), ("dev", "dev")):
        image, request = await world.approved_image()

        results = await race(
            *(outcome(world[w], DEPLOY, {"i": {"pipelineId": pipeline, "imageId": image}}) for w in deployers)
        )

        assert sorted(code for code, _ in results) == ["CONFLICT", "OK"]
        assert await Deployment.filter(image_id=pk(image), pipeline_id=pk(pipeline)).count() == 1
        assert await Deployment.filter(approval_request_id=pk(request)).count() == 1
        assert (await ApprovalRequest.get(id=pk(request))).state == "CONSUMED"
        assert await audit_count("request_consumed", request) == 1


async def test_r17_two_deploys_without_approval_only_one_succeeds(world):
    """On a pipeline needing no approval, two deploys of one image at once: one deployment."""
    pipeline = world.ids["shop/staging"]
    image = await world.register_image()

    results = await race(
        *(
            outcome(world[w], DEPLOY, {"i": {"pipelineId": pipeline, "imageId": image}})
            for w in ("dev", "dev2")
        )
    )

    assert sorted(code for code, _ in results) == ["CONFLICT", "OK"]
    assert await Deployment.filter(image_id=pk(image), pipeline_id=pk(pipeline)).count() == 1


async def test_r17_deploys_of_two_images_at_once_leave_one_active(world):
    """Two approved images deployed on one pipeline at once: both deployments exist, one of
    them SUPERSEDED by the other (R23), so exactly one is active."""
    pipeline = world.ids["shop/prod"]
    first, _ = await world.approved_image()
    second, _ = await world.approved_image()

    # Whichever goes second may find its approval stale (the newer image went first, issue
    # 6): both acknowledge, so the race is about R23 alone.
    results = await race(
        outcome(
            world["dev"], DEPLOY, {"i": {"pipelineId": pipeline, "imageId": first, "acknowledgeStale": True}}
        ),
        outcome(
            world["dev"], DEPLOY, {"i": {"pipelineId": pipeline, "imageId": second, "acknowledgeStale": True}}
        ),
    )

    assert [code for code, _ in results] == ["OK", "OK"]
    statuses = sorted(await Deployment.filter(pipeline_id=pk(pipeline)).values_list("status", flat=True))
    assert statuses == ["PROGRESSING", "SUPERSEDED"]
    newest = await Deployment.filter(pipeline_id=pk(pipeline)).order_by("-id").first()
    assert newest.status == "PROGRESSING"
    data = await world["dev"].ok(
        "query($id: ID!) { pipeline(id: $id) { activeImage { id } } }", {"id": pipeline}
    )
    assert data["pipeline"]["activeImage"]["id"] == f"Image:{newest.image_id}"
