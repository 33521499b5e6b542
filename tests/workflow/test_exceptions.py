"""Exception users and groups: listed users, and members of listed groups, who hold
build-and-deploy (R3) deploy without an approved request; the Deployment and the audit "deploy"
event say so. Everyone else still needs approval (R20)."""

from __future__ import annotations

POLICY_FIELDS = "requiredApprovals kind exceptionUsers { id } exceptionGroups { id }"
UPDATE_POLICY = f"""mutation($p: ID!, $i: ApprovalPolicyInput!) {{
  updateApprovalPolicy(pipelineId: $p, input: $i) {{ id approvalPolicy {{ {POLICY_FIELDS} }} }}
}}"""
POLICY = f"query($p: ID!) {{ pipeline(id: $p) {{ approvalPolicy {{ {POLICY_FIELDS} }} }} }}"
DEPLOY = """mutation($i: DeployImageInput!) {
  deployImage(input: $i) {
    id status approvalException freezeOverrideReason
    image { id } triggeredBy { id } approvalRequest { id state }
  }
}"""
DEPLOYMENT = """query($id: ID!) {
  deployment(id: $id) { id approvalException approvalRequest { id state } }
}"""
ACTIVE = "query($p: ID!) { pipeline(id: $p) { activeImage { id } } }"
AUDIT = """query($f: AuditEventFilter) {
  auditEvents(filter: $f, first: 100) { edges { node { action objectId actor { id } after } } }
}"""
CREATE_GROUP = "mutation($n: String!) { createGroup(name: $n) { id } }"
ADD_MEMBER = "mutation($g: ID!, $u: ID!) { addGroupMember(groupId: $g, userId: $u) { id } }"
REMOVE_MEMBER = "mutation($g: ID!, $u: ID!) { removeGroupMember(groupId: $g, userId: $u) { id } }"
DEACTIVATE = "mutation($id: ID!) { deactivateUser(id: $id) { id } }"


def policy_input(**fields) -> dict:
    values = {"requiredApprovals": 2, "ttlHours": 24}
    values.update(fields)
    return values


async def set_policy(world, pipeline: str = "shop/prod", **fields) -> dict:
    data = await world["admin"].ok(UPDATE_POLICY, {"p": world.ids[pipeline], "i": policy_input(**fields)})
    return data["updateApprovalPolicy"]["approvalPolicy"]


async def read_policy(world, pipeline: str = "shop/prod") -> dict:
    return (await world["admin"].ok(POLICY, {"p": world.ids[pipeline]}))["pipeline"]["approvalPolicy"]


async def make_group(world, name: str, *members: str) -> str:
    group = (await world["admin"].ok(CREATE_GROUP, {"n": name}))["createGroup"]["id"]
    for member in members:
        await world["admin"].ok(ADD_MEMBER, {"g": group, "u": world[member].user_id})
    return group


def deploy_vars(world, image: str, pipeline: str = "shop/prod") -> dict:
    return {"i": {"pipelineId": world.ids[pipeline], "imageId": image}}


async def deploy(world, image: str, who: str, pipeline: str = "shop/prod") -> dict:
    return (await world[who].ok(DEPLOY, deploy_vars(world, image, pipeline)))["deployImage"]


async def deploy_refused(world, unchanged, image: str, who: str, code: str, pipeline: str = "shop/prod"):
    async with unchanged():
        assert await world[who].code(DEPLOY, deploy_vars(world, image, pipeline)) == code, who


async def deploy_events(world, deployment_id: str) -> list[dict]:
    data = await world["admin"].ok(AUDIT, {"f": {"action": "deploy"}})
    return [e["node"] for e in data["auditEvents"]["edges"] if e["node"]["objectId"] == deployment_id]


async def active_image(world, pipeline: str = "shop/prod") -> str | None:
    found = (await world["dev"].ok(ACTIVE, {"p": world.ids[pipeline]}))["pipeline"]["activeImage"]
    return found["id"] if found else None


async def test_exception_user_deploys_without_approval_marked_and_audited(world, unchanged):
    """Exceptions: dev, listed in exceptionUsers of shop/prod, deploys an image that
    was never requested; the Deployment has approvalException true and no request, and the
    audit "deploy" event's after holds approvalException true. dev2, not listed, still gets
    NOT_APPROVED (R20)."""
    policy = await set_policy(world, exceptionUserIds=[world["dev"].user_id])
    assert policy["exceptionUsers"] == [{"id": world["dev"].user_id}]
    assert policy["exceptionGroups"] == []
    assert policy["kind"] == "ANY" and policy["requiredApprovals"] == 2

    image = await world.register_image("dev2")
    deployment = await deploy(world, image, "dev")
    assert deployment["status"] == "PROGRESSING"
    assert deployment["approvalException"] is True
    assert deployment["approvalRequest"] is None
    assert deployment["image"] == {"id": image}
    assert deployment["triggeredBy"] == {"id": world["dev"].user_id}
    assert deployment["freezeOverrideReason"] is None
    assert await active_image(world) == image
    read = (await world["viewer"].ok(DEPLOYMENT, {"id": deployment["id"]}))["deployment"]
    assert read["approvalException"] is True

    (event,) = await deploy_events(world, deployment["id"])
    assert event["actor"] == {"id": world["dev"].user_id}
    assert event["after"]["approvalException"] is True

    other = await world.register_image("dev")
    await deploy_refused(world, unchanged, other, "dev2", "NOT_APPROVED")


async def test_exception_group_members_deploy_without_approval(world, unchanged):
    """Exceptions: members of a group in exceptionGroups deploy without approval;
    leaving the group ends it on the next deploy; a non-member still gets NOT_APPROVED."""
    hotfix = await make_group(world, "hotfixers", "dev2")
    policy = await set_policy(world, exceptionGroupIds=[hotfix])
    assert policy["exceptionGroups"] == [{"id": hotfix}]

    image = await world.register_image("dev")
    deployment = await deploy(world, image, "dev2")
    assert deployment["approvalException"] is True
    assert deployment["approvalRequest"] is None
    (event,) = await deploy_events(world, deployment["id"])
    assert event["after"]["approvalException"] is True

    other = await world.register_image("dev")
    await deploy_refused(world, unchanged, other, "dev", "NOT_APPROVED")
    await world["admin"].ok(REMOVE_MEMBER, {"g": hotfix, "u": world["dev2"].user_id})
    await deploy_refused(world, unchanged, other, "dev2", "NOT_APPROVED")
    assert await active_image(world) == image


async def test_r3_exceptions_still_need_build_and_deploy(world, unchanged):
    """R3, exceptions: listed users and group members without build-and-deploy on the
    pipeline's scope cannot deploy: FORBIDDEN when they see the pipeline, NOT_FOUND when not."""
    helpers = await make_group(world, "helpers", "prod_approver", "billing_dev")
    await set_policy(
        world,
        exceptionUserIds=[world["approver1"].user_id, world["viewer"].user_id, world["nobody"].user_id],
        exceptionGroupIds=[helpers],
    )
    image = await world.register_image("dev")
    for who in ("approver1", "viewer", "prod_approver"):
        await deploy_refused(world, unchanged, image, who, "FORBIDDEN")
    for who in ("nobody", "billing_dev"):
        await deploy_refused(world, unchanged, image, who, "NOT_FOUND")
    assert await active_image(world) is None


async def test_exception_user_with_an_approved_request_consumes_it(world):
    """Exceptions, R20: when a usable APPROVED request exists the exception user's
    deploy consumes it as usual and approvalException is false."""
    await set_policy(world, exceptionUserIds=[world["dev"].user_id])
    image, request = await world.approved_image()
    deployment = await deploy(world, image, "dev")
    assert deployment["approvalException"] is False
    assert deployment["approvalRequest"] == {"id": request, "state": "CONSUMED"}
    (event,) = await deploy_events(world, deployment["id"])
    assert not event["after"].get("approvalException")


async def test_plain_deploys_are_not_exceptions(world):
    """Exceptions: a deploy with an approval, and one on a pipeline needing none, have
    approvalException false."""
    image, _ = await world.approved_image()
    assert (await deploy(world, image, "dev"))["approvalException"] is False
    staging = await world.register_image("dev")
    deployment = await deploy(world, staging, "dev", "shop/staging")
    assert deployment["approvalException"] is False
    (event,) = await deploy_events(world, deployment["id"])
    assert not event["after"].get("approvalException")


async def test_exceptions_are_per_pipeline_and_can_be_removed(world, unchanged):
    """Exceptions: dev listed on shop/prod is not an exception on shop/staging (set to
    need approval); once removed from shop/prod's list dev gets NOT_APPROVED there too."""
    await set_policy(world, exceptionUserIds=[world["dev"].user_id])
    await set_policy(world, "shop/staging", requiredApprovals=1, ttlHours=None)
    image = await world.register_image("dev2")
    await deploy_refused(world, unchanged, image, "dev", "NOT_APPROVED", "shop/staging")

    policy = await set_policy(world, exceptionUserIds=[])
    assert policy["exceptionUsers"] == []
    await deploy_refused(world, unchanged, image, "dev", "NOT_APPROVED")


async def test_r22_exception_deploy_of_the_active_image_is_conflict(world, unchanged):
    """R22, exceptions: the exception does not let the active image be deployed
    again."""
    await set_policy(world, exceptionUserIds=[world["dev"].user_id])
    image = await world.register_image("dev2")
    await deploy(world, image, "dev")
    await deploy_refused(world, unchanged, image, "dev", "CONFLICT")


async def test_exception_lists_refuse_unknown_or_inactive_entries(world, unchanged):
    """Exceptions: exceptionUserIds must name existing active users and
    exceptionGroupIds existing groups, else BAD_USER_INPUT; non-super-admins get FORBIDDEN
    (R2). The policy stays as it was."""
    await world["admin"].ok(DEACTIVATE, {"id": world["dev2"].user_id})
    policy = await read_policy(world)
    cases = {
        "unknown user": {"exceptionUserIds": [world["dev"].user_id, "User:999999"]},
        "deactivated user": {"exceptionUserIds": [world["dev2"].user_id]},
        "unknown group": {"exceptionGroupIds": ["Group:999999"]},
    }
    for case, fields in cases.items():
        variables = {"p": world.ids["shop/prod"], "i": policy_input(**fields)}
        async with unchanged():
            assert await world["admin"].code(UPDATE_POLICY, variables) == "BAD_USER_INPUT", case
        assert await read_policy(world) == policy, case

    variables = {"p": world.ids["shop/prod"], "i": policy_input(exceptionUserIds=[world["dev"].user_id])}
    for who in ("dev", "approver1", "viewer"):
        async with unchanged():
            assert await world[who].code(UPDATE_POLICY, variables) == "FORBIDDEN", who
    assert await read_policy(world) == policy
    image = await world.register_image("dev")
    await deploy_refused(world, unchanged, image, "dev", "NOT_APPROVED")


async def test_r21_exception_user_who_approved_cannot_deploy(world, unchanged):
    """R21 with approval exceptions: admin2, a super-admin listed in exceptionUserIds, approves
    a request on shop/prod (approversCanDeploy false) and then tries to deploy that image:
    APPROVER_CANNOT_DEPLOY, whether the request is APPROVED or still PENDING (partial).
    Approving makes you an approver of that request, exception or not; the request stays as
    it was and nothing is deployed. An exception user who did not approve still deploys."""
    await set_policy(world, exceptionUserIds=[world["admin2"].user_id, world["admin"].user_id])

    image = await world.register_image("dev")
    request = await world.request_approval(image, who="dev2")
    await world.approve(request, "admin2")  # 1 of 2: PENDING
    await deploy_refused(world, unchanged, image, "admin2", "APPROVER_CANNOT_DEPLOY")
    assert (await world.approve(request, "approver1"))["state"] == "APPROVED"
    await deploy_refused(world, unchanged, image, "admin2", "APPROVER_CANNOT_DEPLOY")
    assert await active_image(world) is None

    deployment = await deploy(world, image, "admin")  # an exception user who did not approve
    assert deployment["approvalRequest"] == {"id": request, "state": "CONSUMED"}
    assert deployment["approvalException"] is False
