"""R25 (publication part): subscribers see the changes they may see, and only those."""

import asyncio

from greenlight.api import schema
from greenlight.jobs import finish_due_rollouts
from greenlight.models import User
from greenlight.policies import Actor
from greenlight.schema.context import Context


async def _context(app, email: str) -> Context:
    authorizer = app.state.authorizer
    await authorizer.refresh()
    user = await User.get(email=email)
    return Context(request=None, response=None, request_id="test", actor_or_none=Actor(user, authorizer))


async def _next(stream, timeout: float = 5.0):
    return await asyncio.wait_for(stream.__anext__(), timeout)


async def test_r25_deployment_status_streams_progressing_then_healthy_and_ends(app, world):
    image = await world.register_image("dev")
    deployment = await world.deploy(image, "shop/staging")
    stream = await schema.subscribe(
        "subscription($id: ID!) { deploymentStatus(deploymentId: $id) { id status } }",
        variable_values={"id": deployment["id"]},
        context_value=await _context(app, "viewer@example.com"),
    )
    first = await _next(stream)
    assert first.errors is None
    assert first.data["deploymentStatus"]["status"] == "PROGRESSING"

    pending = asyncio.ensure_future(_next(stream))
    await asyncio.sleep(0.05)  # the subscriber is waiting for the next change
    await finish_due_rollouts(0)
    second = await pending
    assert second.data["deploymentStatus"] == {"id": deployment["id"], "status": "HEALTHY"}
    ended = asyncio.ensure_future(_next(stream, timeout=2))
    try:
        await ended
        raise AssertionError("the stream should end after a terminal status")
    except StopAsyncIteration:
        pass


async def test_r25_outsider_cannot_subscribe_to_another_applications_deployment(app, world):
    image = await world.register_image("dev")
    deployment = await world.deploy(image, "shop/staging")
    result = await schema.subscribe(
        "subscription($id: ID!) { deploymentStatus(deploymentId: $id) { status } }",
        variable_values={"id": deployment["id"]},
        context_value=await _context(app, "billing_dev@example.com"),
    )
    first = await _next(result)
    assert first.errors[0].extensions["code"] == "NOT_FOUND"


async def test_r25_approval_request_events_reach_only_those_who_may_see_them(app, world):
    query = "subscription { approvalRequestEvents { id state } }"
    shop_stream = await schema.subscribe(query, context_value=await _context(app, "viewer@example.com"))
    billing_stream = await schema.subscribe(
        query, context_value=await _context(app, "billing_dev@example.com")
    )
    shop_next = asyncio.ensure_future(_next(shop_stream))
    billing_next = asyncio.ensure_future(_next(billing_stream, timeout=1))
    await asyncio.sleep(0.05)

    image = await world.register_image("dev")
    request = await world.request_approval(image, "shop/prod", who="dev2")

    event = await shop_next
    assert event.data["approvalRequestEvents"] == {"id": request, "state": "PENDING"}
    try:
        await billing_next
        raise AssertionError("billing_dev must not see a shop request")
    except TimeoutError:
        pass

    second = asyncio.ensure_future(_next(shop_stream))
    await asyncio.sleep(0.05)
    await world.approve(request, "approver1")
    assert (await second).data["approvalRequestEvents"] == {"id": request, "state": "PENDING"}
    await shop_stream.aclose()
    await billing_stream.aclose()
