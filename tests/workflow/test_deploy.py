"""Deploying (R19 to R23, R3 for deploys), rollbacks, the deployments list, and rollouts
found unfinished after a restart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from greenlight.app import create_app
from greenlight.jobs import finish_due_rollouts
from greenlight.models import ApprovalRequest, ApprovalState, Deployment, DeploymentStatus
from greenlight.workflow.deployments import finish_rollout
from tests.conftest import Client

DEPLOY = """mutation($i: DeployImageInput!) {
  deployImage(input: $i) {
    id status strategy startedAt finishedAt
    image { id } pipeline { id } triggeredBy { id } approvalRequest { id state }
  }
}"""
PIPELINE = """query($p: ID!) {
  pipeline(id: $p) {
    activeImage { id }
    activeDeployment { id status image { id } }
    deployableImages { id }
  }
}"""
DEPLOYMENT = """query($id: ID!) {
  deployment(id: $id) { id status startedAt finishedAt image { id } approvalRequest { id state } }
}"""
DEPLOYMENTS = """query($p: ID!, $first: Int, $after: String) {
  pipeline(id: $p) {
    deployments(first: $first, after: $after) {
      totalCount
      pageInfo { hasNextPage endCursor }
      edges { cursor node { id status image { id } } }
    }
  }
}"""
ACTIVE_ON = """query($app: ID!) {
  images(applicationId: $app, first: 100) { edges { node { id activeOn { name } } } }
}"""
APPROVAL_STATE = """query($app: ID!, $p: ID!) {
  images(applicationId: $app, first: 100) { edges { node { id approvalState(pipelineId: $p) } } }
}"""
UPDATE_POLICY = """mutation($p: ID!, $i: ApprovalPolicyInput!) {
  updateApprovalPolicy(pipelineId: $p, input: $i) { id }
}"""
GRANT = "mutation($i: RoleBindingInput!) { grantRole(input: $i) { id } }"


def pk(global_id: str) -> int:
    return int(global_id.split(":")[1])


def deploy_vars(world, image: str, pipeline: str) -> dict:
    return {"i": {"pipelineId": world.ids[pipeline], "imageId": image}}


async def deploy_code(world, image: str, pipeline: str = "shop/prod", who: str = "dev") -> str:
    return await world[who].code(DEPLOY, deploy_vars(world, image, pipeline))


async def pipeline_view(world, pipeline: str, who: str = "dev") -> dict:
    return (await world[who].ok(PIPELINE, {"p": world.ids[pipeline]}))["pipeline"]


async def deployable(world, pipeline: str, who: str = "dev") -> list[str]:
    return [i["id"] for i in (await pipeline_view(world, pipeline, who))["deployableImages"]]


async def active_image(world, pipeline: str) -> str | None:
    active = (await pipeline_view(world, pipeline))["activeImage"]
    return active["id"] if active else None


async def active_on(world, image: str, who: str = "dev") -> set[str]:
    data = await world[who].ok(ACTIVE_ON, {"app": world.ids["shop"]})
    found = {e["node"]["id"]: e["node"]["activeOn"] for e in data["images"]["edges"]}
    return {env["name"] for env in found[image]}


async def read_deployment(world, deployment: str, who: str = "dev") -> dict:
    return (await world[who].ok(DEPLOYMENT, {"id": deployment}))["deployment"]


async def stored_state(request_id: str) -> ApprovalState:
    return ApprovalState((await ApprovalRequest.get(id=pk(request_id))).state)


async def approve_fully(world, request: str, acknowledge_stale: bool = False) -> None:
    for approver in ("approver1", "approver2"):
        await world.approve(request, approver, acknowledge_stale)


# --- R19: deployableImages -------------------------------------------------------------


async def test_r19_approval_required_lists_only_approved_images_newest_first(world):
    a = await world.register_image("dev", tag="a")
    b = await world.register_image("dev", tag="b")
    c = await world.register_image("dev", tag="c")
    await world.register_image("dev", tag="d")  # never requested
    e = await world.register_image("dev", tag="e")
    for image in (a, c):
        await approve_fully(world, await world.request_approval(image, who="dev2"))
    partial = await world.request_approval(b, who="dev2")
    await world.approve(partial, "approver1")  # 1 of 2: not approved (R12)
    rejected = await world.request_approval(e, who="dev2")
    await world["approver1"].ok(
        'mutation($id: ID!) { rejectRequest(id: $id, reason: "no") { id } }', {"id": rejected}
    )

    assert await deployable(world, "shop/prod") == [c, a]
    assert await deployable(world, "shop/prod", who="viewer") == [c, a]

    await world.deploy(c)
    assert await deployable(world, "shop/prod") == [a]
    # a's approval went stale when the newer c was deployed: rolling back says so.
    await world.deploy(a, acknowledge_stale=True)
    assert await deployable(world, "shop/prod") == []


async def test_r19_approval_required_empty_when_nothing_is_approved(world):
    image = await world.register_image("dev")
    await world.request_approval(image, who="dev2")
    assert await deployable(world, "shop/prod") == []


async def test_r19_no_approval_lists_all_the_applications_images_but_the_active_one(world):
    a = await world.register_image("dev", tag="a")
    b = await world.register_image("dev", tag="b")
    c = await world.register_image("dev2", tag="c")
    await world.register_image("billing_dev", "billing")  # another application
    assert await deployable(world, "shop/staging") == [c, b, a]

    await world.deploy(b, "shop/staging")
    assert await deployable(world, "shop/staging") == [c, a]
    # Approval on another pipeline plays no part here, and shop/prod still lists nothing.
    assert await deployable(world, "shop/prod") == []


async def test_r19_no_approval_empty_when_the_only_image_is_active(world):
    assert await deployable(world, "shop/staging") == []
    image = await world.register_image("dev")
    assert await deployable(world, "shop/staging") == [image]
    await world.deploy(image, "shop/staging")
    assert await deployable(world, "shop/staging") == []


# --- R20: approval is needed, and used once --------------------------------------------


async def test_r20_deploy_without_any_request_is_not_approved(world, unchanged):
    image = await world.register_image("dev")
    async with unchanged():
        assert await deploy_code(world, image) == "NOT_APPROVED"
        assert await deploy_code(world, image, who="admin") == "NOT_APPROVED"


async def test_r20_r12_partial_approval_is_not_approved(world, unchanged):
    image = await world.register_image("dev")
    request = await world.request_approval(image, who="dev2")
    async with unchanged():
        assert await deploy_code(world, image) == "NOT_APPROVED"
    await world.approve(request, "approver1")
    async with unchanged():
        assert await deploy_code(world, image) == "NOT_APPROVED"
    assert await stored_state(request) == ApprovalState.PENDING


async def test_r20_rejected_request_is_not_approved(world, unchanged):
    image = await world.register_image("dev")
    request = await world.request_approval(image, who="dev2")
    await world.approve(request, "approver1")
    await world["approver2"].ok(
        'mutation($id: ID!) { rejectRequest(id: $id, reason: "flaky") { id } }', {"id": request}
    )
    async with unchanged():
        assert await deploy_code(world, image) == "NOT_APPROVED"


async def test_r20_deploy_consumes_the_approved_request(world):
    image, request = await world.approved_image()
    data = await world["dev"].ok(DEPLOY, deploy_vars(world, image, "shop/prod"))
    deployment = data["deployImage"]
    assert deployment["status"] == "PROGRESSING"
    assert deployment["image"]["id"] == image
    assert deployment["pipeline"]["id"] == world.ids["shop/prod"]
    assert deployment["triggeredBy"]["id"] == world["dev"].user_id
    assert deployment["strategy"] == "ROLLING"
    assert deployment["finishedAt"] is None
    assert deployment["approvalRequest"] == {"id": request, "state": "CONSUMED"}

    assert await stored_state(request) == ApprovalState.CONSUMED
    row = await Deployment.get(id=pk(deployment["id"]))
    assert row.approval_request_id == pk(request)
    assert row.status == DeploymentStatus.PROGRESSING
    read = await world["viewer"].ok("query($id: ID!) { approvalRequest(id: $id) { state } }", {"id": request})
    assert read["approvalRequest"]["state"] == "CONSUMED"
    data = await world["dev"].ok(APPROVAL_STATE, {"app": world.ids["shop"], "p": world.ids["shop/prod"]})
    states = {e["node"]["id"]: e["node"]["approvalState"] for e in data["images"]["edges"]}
    assert states[image] == "CONSUMED"


async def test_r20_no_approval_pipeline_deploys_without_a_request(world):
    image = await world.register_image("dev")
    deployment = await world.deploy(image, "shop/staging")
    assert deployment["status"] == "PROGRESSING"
    assert (await read_deployment(world, deployment["id"]))["approvalRequest"] is None
    assert await ApprovalRequest.all().count() == 0


async def test_r20_an_image_deployed_once_needs_a_new_approval(world):
    """Deploy A, then B, then A again (a rollback): A's approval was used up. (A is older
    than the active B, so its new request is stale: it needs acknowledging.)"""
    a, first = await world.approved_image()
    b, _ = await world.approved_image()
    await world.deploy(a)
    await world.deploy(b)
    assert await active_image(world, "shop/prod") == b

    assert await deploy_code(world, a) == "NOT_APPROVED"
    assert await active_image(world, "shop/prod") == b

    second = await world.request_approval(a, who="dev2")
    assert second != first
    assert await deploy_code(world, a) == "NOT_APPROVED"  # pending
    await approve_fully(world, second, acknowledge_stale=True)
    deployment = await world.deploy(a, acknowledge_stale=True)
    assert deployment["status"] == "PROGRESSING"
    assert (await read_deployment(world, deployment["id"]))["approvalRequest"]["id"] == second
    assert await stored_state(second) == ApprovalState.CONSUMED
    assert await stored_state(first) == ApprovalState.CONSUMED
    assert await active_image(world, "shop/prod") == a


async def test_r20_a_failed_deploy_used_the_approval_up(world):
    """The approval allows one deploy: after it failed, the same image needs a new approval."""
    image, _ = await world.approved_image()
    deployment = await world.deploy(image)
    await finish_rollout(pk(deployment["id"]), DeploymentStatus.FAILED)
    assert await active_image(world, "shop/prod") is None
    assert await deploy_code(world, image) == "NOT_APPROVED"


# --- R21: approvers may not deploy what they approved ----------------------------------


async def test_r21_super_admin_who_approved_cannot_deploy(world, unchanged):
    image = await world.register_image("dev")
    request = await world.request_approval(image, who="dev2")
    await world.approve(request, "admin2")
    await world.approve(request, "approver1")
    async with unchanged():
        assert await deploy_code(world, image, who="admin2") == "APPROVER_CANNOT_DEPLOY"
    assert await stored_state(request) == ApprovalState.APPROVED
    # Someone who did not approve it may deploy it.
    deployment = await world.deploy(image, who="admin")
    assert deployment["status"] == "PROGRESSING"


async def test_r21_approver_with_deploy_role_cannot_deploy_what_they_approved(world, unchanged):
    await world["admin"].ok(
        GRANT,
        {"i": {"userId": world["approver3"].user_id, "role": "BUILD_AND_DEPLOY", "application": "shop"}},
    )
    mine = await world.register_image("dev")
    request = await world.request_approval(mine, who="dev2")
    await world.approve(request, "approver3")
    await world.approve(request, "approver1")
    async with unchanged():
        assert await deploy_code(world, mine, who="approver3") == "APPROVER_CANNOT_DEPLOY"

    # Another image that approver3 did not approve: approver3 may deploy it.
    other, _ = await world.approved_image()
    deployment = await world.deploy(other, who="approver3")
    assert deployment["status"] == "PROGRESSING"


async def test_r21_approvers_can_deploy_when_the_pipeline_allows_it(world):
    image = await world.register_image("dev")
    request = await world.request_approval(image, who="dev2")
    await world.approve(request, "admin2")
    await world.approve(request, "approver1")
    await world["admin"].ok(
        UPDATE_POLICY,
        {
            "p": world.ids["shop/prod"],
            "i": {"requiredApprovals": 2, "ttlHours": 24, "approversCanDeploy": True},
        },
    )
    deployment = await world.deploy(image, who="admin2")
    assert deployment["status"] == "PROGRESSING"
    assert await stored_state(request) == ApprovalState.CONSUMED


# --- R22: the active image ------------------------------------------------------------


async def test_r22_deploying_the_active_image_again_is_conflict(world, unchanged):
    image = await world.register_image("dev")
    deployment = await world.deploy(image, "shop/staging")
    async with unchanged():
        error = await world["dev"].fails(DEPLOY, deploy_vars(world, image, "shop/staging"))
        assert error["extensions"]["code"] == "CONFLICT"
        assert error["extensions"].get("existingId") == deployment["id"]
    await finish_due_rollouts(0)
    async with unchanged():
        assert await deploy_code(world, image, "shop/staging") == "CONFLICT"


async def test_r22_active_image_on_approval_pipeline_is_conflict(world, unchanged):
    image, _ = await world.approved_image()
    await world.deploy(image)
    async with unchanged():
        assert await deploy_code(world, image) == "CONFLICT"
        assert await deploy_code(world, image, who="admin") == "CONFLICT"


async def test_r22_r23_an_image_no_longer_active_may_be_deployed_again(world):
    a = await world.register_image("dev")
    b = await world.register_image("dev")
    first = await world.deploy(a, "shop/staging")
    await finish_due_rollouts(0)
    await world.deploy(b, "shop/staging")
    again = await world.deploy(a, "shop/staging")
    assert again["status"] == "PROGRESSING"
    assert again["id"] != first["id"]
    assert await active_image(world, "shop/staging") == a


# --- R23: rollout and the active image --------------------------------------------------


async def test_r23_deployment_progresses_then_becomes_healthy(world):
    image = await world.register_image("dev")
    deployment = await world.deploy(image, "shop/staging")
    assert deployment["status"] == "PROGRESSING"
    view = await pipeline_view(world, "shop/staging")
    assert view["activeImage"] == {"id": image}
    assert view["activeDeployment"]["id"] == deployment["id"]
    assert view["activeDeployment"]["status"] == "PROGRESSING"
    assert await active_on(world, image) == {"staging"}

    assert await finish_due_rollouts(0) == 1
    read = await read_deployment(world, deployment["id"])
    assert read["status"] == "HEALTHY"
    assert read["finishedAt"] is not None
    assert datetime.fromisoformat(read["finishedAt"]) >= datetime.fromisoformat(read["startedAt"])
    row = await Deployment.get(id=pk(deployment["id"]))
    assert row.status == DeploymentStatus.HEALTHY
    assert row.finished_at is not None
    view = await pipeline_view(world, "shop/staging")
    assert view["activeImage"] == {"id": image}
    assert view["activeDeployment"]["status"] == "HEALTHY"
    assert await finish_due_rollouts(0) == 0


async def test_r23_new_deployment_supersedes_a_progressing_one(world):
    a = await world.register_image("dev")
    b = await world.register_image("dev")
    first = await world.deploy(a, "shop/staging")
    second = await world.deploy(b, "shop/staging")
    assert (await read_deployment(world, first["id"]))["status"] == "SUPERSEDED"
    assert (await Deployment.get(id=pk(first["id"]))).status == DeploymentStatus.SUPERSEDED
    assert (await read_deployment(world, second["id"]))["status"] == "PROGRESSING"
    assert await active_image(world, "shop/staging") == b
    assert await active_on(world, a) == set()
    assert await active_on(world, b) == {"staging"}
    # The superseded one is not finished later by the rollout driver.
    assert await finish_due_rollouts(0) == 1
    assert (await read_deployment(world, first["id"]))["status"] == "SUPERSEDED"
    assert (await read_deployment(world, second["id"]))["status"] == "HEALTHY"


async def test_r23_new_deployment_leaves_a_healthy_one_alone(world):
    a = await world.register_image("dev")
    b = await world.register_image("dev")
    first = await world.deploy(a, "shop/staging")
    await finish_due_rollouts(0)
    await world.deploy(b, "shop/staging")
    assert (await read_deployment(world, first["id"]))["status"] == "HEALTHY"
    assert await active_image(world, "shop/staging") == b
    assert await active_on(world, a) == set()


async def test_r23_failed_newest_deployment_falls_back_to_the_older_healthy_one(world):
    a = await world.register_image("dev")
    b = await world.register_image("dev")
    first = await world.deploy(a, "shop/staging")
    await finish_due_rollouts(0)
    second = await world.deploy(b, "shop/staging")
    assert await active_image(world, "shop/staging") == b

    await finish_rollout(pk(second["id"]), DeploymentStatus.FAILED)
    read = await read_deployment(world, second["id"])
    assert read["status"] == "FAILED"
    assert read["finishedAt"] is not None
    view = await pipeline_view(world, "shop/staging")
    assert view["activeImage"] == {"id": a}
    assert view["activeDeployment"]["id"] == first["id"]
    assert await active_on(world, a) == {"staging"}
    assert await active_on(world, b) == set()
    # a is active again, so it is not deployable and deploying it is a CONFLICT (R19, R22).
    assert await deployable(world, "shop/staging") == [b]
    assert await deploy_code(world, a, "shop/staging") == "CONFLICT"


async def test_r23_degraded_newest_deployment_is_not_active(world):
    a = await world.register_image("dev")
    b = await world.register_image("dev")
    await world.deploy(a, "shop/staging")
    await finish_due_rollouts(0)
    second = await world.deploy(b, "shop/staging")
    await finish_rollout(pk(second["id"]), DeploymentStatus.DEGRADED)
    assert await active_image(world, "shop/staging") == a


async def test_r23_no_active_image_when_every_deployment_failed_or_was_superseded(world):
    a = await world.register_image("dev")
    b = await world.register_image("dev")
    await world.deploy(a, "shop/staging")
    second = await world.deploy(b, "shop/staging")  # supersedes a's rollout
    await finish_rollout(pk(second["id"]), DeploymentStatus.FAILED)
    view = await pipeline_view(world, "shop/staging")
    assert view["activeImage"] is None
    assert view["activeDeployment"] is None
    assert await active_on(world, a) == set()
    assert await active_on(world, b) == set()
    assert await deployable(world, "shop/staging") == [b, a]


async def test_r23_active_on_lists_every_environment_where_the_image_is_active(world):
    image, _ = await world.approved_image()
    await world.deploy(image, "shop/staging")
    await world.deploy(image, "shop/prod")
    assert await active_on(world, image) == {"staging", "prod"}
    # prod_approver sees only shop/prod (R1).
    assert await active_on(world, image, who="prod_approver") == {"prod"}
    other = await world.register_image("dev")
    await world.deploy(other, "shop/staging")
    assert await active_on(world, image) == {"prod"}
    assert await active_on(world, other) == {"staging"}


# --- R3: who may deploy ----------------------------------------------------------------


async def test_r3_viewer_and_approvers_get_forbidden(world, unchanged):
    image, request = await world.approved_image()
    staging_image = await world.register_image("dev")
    async with unchanged():
        for who in ("viewer", "approver1", "approver3", "prod_approver"):
            assert await deploy_code(world, image, who=who) == "FORBIDDEN", who
        for who in ("viewer", "approver3"):
            assert await deploy_code(world, staging_image, "shop/staging", who=who) == "FORBIDDEN", who
    assert await stored_state(request) == ApprovalState.APPROVED


async def test_r3_r1_outsiders_get_not_found(world, unchanged):
    image, _ = await world.approved_image()
    async with unchanged():
        for who in ("nobody", "billing_dev", "billing_approver"):
            assert await deploy_code(world, image, who=who) == "NOT_FOUND", who
        # prod_approver sees shop/prod but not shop/staging.
        assert await deploy_code(world, image, "shop/staging", who="prod_approver") == "NOT_FOUND"


async def test_r3_super_admin_may_deploy(world):
    image, request = await world.approved_image()
    deployment = await world.deploy(image, who="admin")
    assert deployment["status"] == "PROGRESSING"
    assert await stored_state(request) == ApprovalState.CONSUMED
    billing = await world.register_image("billing_dev", "billing")
    assert await deploy_code(world, billing, "shop/staging", who="admin") == "BAD_USER_INPUT"


# --- Pipeline.deployments --------------------------------------------------------------


async def test_pipeline_deployments_are_paginated_newest_first(world):
    deployed = []
    for _ in range(5):
        image = await world.register_image("dev")
        deployed.append((await world.deploy(image, "shop/staging"))["id"])
    prod_image, _ = await world.approved_image()
    await world.deploy(prod_image)  # another pipeline's deployment is not listed

    seen, statuses, after = [], [], None
    pages = []
    while True:
        data = await world["viewer"].ok(
            DEPLOYMENTS, {"p": world.ids["shop/staging"], "first": 2, "after": after}
        )
        connection = data["pipeline"]["deployments"]
        assert connection["totalCount"] == 5
        pages.append(len(connection["edges"]))
        seen += [e["node"]["id"] for e in connection["edges"]]
        statuses += [e["node"]["status"] for e in connection["edges"]]
        if not connection["pageInfo"]["hasNextPage"]:
            break
        after = connection["pageInfo"]["endCursor"]
        assert after == connection["edges"][-1]["cursor"]
    assert pages == [2, 2, 1]
    assert seen == list(reversed(deployed))
    assert statuses == ["PROGRESSING"] + ["SUPERSEDED"] * 4

    data = await world["dev"].ok(DEPLOYMENTS, {"p": world.ids["shop/staging"], "first": 20})
    assert [e["node"]["id"] for e in data["pipeline"]["deployments"]["edges"]] == list(reversed(deployed))
    assert data["pipeline"]["deployments"]["pageInfo"]["hasNextPage"] is False


# --- R23 after a restart ---------------------------------------------------------------


async def test_r23_rollout_found_progressing_after_a_restart_is_finished(world, settings):
    """State lives in the database: a new process finishes what the old one left."""
    staging_image = await world.register_image("dev")
    old = await world.deploy(staging_image, "shop/staging")
    prod_image, _ = await world.approved_image()
    recent = await world.deploy(prod_image)
    long_ago = datetime.now(UTC) - timedelta(seconds=settings.rollout_seconds + 600)
    await Deployment.filter(id=pk(old["id"])).update(started_at=long_ago)

    # "Restart": a new app with its own authorizer, then one round of the rollout job.
    app = create_app(settings, manage_database=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://greenlight.test") as http:
        dev = Client(http, world["dev"].token)
        assert await finish_due_rollouts(settings.rollout_seconds) == 1

        data = await dev.ok(DEPLOYMENT, {"id": old["id"]})
        assert data["deployment"]["status"] == "HEALTHY"
        assert data["deployment"]["finishedAt"] is not None
        data = await dev.ok(DEPLOYMENT, {"id": recent["id"]})
        assert data["deployment"]["status"] == "PROGRESSING"
        assert data["deployment"]["finishedAt"] is None
        data = await dev.ok(PIPELINE, {"p": world.ids["shop/staging"]})
        assert data["pipeline"]["activeDeployment"]["status"] == "HEALTHY"
    assert (await Deployment.get(id=pk(recent["id"]))).status == DeploymentStatus.PROGRESSING
