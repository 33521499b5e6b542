"""Checks before approval: CI reports results about an image (reportImageCheck); a
pipeline's requiredChecks must all have PASSED before one of its requests is approved and
before a deploy, or the mutation is CHECKS_NOT_PASSED naming the missing, failed and
pending checks; the explanations (viewerCan.approve, viewerCanDeploy) say the same."""

from __future__ import annotations

import asyncio

import pytest

from greenlight.models import ApprovalRequest, ApprovalState, AuditEvent, ImageCheck
from tests.workflow.test_why_cant_i import CAN_DEPLOY, VIEWER_CAN, agrees, pipeline_decision

REPORT = """mutation($i: ReportImageCheckInput!) {
  reportImageCheck(input: $i) { id name status url summary reportedAt reportedBy { email } }
}"""
CHECKS = "query($id: ID!) { node(id: $id) { ... on Image { checks { id name status url summary } } } }"
UPDATE = "mutation($p: ID!, $i: PipelineUpdateInput!) { updatePipeline(id: $p, input: $i) { approvalPolicy { requiredChecks } } }"
UPDATE_POLICY = """mutation($p: ID!, $i: ApprovalPolicyInput!) {
  updateApprovalPolicy(pipelineId: $p, input: $i) { approvalPolicy { requiredChecks } }
}"""
APPROVE = "mutation($id: ID!) { approveRequest(id: $id) { id state } }"
DEPLOY = "mutation($i: DeployImageInput!) { deployImage(input: $i) { id } }"
SELECT_IMAGE = "query($p: ID!) { pipeline(id: $p) { deployableImages { id } } }"


async def report(world, image: str, name: str, status: str, who: str = "dev", **more) -> dict:
    variables = {"i": {"imageId": image, "name": name, "status": status, **more}}
    return (await world[who].ok(REPORT, variables))["reportImageCheck"]


async def require(world, pipeline: str, names: list[str]) -> None:
    await world["admin"].ok(UPDATE, {"p": world.ids[pipeline], "i": {"requiredChecks": names}})


def deploy_input(world, image: str, pipeline: str = "shop/prod") -> dict:
    return {"i": {"pipelineId": world.ids[pipeline], "imageId": image}}


# --- reporting --------------------------------------------------------------------------------


async def test_checks_report_then_re_report_updates_the_check_and_audits_both(world):
    """Checks: the first report of a name creates the check, a second one updates it (one
    check per name); each report is an audit event with the check before and after."""
    image = await world.register_image("dev")
    first = await report(world, image, "tests", "PENDING", url="https://ci.example.com/run/1")
    assert (first["status"], first["url"], first["reportedBy"]["email"]) == (
        "PENDING",
        "https://ci.example.com/run/1",
        "dev@example.com",
    )
    again = await report(world, image, "tests", "FAILED", who="admin", summary="3 of 120 failed")
    assert again["id"] == first["id"]
    assert (again["status"], again["url"], again["summary"]) == ("FAILED", None, "3 of 120 failed")
    assert again["reportedBy"]["email"] == "admin@example.com"
    await report(world, image, "vulnerability-scan", "PASSED")
    checks = (await world["viewer"].ok(CHECKS, {"id": image}))["node"]["checks"]
    assert [(c["name"], c["status"]) for c in checks] == [
        ("tests", "FAILED"),
        ("vulnerability-scan", "PASSED"),
    ]
    node = await world["viewer"].ok(
        "query($id: ID!) { node(id: $id) { ... on ImageCheck { name } } }", {"id": first["id"]}
    )
    assert node["node"] == {"name": "tests"}

    events = await AuditEvent.filter(
        action="report_image_check", object_id=int(first["id"].split(":")[1])
    ).order_by("id")
    assert [e.before for e in events] == [
        None,
        {"name": "tests", "status": "PENDING", "url": "https://ci.example.com/run/1", "summary": None},
    ]
    assert [e.after["status"] for e in events] == ["PENDING", "FAILED"]
    assert [e.actor_id for e in events] == [
        int(world["dev"].user_id.split(":")[1]),
        int(world["admin"].user_id.split(":")[1]),
    ]
    assert all(e.application == "shop" for e in events)


async def test_checks_who_may_report_builders_and_super_admins(world, unchanged):
    """Checks, who reports: whoever may register the application's images (build-and-deploy
    on a scope of it) and super-admins; an approver or viewer who sees the image is
    FORBIDDEN, someone who cannot see it gets NOT_FOUND (R1); refusals change nothing."""
    image = await world.register_image("dev")
    await report(world, image, "tests", "PENDING", who="dev2")
    await report(world, image, "tests", "PENDING", who="admin2")
    variables = {"i": {"imageId": image, "name": "tests", "status": "PASSED"}}
    async with unchanged():
        for who, code in (
            ("approver1", "FORBIDDEN"),
            ("prod_approver", "FORBIDDEN"),
            ("viewer", "FORBIDDEN"),
            ("billing_dev", "NOT_FOUND"),
            ("nobody", "NOT_FOUND"),
        ):
            assert await world[who].code(REPORT, variables) == code, who
        assert await world.anonymous.code(REPORT, variables) == "UNAUTHENTICATED"
        missing = {"i": {"imageId": "Image:99999", "name": "tests", "status": "PASSED"}}
        assert await world["dev"].code(REPORT, missing) == "NOT_FOUND"
    assert (await ImageCheck.get(name="tests")).status == "PENDING"


@pytest.mark.parametrize(
    ("more", "field"),
    [
        ({"name": "Tests"}, "name"),
        ({"name": ""}, "name"),
        ({"name": "t" * 64}, "name"),
        ({"url": "javascript:alert(1)"}, "url"),
        ({"summary": "s" * 2001}, "summary"),
    ],
)
async def test_checks_bad_reports_are_refused_and_change_nothing(world, unchanged, more, field):
    """Checks, limits: a name is 1 to 63 lowercase letters, digits, '.', '_' or '-'; a URL
    http(s); a summary at most 2000 characters. Otherwise BAD_USER_INPUT, nothing written."""
    image = await world.register_image("dev")
    variables = {"i": {"imageId": image, "name": "tests", "status": "PASSED", **more}}
    async with unchanged():
        error = await world["dev"].fails(REPORT, variables)
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": field}


# --- the pipeline's setting -------------------------------------------------------------------


async def test_checks_required_checks_are_set_kept_and_validated(world, unchanged):
    """Checks, the setting: requiredChecks is set by updatePipeline and updateApprovalPolicy;
    left out it keeps its value, [] requires none; a bad name or more than 20 names is
    BAD_USER_INPUT and changes nothing."""
    p = world.ids["shop/prod"]
    data = await world["admin"].ok(
        UPDATE, {"p": p, "i": {"requiredChecks": ["tests", "vulnerability-scan", "tests"]}}
    )
    assert data["updatePipeline"]["approvalPolicy"]["requiredChecks"] == ["tests", "vulnerability-scan"]
    data = await world["admin"].ok(UPDATE, {"p": p, "i": {"ttlHours": 12}})
    assert data["updatePipeline"]["approvalPolicy"]["requiredChecks"] == ["tests", "vulnerability-scan"]
    data = await world["admin"].ok(UPDATE_POLICY, {"p": p, "i": {"requiredApprovals": 2}})
    assert data["updateApprovalPolicy"]["approvalPolicy"]["requiredChecks"] == ["tests", "vulnerability-scan"]
    event = await AuditEvent.filter(action="update_pipeline").order_by("-id").first()
    assert event.after["requiredChecks"] == ["tests", "vulnerability-scan"]
    async with unchanged():
        for names in (["Bad Name"], [f"c{n}" for n in range(21)]):
            error = await world["admin"].fails(UPDATE, {"p": p, "i": {"requiredChecks": names}})
            assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "requiredChecks"}
        assert await world["dev"].code(UPDATE, {"p": p, "i": {"requiredChecks": []}}) == "FORBIDDEN"
    data = await world["admin"].ok(
        UPDATE_POLICY, {"p": p, "i": {"requiredApprovals": 2, "requiredChecks": []}}
    )
    assert data["updateApprovalPolicy"]["approvalPolicy"]["requiredChecks"] == []


# --- approving --------------------------------------------------------------------------------


async def test_checks_approve_refused_until_every_required_check_passed(world, unchanged):
    """Checks before approval: with requiredChecks [tests, vulnerability-scan, lint],
    approving is CHECKS_NOT_PASSED while any has not PASSED; message and extensions name
    the missing, failed and pending ones; viewerCan.approve gives the same code and says
    which; nothing changes. Once all have PASSED the approval counts."""
    await require(world, "shop/prod", ["tests", "vulnerability-scan", "lint"])
    image = await world.register_image("dev")
    request = await world.request_approval(image, who="dev2")
    await report(world, image, "tests", "FAILED")
    await report(world, image, "lint", "PENDING")
    async with unchanged():
        explained = (await world["approver1"].ok(VIEWER_CAN, {"id": request}))["approvalRequest"]
        error = await world["approver1"].fails(APPROVE, {"id": request})
    assert error["extensions"] == {
        "code": "CHECKS_NOT_PASSED",
        "missingChecks": ["vulnerability-scan"],
        "failedChecks": ["tests"],
        "pendingChecks": ["lint"],
    }
    assert "tests FAILED" in error["message"] and "vulnerability-scan not reported" in error["message"]
    assert explained["viewerCan"]["approve"] == {
        "allowed": False,
        "code": "CHECKS_NOT_PASSED",
        "reason": "Required checks have not passed: tests FAILED, lint PENDING, vulnerability-scan not reported",
    }
    assert explained["viewerCanApprove"] is False
    for name in ("tests", "vulnerability-scan", "lint"):
        await report(world, image, name, "PASSED")
    explained = (await world["approver1"].ok(VIEWER_CAN, {"id": request}))["approvalRequest"]
    assert explained["viewerCan"]["approve"]["allowed"] is True
    assert (await world.approve(request, "approver1"))["state"] == "PENDING"
    await report(world, image, "lint", "FAILED")  # turns again before the second approval
    assert await world["approver2"].code(APPROVE, {"id": request}) == "CHECKS_NOT_PASSED"
    assert (await ApprovalRequest.get(id=int(request.split(":")[1]))).state == ApprovalState.PENDING


# --- deploying --------------------------------------------------------------------------------


async def test_checks_deploy_refused_when_a_check_failed_after_approval(world, unchanged):
    """Checks before deploy: an image approved while its checks passed, whose check then
    FAILED, is CHECKS_NOT_PASSED on deployImage (the approval stays APPROVED, nothing
    changes), viewerCanDeploy agrees, and Select Image leaves it out; a PASSED re-report
    makes it deployable again."""
    await require(world, "shop/prod", ["tests"])
    image = await world.register_image("dev")
    await report(world, image, "tests", "PASSED")
    request = await world.request_approval(image, who="dev2")
    for who in ("approver1", "approver2"):
        await world.approve(request, who)
    await report(world, image, "tests", "FAILED")
    async with unchanged():
        decision = await pipeline_decision(world, "dev", CAN_DEPLOY, "shop/prod", image)
        error = await world["dev"].fails(DEPLOY, deploy_input(world, image))
        listed = (await world["dev"].ok(SELECT_IMAGE, {"p": world.ids["shop/prod"]}))["pipeline"]
    agrees(decision, error["extensions"]["code"], "deploy with a failed check")
    assert error["extensions"]["failedChecks"] == ["tests"]
    assert decision["reason"] == "Required checks have not passed: tests FAILED"
    assert image not in [i["id"] for i in listed["deployableImages"]]
    await report(world, image, "tests", "PASSED")
    listed = (await world["dev"].ok(SELECT_IMAGE, {"p": world.ids["shop/prod"]}))["pipeline"]
    assert image in [i["id"] for i in listed["deployableImages"]]
    await world.deploy(image)


async def test_checks_apply_to_pipelines_without_approval_and_to_exceptions(world):
    """Checks before deploy: a pipeline needing no approval still needs its required checks
    (shop/staging), and so does an approval exception's deploy: checks belong to the image,
    not to who deploys it."""
    await require(world, "shop/staging", ["tests"])
    image = await world.register_image("dev")
    assert await world["dev"].code(DEPLOY, deploy_input(world, image, "shop/staging")) == "CHECKS_NOT_PASSED"
    assert (await world["dev"].ok(SELECT_IMAGE, {"p": world.ids["shop/staging"]}))["pipeline"][
        "deployableImages"
    ] == []
    await report(world, image, "tests", "PASSED")
    await world.deploy(image, "shop/staging")

    await world["admin"].ok(
        UPDATE,
        {
            "p": world.ids["billing/prod"],
            "i": {"exceptionUserIds": [world["admin"].user_id], "requiredChecks": ["tests"]},
        },
    )
    billing = await world.register_image("admin", "billing")
    assert (
        await world["admin"].code(DEPLOY, deploy_input(world, billing, "billing/prod")) == "CHECKS_NOT_PASSED"
    )
    await report(world, billing, "tests", "PASSED", who="billing_dev")
    await world.deploy(billing, "billing/prod", who="admin")


async def test_checks_an_automatic_pipeline_deploys_only_with_checks_passed(world):
    """Checks, R24: on an AUTOMATIC pipeline the approval that completes a request deploys at
    once; it can only complete while the checks have passed, so nothing deploys without."""
    await world["admin"].ok(
        UPDATE, {"p": world.ids["shop/prod"], "i": {"triggerType": "AUTOMATIC", "requiredChecks": ["tests"]}}
    )
    image = await world.register_image("dev")
    request = await world.request_approval(image, who="dev2")
    await report(world, image, "tests", "PASSED")
    await world.approve(request, "approver1")
    await report(world, image, "tests", "FAILED")
    assert await world["approver2"].code(APPROVE, {"id": request}) == "CHECKS_NOT_PASSED"
    await report(world, image, "tests", "PASSED")
    assert (await world.approve(request, "approver2"))["state"] == "CONSUMED"


async def test_checks_r17_a_check_failing_while_the_last_approval_lands(world):
    """Checks, R17: a report turning a required check FAILED races the approval that would
    complete the request. Whatever the order, the outcome is a serial one: either the
    approval came first (APPROVED, then FAILED: the deploy is refused) or the report did
    (the approval is refused, the request stays PENDING); the image is never deployed with
    a failed check."""
    await require(world, "shop/prod", ["tests"])
    for _ in range(3):
        image = await world.register_image("dev")
        await report(world, image, "tests", "PASSED")
        request = await world.request_approval(image, who="dev2")
        await world.approve(request, "approver1")
        approved, reported = await asyncio.gather(
            world["approver2"].execute(APPROVE, {"id": request}),
            world["dev"].execute(REPORT, {"i": {"imageId": image, "name": "tests", "status": "FAILED"}}),
        )
        assert not reported.get("errors"), reported
        state = (await ApprovalRequest.get(id=int(request.split(":")[1]))).state
        if approved.get("errors"):
            assert approved["errors"][0]["extensions"]["code"] == "CHECKS_NOT_PASSED"
            assert state == ApprovalState.PENDING
        else:
            assert state == ApprovalState.APPROVED
        assert await world["dev"].code(DEPLOY, deploy_input(world, image)) == "CHECKS_NOT_PASSED"
