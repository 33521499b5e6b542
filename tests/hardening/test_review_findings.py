"""Regressions for what an independent review found: each test asserts the safe answer."""

import asyncio

from greenlight.api import schema
from greenlight.jobs import finish_due_rollouts
from greenlight.models import AuditEvent, Deployment, RoleBinding, User
from greenlight.policies import Actor
from greenlight.schema.context import Context

CREATE_PIPE = "mutation($i: CreatePipelineInput!) { createPipeline(input: $i) { id } }"
DEPLOY = "mutation($i: DeployImageInput!) { deployImage(input: $i) { id } }"


async def _auto_pipeline(world) -> None:
    data = await world["admin"].ok(
        CREATE_PIPE,
        {
            "i": {
                "applicationId": world.ids["billing"],
                "environmentId": world.ids["staging"],
                "requiredApprovals": 1,
                "triggerType": "AUTOMATIC",
            }
        },
    )
    world.ids["billing/staging"] = data["createPipeline"]["id"]


def _pk(global_id: str) -> int:
    return int(global_id.rpartition(":")[2])


async def test_r24_no_automatic_deploy_for_a_deactivated_requester(world):
    """R24 with R3: the system deploys for the requester only with the requester's rights."""
    await _auto_pipeline(world)
    image = await world.register_image("admin", "billing")
    request = await world.request_approval(image, "billing/staging", who="billing_dev")
    await world["admin"].ok(
        "mutation($id: ID!) { deactivateUser(id: $id) { id } }", {"id": world["billing_dev"].user_id}
    )
    assert (await world.approve(request, "billing_approver"))["state"] == "APPROVED"
    assert await Deployment.all().count() == 0
    assert await AuditEvent.filter(action="automatic_deploy_skipped").count() == 1


async def test_r24_no_automatic_deploy_for_a_requester_whose_role_was_revoked(world):
    await _auto_pipeline(world)
    image = await world.register_image("admin", "billing")
    request = await world.request_approval(image, "billing/staging", who="billing_dev")
    binding = await RoleBinding.get(user_id=_pk(world["billing_dev"].user_id))
    await world["admin"].ok(
        "mutation($id: ID!) { revokeRole(id: $id) { id } }", {"id": f"RoleBinding:{binding.id}"}
    )
    assert (await world.approve(request, "billing_approver"))["state"] == "APPROVED"
    assert await Deployment.all().count() == 0
    # someone who may deploy still can, on that approval
    deployed = await world["admin"].execute(
        DEPLOY, {"i": {"pipelineId": world.ids["billing/staging"], "imageId": image}}
    )
    assert deployed.get("errors") is None, deployed
    assert await Deployment.all().count() == 1


async def test_r1_deployment_status_stream_ends_when_the_subscriber_loses_access(app, world):
    image = await world.register_image("dev")
    deployment = await world.deploy(image, "shop/staging")
    authorizer = app.state.authorizer
    await authorizer.refresh()
    viewer = await User.get(email="viewer@example.com")

    class Socket:
        async def close(self, code, reason):
            pass

    context = Context(
        request=Socket(),
        response=None,
        request_id="t",
        actor_or_none=Actor(viewer, authorizer),
        authorization=f"Bearer {world['viewer'].token}",
    )
    stream = await schema.subscribe(
        "subscription($id: ID!) { deploymentStatus(deploymentId: $id) { status image { digest } } }",
        variable_values={"id": deployment["id"]},
        context_value=context,
    )
    assert (await asyncio.wait_for(stream.__anext__(), 5)).errors is None
    binding = await RoleBinding.get(user_id=viewer.id)
    await world["admin"].ok(
        "mutation($id: ID!) { revokeRole(id: $id) { id } }", {"id": f"RoleBinding:{binding.id}"}
    )
    following = asyncio.ensure_future(asyncio.wait_for(stream.__anext__(), 5))
    await asyncio.sleep(0.05)
    await finish_due_rollouts(0)
    try:
        leaked = await following
        raise AssertionError(f"a revoked viewer still received {leaked.data}")
    except StopAsyncIteration:
        pass


async def test_unicode_digits_in_ids_and_cursors_are_bad_input(world):
    for query in (
        'query { pipeline(id: "Pipeline:\u00b2") { id } }',
        'query { approvalRequests(after: "Cursor:\u00b2") { totalCount } }',
    ):
        assert await world["viewer"].code(query) == "BAD_USER_INPUT", query


async def test_a_subscription_sent_over_http_is_bad_input(world):
    assert await world["viewer"].code("subscription { approvalRequestEvents { id } }") == "BAD_USER_INPUT"


async def test_control_characters_in_text_are_bad_input_and_change_nothing(world, unchanged):
    image = await world.register_image("dev")
    async with unchanged():
        cases = [
            (
                world["dev2"],
                "mutation($i: RequestApprovalInput!) { requestApproval(input: $i) { id } }",
                {"i": {"pipelineId": world.ids["shop/prod"], "imageId": image, "comment": "a\u0000b"}},
            ),
            (world["viewer"], 'query { pipelineFor(application: "a\\u0000", environment: "b") { id } }', {}),
            (
                world["admin"],
                "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }",
                {"i": {"email": "x@example.com", "name": "a\u0000"}},
            ),
            (
                world["admin"],
                "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }",
                {"i": {"email": "x\u0000@example.com", "name": "x"}},
            ),
        ]
        for client, query, variables in cases:
            assert await client.code(query, variables) == "BAD_USER_INPUT", (query, variables)


async def test_out_of_range_audit_times_are_bad_input(world):
    for variables in ({"s": "0001-01-01T00:00:00+14:00"}, {"u": "9999-12-31T23:59:59-14:00"}):
        code = await world["admin"].code(
            "query($s: DateTime, $u: DateTime) { auditEvents(filter: {since: $s, until: $u}) { totalCount } }",
            variables,
        )
        assert code == "BAD_USER_INPUT", variables
