"""R15: reads are as strict as checks. What changes by the clock alone (a request passing
its `expiresAt`, a freeze window opening) shows in the very next read, however recently
the same user asked the same question, with nothing written in between.

Time: the `clock` fixture sets the "now" every Greenlight module reads; each question is
asked twice before the clock moves, so an answer kept from an earlier read would be given."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

REQUEST = "query($id: ID!) { approvalRequest(id: $id) { state expiresAt } }"
SELECT_IMAGE = "query($p: ID!) { pipeline(id: $p) { deployableImages { id } } }"
FROZEN_UNTIL = "query($p: ID!) { pipeline(id: $p) { frozenUntil } }"


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


async def test_r15_r19_request_past_expires_at_reads_expired_and_leaves_select_image_at_once(world, clock):
    clock.set(datetime.now(UTC))
    image, request = await world.approved_image("shop/prod")
    viewer, dev = world["viewer"], world["dev"]
    pipeline = {"p": world.ids["shop/prod"]}
    expires_at = parse((await viewer.ok(REQUEST, {"id": request}))["approvalRequest"]["expiresAt"])
    clock.set(expires_at - timedelta(milliseconds=1))
    for _ in range(2):
        assert (await viewer.ok(REQUEST, {"id": request}))["approvalRequest"]["state"] == "APPROVED"
        listed = (await dev.ok(SELECT_IMAGE, pipeline))["pipeline"]["deployableImages"]
        assert [i["id"] for i in listed] == [image]

    clock.set(expires_at + timedelta(milliseconds=1))
    assert (await viewer.ok(REQUEST, {"id": request}))["approvalRequest"]["state"] == "EXPIRED"
    assert (await dev.ok(SELECT_IMAGE, pipeline))["pipeline"]["deployableImages"] == []


async def test_r15_freeze_opening_by_the_clock_is_seen_at_once(world, clock):
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    end = start + timedelta(hours=2)
    await world["admin"].ok(
        "mutation($i: DeployFreezeInput!) { createDeployFreeze(input: $i) { id } }",
        {
            "i": {
                "name": "release freeze",
                "pipelineId": world.ids["shop/staging"],
                "startsAt": start.isoformat(),
                "endsAt": end.isoformat(),
            }
        },
    )
    pipeline = {"p": world.ids["shop/staging"]}
    clock.set(start - timedelta(milliseconds=1))
    for _ in range(2):
        assert (await world["viewer"].ok(FROZEN_UNTIL, pipeline))["pipeline"]["frozenUntil"] is None
    clock.set(start)
    frozen_until = (await world["viewer"].ok(FROZEN_UNTIL, pipeline))["pipeline"]["frozenUntil"]
    assert frozen_until is not None and parse(frozen_until) == end
