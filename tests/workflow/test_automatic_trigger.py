"""R24: on an AUTOMATIC pipeline the approval that completes a request deploys it."""

from greenlight.models import ApprovalRequest, AuditEvent, Deployment


async def _automatic_pipeline(world, required: int = 1) -> str:
    data = await world["admin"].ok(
        """mutation($i: CreatePipelineInput!) { createPipeline(input: $i) { id triggerType } }""",
        {
            "i": {
                "applicationId": world.ids["billing"],
                "environmentId": world.ids["staging"],
                "requiredApprovals": required,
                "triggerType": "AUTOMATIC",
            }
        },
    )
    assert data["createPipeline"]["triggerType"] == "AUTOMATIC"
    world.ids["billing/staging"] = data["createPipeline"]["id"]
    return world.ids["billing/staging"]


async def test_r24_completing_approval_deploys_for_the_requester(world):
    pipeline_id = await _automatic_pipeline(world)
    image = await world.register_image("admin", "billing")
    request = await world.request_approval(image, "billing/staging", who="billing_dev")

    approved = await world.approve(request, "billing_approver")

    assert approved["state"] == "CONSUMED"
    data = await world["billing_dev"].ok(
        """query($id: ID!) { pipeline(id: $id) {
             activeImage { id }
             activeDeployment { status triggeredBy { email } approvalRequest { id state } }
           } }""",
        {"id": pipeline_id},
    )
    pipeline = data["pipeline"]
    assert pipeline["activeImage"]["id"] == image
    assert pipeline["activeDeployment"]["status"] == "PROGRESSING"
    assert pipeline["activeDeployment"]["triggeredBy"]["email"] == "billing_dev@example.com"
    assert pipeline["activeDeployment"]["approvalRequest"] == {"id": request, "state": "CONSUMED"}
    deploy_event = await AuditEvent.get(action="deploy")
    assert deploy_event.actor_id is None  # the system acted
    assert deploy_event.after["triggeredBy"] == int(world["billing_dev"].user_id.removeprefix("User:"))


async def test_r24_partial_approval_deploys_nothing(world):
    await _automatic_pipeline(world, required=2)
    await world["admin"].ok(
        """mutation($i: RoleBindingInput!) { grantRole(input: $i) { id } }""",
        {"i": {"userId": world["approver1"].user_id, "role": "IMAGE_APPROVER", "application": "billing"}},
    )
    image = await world.register_image("admin", "billing")
    request = await world.request_approval(image, "billing/staging", who="billing_dev")

    assert (await world.approve(request, "billing_approver"))["state"] == "PENDING"
    assert await Deployment.all().count() == 0

    assert (await world.approve(request, "approver1"))["state"] == "CONSUMED"
    assert await Deployment.all().count() == 1
    stored = await ApprovalRequest.get(id=int(request.removeprefix("ApprovalRequest:")))
    assert stored.state == "CONSUMED"


async def test_manual_pipeline_waits_for_a_deploy(world):
    """The contrast to R24: on a MANUAL pipeline approval alone deploys nothing."""
    image, request = await world.approved_image("shop/prod")
    assert await Deployment.all().count() == 0
    stored = await ApprovalRequest.get(id=int(request.removeprefix("ApprovalRequest:")))
    assert stored.state == "APPROVED"
