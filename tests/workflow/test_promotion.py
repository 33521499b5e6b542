"""Promotion: a pipeline may require that an image has been HEALTHY on another environment
of its application before it may be requested there (staging before prod); otherwise
requestApproval is PROMOTION_REQUIRED naming the environment, and
viewerCanRequestApproval says the same."""

from __future__ import annotations

from greenlight.jobs import finish_due_rollouts
from greenlight.models import AuditEvent, Deployment, DeploymentStatus
from tests.workflow.test_why_cant_i import CAN_REQUEST, agrees, pipeline_decision

UPDATE = """mutation($p: ID!, $i: PipelineUpdateInput!) {
  updatePipeline(id: $p, input: $i) { approvalPolicy { requiresHealthyOn { id name } } }
}"""
UPDATE_POLICY = """mutation($p: ID!, $i: ApprovalPolicyInput!) {
  updateApprovalPolicy(pipelineId: $p, input: $i) { approvalPolicy { requiresHealthyOn { name } } }
}"""
REQUEST = "mutation($i: RequestApprovalInput!) { requestApproval(input: $i) { id } }"
CREATE_ENVIRONMENT = 'mutation { createEnvironment(name: "qa") { id } }'


async def promote_from_staging(world) -> None:
    data = await world["admin"].ok(
        UPDATE, {"p": world.ids["shop/prod"], "i": {"requiresHealthyOn": world.ids["staging"]}}
    )
    assert data["updatePipeline"]["approvalPolicy"]["requiresHealthyOn"]["name"] == "staging"


def request_input(world, image: str, pipeline: str = "shop/prod") -> dict:
    return {"i": {"pipelineId": world.ids[pipeline], "imageId": image}}


async def test_promotion_required_until_healthy_on_staging(world, unchanged):
    """Promotion: with shop/prod requiring staging, an image never deployed on staging, or
    deployed there and still PROGRESSING, is PROMOTION_REQUIRED naming staging (message and
    extensions.environment), and nothing is created; once its staging deployment is
    HEALTHY it may be requested; the explanation agrees at each step."""
    await promote_from_staging(world)
    image = await world.register_image("dev")

    async def refused() -> None:
        async with unchanged():
            decision = await pipeline_decision(world, "dev2", CAN_REQUEST, "shop/prod", image)
            error = await world["dev2"].fails(REQUEST, request_input(world, image))
        agrees(decision, error["extensions"]["code"], "request before promotion")
        assert error["extensions"] == {"code": "PROMOTION_REQUIRED", "environment": "staging"}
        assert "shop/staging" in error["message"]
        assert decision["reason"] == "Deploy this image to staging first: it has not been healthy there yet"

    await refused()
    await world.deploy(image, "shop/staging")
    await refused()  # PROGRESSING is not HEALTHY yet
    assert await finish_due_rollouts(0) == 1
    decision = await pipeline_decision(world, "dev2", CAN_REQUEST, "shop/prod", image)
    assert decision["allowed"] is True
    await world.request_approval(image, who="dev2")


async def test_promotion_a_failed_or_degraded_rollout_does_not_count(world):
    """Promotion: only a deployment that reached HEALTHY counts; one that ended FAILED or
    DEGRADED on staging does not, and a HEALTHY one stays counted after a newer image
    replaced it there."""
    await promote_from_staging(world)
    failed = await world.register_image("dev")
    deployment = await world.deploy(failed, "shop/staging")
    await Deployment.filter(id=int(deployment["id"].split(":")[1])).update(status=DeploymentStatus.FAILED)
    assert await world["dev2"].code(REQUEST, request_input(world, failed)) == "PROMOTION_REQUIRED"

    healthy = await world.register_image("dev")
    await world.deploy(healthy, "shop/staging")
    await finish_due_rollouts(0)
    newer = await world.register_image("dev")
    await world.deploy(newer, "shop/staging")  # staging runs something else now
    await world.request_approval(healthy, who="dev2")


async def test_promotion_setting_is_validated_kept_and_cleared(world, unchanged):
    """Promotion, the setting: requiresHealthyOn must be another environment with a pipeline
    of the same application (else BAD_USER_INPUT, nothing changes); left out it keeps its
    value, also through updateApprovalPolicy; clearRequiresHealthyOn removes it; it is in
    the audit log."""
    qa = (await world["admin"].ok(CREATE_ENVIRONMENT))["createEnvironment"]["id"]
    p = world.ids["shop/prod"]
    async with unchanged():
        for value in (world.ids["prod"], qa, "Environment:9999"):
            error = await world["admin"].fails(UPDATE, {"p": p, "i": {"requiresHealthyOn": value}})
            assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "requiresHealthyOn"}, value
        both = {"requiresHealthyOn": world.ids["staging"], "clearRequiresHealthyOn": True}
        assert (await world["admin"].fails(UPDATE, {"p": p, "i": both}))["extensions"][
            "code"
        ] == "BAD_USER_INPUT"
        assert await world["dev"].code(
            UPDATE, {"p": p, "i": {"requiresHealthyOn": world.ids["staging"]}}
        ) == ("FORBIDDEN")
    await promote_from_staging(world)
    event = await AuditEvent.filter(action="update_pipeline").order_by("-id").first()
    assert event.before["requiresHealthyOn"] is None
    assert event.after["requiresHealthyOn"] == int(world.ids["staging"].split(":")[1])
    kept = await world["admin"].ok(UPDATE_POLICY, {"p": p, "i": {"requiredApprovals": 2, "ttlHours": 24}})
    assert kept["updateApprovalPolicy"]["approvalPolicy"]["requiresHealthyOn"] == {"name": "staging"}
    cleared = await world["admin"].ok(UPDATE, {"p": p, "i": {"clearRequiresHealthyOn": True}})
    assert cleared["updatePipeline"]["approvalPolicy"]["requiresHealthyOn"] is None
    image = await world.register_image("dev")
    await world.request_approval(image, who="dev2")


async def test_promotion_refusal_order_after_the_image_and_live_request_checks(world):
    """Promotion, order: a request refused for other reasons first says those (the image of
    another application: BAD_USER_INPUT; a live request already: CONFLICT)."""
    image = await world.register_image("dev")
    await world.request_approval(image, who="dev2")
    await promote_from_staging(world)
    assert await world["dev2"].code(REQUEST, request_input(world, image)) == "CONFLICT"
    billing = await world.register_image("admin", "billing")
    assert await world["admin"].code(REQUEST, request_input(world, billing)) == "BAD_USER_INPUT"
