"""Why can't I? for one object: `ApprovalRequest.viewerCan { approve reject cancel expire }`,
`Pipeline.viewerCanDeploy(imageId:)` and `Pipeline.viewerCanRequestApproval(imageId:)`.

Each is decided by the same function as its mutation (greenlight/workflow/decisions.py), so
`allowed` is true exactly when the mutation would succeed and otherwise `code` is the
mutation's error code; `reason` says why in plain words. The agreement tests run every
mutation right after its explanation, for many users over many states, and compare.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from greenlight import models
from greenlight.clock import now

DECISION = "allowed code reason"
VIEWER_CAN = f"""query($id: ID!) {{ approvalRequest(id: $id) {{ viewerCanApprove viewerCan {{
  approve {{ {DECISION} }} reject {{ {DECISION} }} cancel {{ {DECISION} }} expire {{ {DECISION} }}
}} }} }}"""
CAN_DEPLOY = (
    f"query($p: ID!, $i: ID!) {{ pipeline(id: $p) {{ viewerCanDeploy(imageId: $i) {{ {DECISION} }} }} }}"
)
CAN_REQUEST = f"query($p: ID!, $i: ID!) {{ pipeline(id: $p) {{ viewerCanRequestApproval(imageId: $i) {{ {DECISION} }} }} }}"
CAN_I = 'query($a: Action!) { canI(action: $a, application: "shop", environment: "prod") { allowed } }'

MUTATIONS = {
    "approve": "mutation($id: ID!) { approveRequest(id: $id) { id } }",
    "reject": 'mutation($id: ID!) { rejectRequest(id: $id, reason: "not this one") { id } }',
    "cancel": "mutation($id: ID!) { cancelApprovalRequest(id: $id) { id } }",
    "expire": "mutation($id: ID!) { expireApproval(id: $id) { id } }",
}
DEPLOY = "mutation($i: DeployImageInput!) { deployImage(input: $i) { id } }"
REQUEST = "mutation($i: RequestApprovalInput!) { requestApproval(input: $i) { id } }"
UPDATE_POLICY = (
    "mutation($p: ID!, $i: ApprovalPolicyInput!) { updateApprovalPolicy(pipelineId: $p, input: $i) { id } }"
)
CREATE_FREEZE = "mutation($i: DeployFreezeInput!) { createDeployFreeze(input: $i) { id } }"
CREATE_GROUP = "mutation($n: String!) { createGroup(name: $n) { id } }"
ADD_MEMBER = "mutation($g: ID!, $u: ID!) { addGroupMember(groupId: $g, userId: $u) { id } }"
UPDATE_PIPELINE = "mutation($p: ID!, $i: PipelineUpdateInput!) { updatePipeline(id: $p, input: $i) { id } }"
REPORT_CHECK = "mutation($i: ReportImageCheckInput!) { reportImageCheck(input: $i) { id } }"
CREATE_PIPELINE = "mutation($i: CreatePipelineInput!) { createPipeline(input: $i) { id } }"


async def report_check(world, image: str, status: str, who: str = "admin") -> None:
    await world[who].ok(REPORT_CHECK, {"i": {"imageId": image, "name": "tests", "status": status}})


# Refusers first, so that most of them meet the object before someone changes it.
USERS = (
    "nobody",
    "billing_dev",
    "viewer",
    "dev",
    "dev2",
    "approver1",
    "prod_approver",
    "approver2",
    "admin2",
    "admin",
)

# For deploys, admin2 (an approver of one of the requests) before the one who deploys it.
DEPLOYERS = ("nobody", "billing_dev", "viewer", "prod_approver", "admin2", "dev", "dev2", "admin")


def pk(global_id: str) -> int:
    return int(global_id.rpartition(":")[2])


def _code(body: dict) -> str | None:
    return body["errors"][0]["extensions"]["code"] if body.get("errors") else None


async def request_decisions(world, who: str, request: str) -> dict[str, dict] | str:
    """viewerCan's four decisions, or the error code when the request itself is refused."""
    body = await world[who].execute(VIEWER_CAN, {"id": request})
    if body.get("errors"):
        return _code(body)
    return body["data"]["approvalRequest"]["viewerCan"]


async def pipeline_decision(world, who: str, query: str, pipeline: str, image: str) -> dict:
    """A pipeline's decision; an invisible pipeline answers NOT_FOUND, as its mutation."""
    body = await world[who].execute(query, {"p": world.ids[pipeline], "i": image})
    if body.get("errors"):
        return {"allowed": False, "code": _code(body), "reason": "(the pipeline itself)"}
    (decision,) = body["data"]["pipeline"].values()
    return decision


def agrees(decision: dict, outcome: str | None, what: str) -> None:
    assert decision["reason"], what
    if decision["allowed"]:
        assert decision["code"] is None, what
        assert outcome is None, f"{what}: explained as allowed, the mutation gave {outcome}"
    else:
        assert outcome == decision["code"], f"{what}: explained {decision}, the mutation gave {outcome}"


# --- a varied world ------------------------------------------------------------------------------


async def new_request(world, builder: str = "dev", requester: str = "dev2", pipeline: str = "shop/prod"):
    image = await world.register_image(builder, pipeline.split("/")[0])
    return image, await world.request_approval(image, pipeline, who=requester)


async def stale_request(world, approvers: tuple[str, ...] = ()) -> str:
    """A request for an older image, made stale by deploying a newer one on shop/prod."""
    _, request = await new_request(world)
    for who in approvers:
        await world.approve(request, who)
    newer, _ = await world.approved_image()
    await world.deploy(newer)
    return request


async def request_scenarios(world) -> dict[str, str]:
    """One request in each state the decisions distinguish (shop/prod: 2 approvals, 24 h).
    Those that deploy come first: a deploy makes the live requests for older images stale."""
    scenarios = {"stale": await stale_request(world)}
    image, scenarios["consumed"] = await world.approved_image()
    await world.deploy(image)
    _, scenarios["pending"] = await new_request(world)
    _, scenarios["partial"] = await new_request(world)
    await world.approve(scenarios["partial"], "approver1")
    _, scenarios["approved"] = await world.approved_image()
    _, scenarios["built and requested by admins"] = await new_request(world, "admin", "admin2")
    _, scenarios["expired by the clock"] = await new_request(world)
    await models.ApprovalRequest.filter(id=pk(scenarios["expired by the clock"])).update(
        expires_at=now() - timedelta(seconds=1)
    )
    _, scenarios["expired"] = await world.approved_image()
    await world["dev2"].ok(MUTATIONS["expire"], {"id": scenarios["expired"]})
    _, scenarios["cancelled"] = await new_request(world)
    await world["dev2"].ok(MUTATIONS["cancel"], {"id": scenarios["cancelled"]})
    _, scenarios["rejected"] = await new_request(world)
    await world["approver3"].ok(MUTATIONS["reject"], {"id": scenarios["rejected"]})
    # billing/prod requires the check "tests", which failed on this image
    await world["admin"].ok(
        UPDATE_PIPELINE, {"p": world.ids["billing/prod"], "i": {"requiredChecks": ["tests"]}}
    )
    failed = await world.register_image("billing_dev", "billing")
    await report_check(world, failed, "FAILED")
    scenarios["checks not passed"] = await world.request_approval(failed, "billing/prod", who="billing_dev")
    return scenarios


async def test_why_request_explanations_agree_with_every_mutation(world):
    """R1, R4, R10, R11, R14, R15, R16, stale images, required checks: for each action on a request in each
    state, for each user, viewerCan is asked and the mutation run at once: allowed exactly
    when it succeeds, else the same code. Every action is seen allowed and refused."""
    seen: dict[str, set] = {action: set() for action in MUTATIONS}
    reasons: set[str] = set()
    for action, mutation in MUTATIONS.items():
        for name, request in (await request_scenarios(world)).items():
            for who in USERS:
                decisions = await request_decisions(world, who, request)
                outcome = _code(await world[who].execute(mutation, {"id": request}))
                what = f"{action} on a {name} request by {who}"
                if isinstance(decisions, str):  # the request itself is refused (R1)
                    assert decisions == outcome == "NOT_FOUND", what
                    seen[action].add("NOT_FOUND")
                    continue
                agrees(decisions[action], outcome, what)
                seen[action].add(outcome)
                reasons.add(decisions[action]["reason"])
    for action in MUTATIONS:
        assert {None, "NOT_FOUND", "FORBIDDEN", "INVALID_STATE"} <= seen[action], (action, seen[action])
    assert {"SELF_APPROVAL", "STALE_IMAGE", "CHECKS_NOT_PASSED"} <= seen["approve"]
    assert "SELF_APPROVAL" in seen["reject"]
    assert {"You already approved this request", "This request is no longer live (EXPIRED)"} <= reasons


async def freeze(world, pipeline: str) -> None:
    start = datetime.now(UTC) - timedelta(hours=1)
    await world["admin"].ok(
        CREATE_FREEZE,
        {
            "i": {
                "name": "release freeze",
                "pipelineId": world.ids[pipeline],
                "startsAt": start.isoformat(),
                "endsAt": (start + timedelta(days=1)).isoformat(),
            }
        },
    )


async def test_why_deploy_and_request_explanations_agree_with_their_mutations(world):
    """R1, R3, R6, R20, R21, R22, freezes, stale images, approval exceptions, required checks
    and promotion (billing/prod requires the check "tests" and promotion from a new
    billing/staging): for each
    (pipeline, image) and user, viewerCanDeploy / viewerCanRequestApproval are asked and
    deployImage / requestApproval run at once, and they agree."""
    await world["admin"].ok(
        UPDATE_POLICY,
        {
            "p": world.ids["billing/prod"],
            "i": {
                "requiredApprovals": 1,
                "exceptionUserIds": [world["admin"].user_id],
                "requiredChecks": ["tests"],
            },
        },
    )
    await world["admin"].ok(
        CREATE_PIPELINE, {"i": {"applicationId": world.ids["billing"], "environmentId": world.ids["staging"]}}
    )
    await world["admin"].ok(
        UPDATE_PIPELINE, {"p": world.ids["billing/prod"], "i": {"requiresHealthyOn": world.ids["staging"]}}
    )
    billing_exception = await world.register_image("admin", "billing")
    await report_check(world, billing_exception, "PASSED")
    billing_failed = await world.register_image("admin", "billing")
    await report_check(world, billing_failed, "FAILED")
    stale_image = await world.register_image("dev")  # older than what runs next
    stale = await world.request_approval(stale_image, who="dev2")
    for who in ("approver1", "approver2"):
        await world.approve(stale, who)
    running, _ = await world.approved_image()
    await world.deploy(running)
    never = await world.register_image("dev")
    partial, partial_request = await new_request(world)
    await world.approve(partial_request, "approver1")
    approved_by_admin2, request = await new_request(world)
    for who in ("approver1", "admin2"):
        await world.approve(request, who)
    approved, _ = await world.approved_image()
    await freeze(world, "shop/staging")
    frozen = await world.register_image("dev")
    billing_image = await world.register_image("admin", "billing")
    expired_image, expired = await new_request(world)
    await models.ApprovalRequest.filter(id=pk(expired)).update(expires_at=now() - timedelta(seconds=1))

    cases = {
        "never requested": ("shop/prod", never),
        "partly approved": ("shop/prod", partial),
        "approved, admin2 among its approvers": ("shop/prod", approved_by_admin2),
        "approved, stale": ("shop/prod", stale_image),
        "running": ("shop/prod", running),
        "approved": ("shop/prod", approved),
        "frozen": ("shop/staging", frozen),
        "of another application": ("shop/staging", billing_image),
        "an exception's": ("billing/prod", billing_exception),
        "an exception's, its check failed": ("billing/prod", billing_failed),
        "requested, expired by the clock": ("shop/prod", expired_image),
    }
    seen = {"deploy": set(), "request": set()}
    for name, (pipeline, image) in cases.items():
        for who in DEPLOYERS:
            what = f"{name} image on {pipeline} by {who}"
            variables = {"i": {"pipelineId": world.ids[pipeline], "imageId": image}}
            decision = await pipeline_decision(world, who, CAN_REQUEST, pipeline, image)
            outcome = _code(await world[who].execute(REQUEST, variables))
            agrees(decision, outcome, f"request approval of the {what}")
            seen["request"].add(outcome)
            decision = await pipeline_decision(world, who, CAN_DEPLOY, pipeline, image)
            outcome = _code(await world[who].execute(DEPLOY, variables))
            agrees(decision, outcome, f"deploy the {what}")
            seen["deploy"].add(outcome)
    assert {None, "NOT_FOUND", "FORBIDDEN", "BAD_USER_INPUT", "CONFLICT", "PROMOTION_REQUIRED"} <= seen[
        "request"
    ], seen
    assert {
        None,
        "NOT_FOUND",
        "FORBIDDEN",
        "BAD_USER_INPUT",
        "CONFLICT",
        "DEPLOY_FROZEN",
        "STALE_IMAGE",
        "NOT_APPROVED",
        "APPROVER_CANNOT_DEPLOY",
        "CHECKS_NOT_PASSED",
    } <= seen["deploy"], seen


# --- the reasons, in plain words ---------------------------------------------------------------


async def test_why_r10_builder_and_requester_are_told_why_they_cannot_approve(world):
    """R10: canI says a super-admin may approve on shop/prod; viewerCan says the one who built
    this image, and the one who requested it, may not, and why."""
    _, request = await new_request(world, "admin", "admin2")
    assert (await world["admin"].ok(CAN_I, {"a": "APPROVE"}))["canI"]["allowed"] is True
    built = await request_decisions(world, "admin", request)
    assert built["approve"] == {"allowed": False, "code": "SELF_APPROVAL", "reason": "You built this image"}
    assert built["reject"]["reason"] == "You built this image"
    asked = await request_decisions(world, "admin2", request)
    assert asked["approve"] == {
        "allowed": False,
        "code": "SELF_APPROVAL",
        "reason": "You requested this approval",
    }
    assert asked["cancel"] == {"allowed": True, "code": None, "reason": "You may cancel this request"}
    other = await request_decisions(world, "approver1", request)
    assert other["approve"] == {"allowed": True, "code": None, "reason": "You may approve this request"}
    assert other["cancel"]["code"] == "FORBIDDEN"
    assert other["expire"]["code"] == "FORBIDDEN"


async def test_why_r11_r16_approved_already_and_no_longer_live(world):
    """R11: "You already approved this request"; R16: an APPROVED request cannot be approved
    again, and one no longer live says so with its state."""
    _, request = await new_request(world)
    await world.approve(request, "approver1")
    mine = await request_decisions(world, "approver1", request)
    assert mine["approve"] == {
        "allowed": False,
        "code": "INVALID_STATE",
        "reason": "You already approved this request",
    }
    assert mine["reject"]["allowed"] is True
    assert (await request_decisions(world, "dev2", request))["expire"] == {
        "allowed": False,
        "code": "INVALID_STATE",
        "reason": "Only an APPROVED request can be let expire; this one is PENDING",
    }
    await world.approve(request, "approver2")
    await world["dev2"].ok(MUTATIONS["expire"], {"id": request})
    for action, decision in (await request_decisions(world, "admin", request)).items():
        assert decision == {
            "allowed": False,
            "code": "INVALID_STATE",
            "reason": "This request is no longer live (EXPIRED)",
        }, action


async def test_why_r15_a_request_past_its_expiry_is_no_longer_live_at_once(world):
    """R15: past expiresAt the request is EXPIRED for the explanations too, before any job
    writes it; requesting again is allowed (the mutation closes the old one)."""
    image, request = await new_request(world)
    await models.ApprovalRequest.filter(id=pk(request)).update(expires_at=now() - timedelta(seconds=1))
    decisions = await request_decisions(world, "approver1", request)
    assert decisions["approve"]["reason"] == "This request is no longer live (EXPIRED)"
    again = await pipeline_decision(world, "dev2", CAN_REQUEST, "shop/prod", image)
    assert again["allowed"] is True
    await world.request_approval(image, who="dev2")


async def test_why_stale_image_needs_acknowledging(world):
    """Stale images: approving or deploying an image older than the running one is refused
    without acknowledgeStale, and the explanation says to tick it; viewerCanApprove (which
    assumes acknowledging) stays true."""
    request = await stale_request(world)
    found = (await world["approver1"].ok(VIEWER_CAN, {"id": request}))["approvalRequest"]
    assert found["viewerCan"]["approve"] == {
        "allowed": False,
        "code": "STALE_IMAGE",
        "reason": "The image is older than the one running: tick the acknowledgement",
    }
    assert found["viewerCanApprove"] is True


async def test_why_r20_r12_not_approved_says_how_far_and_which_group(world):
    """R20, R12: a partly approved image is "Not approved yet: 1 of 2 approvals"; under a
    group quorum the missing members are named by group."""
    image, request = await new_request(world)
    await world.approve(request, "approver1")
    assert await pipeline_decision(world, "dev", CAN_DEPLOY, "shop/prod", image) == {
        "allowed": False,
        "code": "NOT_APPROVED",
        "reason": "Not approved yet: 1 of 2 approvals",
    }
    qa = (await world["admin"].ok(CREATE_GROUP, {"n": "qa"}))["createGroup"]["id"]
    for member in ("approver1", "approver2", "approver3"):
        await world["admin"].ok(ADD_MEMBER, {"g": qa, "u": world[member].user_id})
    await world["admin"].ok(
        UPDATE_POLICY,
        {
            "p": world.ids["shop/prod"],
            "i": {
                "requiredApprovals": 1,
                "ttlHours": 24,
                "kind": "GROUP_QUORUMS",
                "groupQuorums": [{"groupId": qa, "minApprovals": 2}],
            },
        },
    )
    image, request = await new_request(world)
    await world.approve(request, "approver1")
    assert (await pipeline_decision(world, "dev", CAN_DEPLOY, "shop/prod", image))["reason"] == (
        "Not approved yet: 1 of 1 approvals. Needs 1 more from group qa"
    )
    never = await world.register_image("dev")
    assert (await pipeline_decision(world, "dev", CAN_DEPLOY, "shop/prod", never))["code"] == "NOT_APPROVED"


async def test_why_freeze_explains_deploy_frozen_where_can_i_says_allowed(world):
    """Deploy freezes: canI says dev may deploy on shop/staging; viewerCanDeploy says
    DEPLOY_FROZEN, until when (UTC), and deployImage agrees."""
    image = await world.register_image("dev")
    await freeze(world, "shop/staging")
    can_i = 'query { canI(action: DEPLOY, application: "shop", environment: "staging") { allowed } }'
    assert (await world["dev"].ok(can_i))["canI"]["allowed"] is True
    decision = await pipeline_decision(world, "dev", CAN_DEPLOY, "shop/staging", image)
    assert decision["code"] == "DEPLOY_FROZEN" and decision["allowed"] is False
    assert decision["reason"].startswith("Frozen until ") and decision["reason"].endswith(" UTC")
    admin = await pipeline_decision(world, "admin", CAN_DEPLOY, "shop/staging", image)
    assert "override" in admin["reason"]
    assert await world["dev"].code(
        DEPLOY, {"i": {"pipelineId": world.ids["shop/staging"], "imageId": image}}
    ) == ("DEPLOY_FROZEN")


async def test_why_r3_r21_roles_and_approvers(world):
    """R3: "You need the build-and-deploy role on shop/prod"; R21: an approver of the request
    is told that approvers may not deploy; an allowed deploy says its approval is used."""
    image, request = await new_request(world)
    for who in ("approver1", "admin2"):
        await world.approve(request, who)
    assert await pipeline_decision(world, "viewer", CAN_DEPLOY, "shop/prod", image) == {
        "allowed": False,
        "code": "FORBIDDEN",
        "reason": "You need the build-and-deploy role on shop/prod",
    }
    assert (await pipeline_decision(world, "viewer", CAN_REQUEST, "shop/prod", image))["reason"] == (
        "You need the build-and-deploy role on shop/prod"
    )
    assert (await request_decisions(world, "dev", request))["approve"]["reason"] == (
        "You need the image-approver role on shop/prod"
    )
    assert await pipeline_decision(world, "admin2", CAN_DEPLOY, "shop/prod", image) == {
        "allowed": False,
        "code": "APPROVER_CANNOT_DEPLOY",
        "reason": "You approved this image's request, and shop/prod does not let approvers deploy",
    }
    allowed = await pipeline_decision(world, "dev", CAN_DEPLOY, "shop/prod", image)
    assert allowed["allowed"] is True and allowed["code"] is None


async def test_why_r1_explanations_of_what_one_cannot_see_are_not_available(world):
    """R1: billing_dev cannot see shop's request or pipeline: both are NOT_FOUND, so are
    their explanations; on billing/prod a shop image is "Image not found"."""
    image, request = await new_request(world)
    body = await world["billing_dev"].execute(VIEWER_CAN, {"id": request})
    assert _code(body) == "NOT_FOUND" and body["data"] == {"approvalRequest": None}
    body = await world["billing_dev"].execute(CAN_DEPLOY, {"p": world.ids["shop/prod"], "i": image})
    assert _code(body) == "NOT_FOUND"
    assert await pipeline_decision(world, "billing_dev", CAN_DEPLOY, "billing/prod", image) == {
        "allowed": False,
        "code": "NOT_FOUND",
        "reason": "Image not found",
    }


async def test_why_explanations_change_nothing(world, unchanged):
    """Explanations only read: asking every one of them, on a request past its expiry too
    (which requestApproval would close), writes nothing."""
    image, request = await new_request(world)
    await models.ApprovalRequest.filter(id=pk(request)).update(expires_at=now() - timedelta(seconds=1))
    async with unchanged():
        for who in ("dev", "dev2", "approver1", "admin"):
            await world[who].ok(VIEWER_CAN, {"id": request})
            for query in (CAN_DEPLOY, CAN_REQUEST):
                await world[who].ok(query, {"p": world.ids["shop/prod"], "i": image})
