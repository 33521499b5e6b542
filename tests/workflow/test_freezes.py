"""Deploy freezes: one-off windows at both edges, weekly windows in a time zone
(wrapping over the week's end, across the DST changes of Europe/Berlin), DEPLOY_FROZEN with
when it ends, the super-admin override with its reason (audited), automatic pipelines (R24)
that wait, Pipeline.frozenUntil, and createDeployFreeze's refusals (R2, BAD_USER_INPUT).

Time: Greenlight reads "now" from `greenlight.clock`; the `clock` fixture sets the
"now" every workflow module sees. Tests that need no particular instant use real time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

FREEZE_FIELDS = """
  id name environment { id } pipeline { id } startsAt endsAt
  weekly { timeZone startDay startTime endDay endTime } createdBy { id } createdAt
"""
CREATE_FREEZE = f"""mutation($i: DeployFreezeInput!) {{
  createDeployFreeze(input: $i) {{ {FREEZE_FIELDS} }}
}}"""
DELETE_FREEZE = "mutation($id: ID!) { deleteDeployFreeze(id: $id) { id name } }"
FREEZES = "query($e: ID, $p: ID) { deployFreezes(environmentId: $e, pipelineId: $p) { id } }"
PIPELINE = "query($p: ID!) { pipeline(id: $p) { frozenUntil deployFreezes { id } } }"
DEPLOY = """mutation($i: DeployImageInput!) {
  deployImage(input: $i) {
    id status freezeOverrideReason approvalException triggeredBy { id } approvalRequest { id state }
  }
}"""
DEPLOYMENT = "query($id: ID!) { deployment(id: $id) { id freezeOverrideReason } }"
AUDIT = """query($f: AuditEventFilter) {
  auditEvents(filter: $f, first: 100) { edges { node { action objectId actor { id } after } } }
}"""
REQUEST_STATE = "query($id: ID!) { approvalRequest(id: $id) { state } }"
ACTIVE = "query($p: ID!) { pipeline(id: $p) { activeImage { id } activeDeployment { id } } }"


def parse(value: str | datetime) -> datetime:
    found = value if isinstance(value, datetime) else datetime.fromisoformat(value.replace("Z", "+00:00"))
    return found.astimezone(UTC)


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def real_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


async def create_freeze(world, who: str = "admin", name: str = "release freeze", **fields) -> dict:
    data = await world[who].ok(CREATE_FREEZE, {"i": {"name": name, **fields}})
    return data["createDeployFreeze"]


async def one_off(world, start: datetime, end: datetime, environment: str | None = None, pipeline=None):
    target = {"environmentId": world.ids[environment]} if environment else {"pipelineId": world.ids[pipeline]}
    return await create_freeze(world, startsAt=iso(start), endsAt=iso(end), **target)


def weekly(zone: str, start_day: str, start_time: str, end_day: str, end_time: str) -> dict:
    return {
        "timeZone": zone,
        "startDay": start_day,
        "startTime": start_time,
        "endDay": end_day,
        "endTime": end_time,
    }


def deploy_vars(world, image: str, pipeline: str = "shop/staging", **extra) -> dict:
    return {"i": {"pipelineId": world.ids[pipeline], "imageId": image, **extra}}


async def frozen_until(world, pipeline: str = "shop/staging", who: str = "dev") -> datetime | None:
    found = (await world[who].ok(PIPELINE, {"p": world.ids[pipeline]}))["pipeline"]["frozenUntil"]
    return parse(found) if found else None


async def pipeline_freezes(world, pipeline: str, who: str = "dev") -> list[str]:
    found = (await world[who].ok(PIPELINE, {"p": world.ids[pipeline]}))["pipeline"]["deployFreezes"]
    return sorted(f["id"] for f in found)


async def freezes(world, who: str = "admin", environment: str | None = None, pipeline=None) -> list[str]:
    variables = {
        "e": world.ids[environment] if environment else None,
        "p": world.ids[pipeline] if pipeline else None,
    }
    return sorted(f["id"] for f in (await world[who].ok(FREEZES, variables))["deployFreezes"])


async def audit_events(world, action: str) -> list[dict]:
    data = await world["admin"].ok(AUDIT, {"f": {"action": action}})
    return [e["node"] for e in data["auditEvents"]["edges"]]


def assert_frozen_error(error: dict, until: datetime) -> None:
    """DEPLOY_FROZEN, extensions.frozenUntil is `until`, and the message says it (ISO)."""
    assert error["extensions"]["code"] == "DEPLOY_FROZEN", error
    assert parse(error["extensions"]["frozenUntil"]) == until, error
    said = error["extensions"]["frozenUntil"] in error["message"]
    assert said or until.strftime("%Y-%m-%dT%H:%M") in error["message"], error["message"]


async def deploy_is_frozen(world, unchanged, until: datetime, pipeline: str = "shop/staging", who="dev"):
    """Pipeline.frozenUntil is `until`, and a fresh image's deploy is DEPLOY_FROZEN saying so,
    changing nothing."""
    assert await frozen_until(world, pipeline, who) == until
    image = await world.register_image("dev", pipeline.split("/")[0])
    async with unchanged():
        error = await world[who].fails(DEPLOY, deploy_vars(world, image, pipeline))
    assert_frozen_error(error, until)


async def deploy_is_open(world, pipeline: str = "shop/staging") -> dict:
    """Pipeline.frozenUntil is null and a fresh image deploys."""
    assert await frozen_until(world, pipeline) is None
    image = await world.register_image("dev")
    data = await world["dev"].ok(DEPLOY, deploy_vars(world, image, pipeline))
    assert data["deployImage"]["status"] == "PROGRESSING"
    return data["deployImage"]


# --- one-off windows ---------------------------------------------------------------------------


async def test_freeze_one_off_refuses_deploys_in_its_environment(world, unchanged):
    """Freezes: a one-off freeze on staging in force now refuses deploys on
    shop/staging with DEPLOY_FROZEN (message and extensions.frozenUntil say when it ends),
    leaves shop/prod alone, and once deleted deploys go ahead."""
    start, end = real_now() - timedelta(hours=1), real_now() + timedelta(hours=1)
    freeze = await one_off(world, start, end, environment="staging")
    assert freeze["id"].startswith("DeployFreeze:")
    assert freeze["name"] == "release freeze"
    assert freeze["environment"] == {"id": world.ids["staging"]}
    assert freeze["pipeline"] is None and freeze["weekly"] is None
    assert (parse(freeze["startsAt"]), parse(freeze["endsAt"])) == (start, end)
    assert freeze["createdBy"] == {"id": world["admin"].user_id}
    assert abs(parse(freeze["createdAt"]) - datetime.now(UTC)) < timedelta(minutes=1)

    await deploy_is_frozen(world, unchanged, end)
    assert await frozen_until(world, "shop/prod") is None
    image, _ = await world.approved_image()
    await world.deploy(image)  # prod is not frozen

    deleted = await world["admin"].ok(DELETE_FREEZE, {"id": freeze["id"]})
    assert deleted["deleteDeployFreeze"]["id"] == freeze["id"]
    await deploy_is_open(world)
    assert await freezes(world) == []


async def test_freeze_one_off_edges(world, unchanged, clock):
    """Freezes: a one-off window is [startsAt, endsAt): open a second before it
    starts, frozen at startsAt and a second before endsAt, open again at endsAt."""
    start = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    end = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    await one_off(world, start, end, pipeline="shop/staging")

    clock.set(start - timedelta(seconds=1))
    await deploy_is_open(world)
    clock.set(start)
    await deploy_is_frozen(world, unchanged, end)
    clock.set(start + timedelta(minutes=59))
    await deploy_is_frozen(world, unchanged, end)
    clock.set(end - timedelta(seconds=1))
    await deploy_is_frozen(world, unchanged, end)
    clock.set(end)
    await deploy_is_open(world)
    clock.set(end + timedelta(days=7))
    await deploy_is_open(world)


async def test_pipeline_freeze_and_environment_freeze_reach_their_pipelines(world, unchanged):
    """Freezes: an environment freeze on prod holds shop/prod and billing/prod; a
    pipeline freeze on shop/staging holds only it; Pipeline.deployFreezes lists the pipeline's
    own and its environment's; deployFreezes lists those the caller can see (R1)."""
    now = real_now()
    prod = await one_off(world, now - timedelta(hours=1), now + timedelta(hours=2), environment="prod")
    later = await one_off(world, now + timedelta(days=1), now + timedelta(days=2), pipeline="shop/staging")

    assert await frozen_until(world, "shop/prod") == now + timedelta(hours=2)
    assert await frozen_until(world, "billing/prod", "billing_dev") == now + timedelta(hours=2)
    assert await frozen_until(world, "shop/staging") is None  # its own freeze is not in force
    billing_image, _ = await world.approved_image("billing/prod")
    async with unchanged():
        error = await world["billing_dev"].fails(DEPLOY, deploy_vars(world, billing_image, "billing/prod"))
    assert_frozen_error(error, now + timedelta(hours=2))

    assert await pipeline_freezes(world, "shop/prod") == [prod["id"]]
    assert await pipeline_freezes(world, "billing/prod", "billing_dev") == [prod["id"]]
    assert await pipeline_freezes(world, "shop/staging") == [later["id"]]

    assert await freezes(world) == sorted([prod["id"], later["id"]])
    assert prod["id"] in await freezes(world, environment="prod")
    assert later["id"] not in await freezes(world, environment="prod")
    assert later["id"] in await freezes(world, pipeline="shop/staging")
    assert await freezes(world, "billing_dev") == [prod["id"]]  # cannot see shop/staging
    assert await freezes(world, "nobody") == []
    assert sorted(await freezes(world, "viewer")) == sorted([prod["id"], later["id"]])


# --- weekly windows ----------------------------------------------------------------------------


async def test_weekly_window_wraps_over_the_week_end(world, unchanged, clock):
    """Freezes: FRIDAY 18:00 -> MONDAY 08:00 (UTC) holds from Friday 18:00 through
    the weekend to Monday 07:59:59, and recurs the next week."""
    await create_freeze(
        world,
        environmentId=world.ids["staging"],
        weekly=weekly("UTC", "FRIDAY", "18:00", "MONDAY", "08:00"),
    )
    monday = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    clock.set("2026-12-03T12:00:00+00:00")  # Thursday
    await deploy_is_open(world)
    clock.set("2026-12-04T17:59:59+00:00")
    await deploy_is_open(world)
    for at in (
        "2026-12-04T18:00:00+00:00",
        "2026-12-05T12:00:00+00:00",
        "2026-12-06T23:59:59+00:00",
        "2026-12-07T00:00:00+00:00",
        "2026-12-07T07:59:59+00:00",
    ):
        clock.set(at)
        await deploy_is_frozen(world, unchanged, monday)
    clock.set(monday)
    await deploy_is_open(world)
    clock.set("2026-12-09T12:00:00+00:00")  # Wednesday
    await deploy_is_open(world)
    clock.set("2026-12-12T03:00:00+00:00")  # the next Saturday
    await deploy_is_frozen(world, unchanged, datetime(2026, 12, 14, 8, 0, tzinfo=UTC))


async def test_weekly_window_is_wall_clock_in_its_time_zone(world, unchanged, clock):
    """Freezes: TUESDAY 09:00 -> THURSDAY 17:00 America/New_York (UTC-5 in December)
    is 14:00 UTC Tuesday to 22:00 UTC Thursday."""
    await create_freeze(
        world,
        pipelineId=world.ids["shop/staging"],
        weekly=weekly("America/New_York", "TUESDAY", "09:00", "THURSDAY", "17:00"),
    )
    end = datetime(2026, 12, 3, 22, 0, tzinfo=UTC)
    clock.set("2026-12-01T13:59:59+00:00")
    await deploy_is_open(world)
    clock.set("2026-12-01T14:00:00+00:00")
    await deploy_is_frozen(world, unchanged, end)
    clock.set("2026-12-03T21:59:59+00:00")
    await deploy_is_frozen(world, unchanged, end)
    clock.set(end)
    await deploy_is_open(world)
    clock.set("2026-12-05T12:00:00+00:00")
    await deploy_is_open(world)


async def test_weekly_window_across_spring_dst_change_in_berlin(world, unchanged, clock):
    """Freezes, DST: FRIDAY 18:00 -> MONDAY 08:00 Europe/Berlin. In winter Monday 08:00
    is 07:00 UTC; over the weekend of the last Sunday of March (29 March 2026, CET -> CEST) the
    window starts at 17:00 UTC Friday and ends at 06:00 UTC Monday."""
    await create_freeze(
        world,
        environmentId=world.ids["staging"],
        weekly=weekly("Europe/Berlin", "FRIDAY", "18:00", "MONDAY", "08:00"),
    )
    # the week before: winter time throughout
    clock.set("2026-03-23T06:30:00+00:00")
    await deploy_is_frozen(world, unchanged, datetime(2026, 3, 23, 7, 0, tzinfo=UTC))
    clock.set("2026-03-23T07:00:00+00:00")
    await deploy_is_open(world)

    summer_end = datetime(2026, 3, 30, 6, 0, tzinfo=UTC)
    clock.set("2026-03-27T16:59:59+00:00")  # Friday 17:59:59 CET
    await deploy_is_open(world)
    clock.set("2026-03-27T17:00:00+00:00")  # Friday 18:00 CET
    await deploy_is_frozen(world, unchanged, summer_end)
    clock.set("2026-03-29T01:30:00+00:00")  # Sunday 03:30 CEST, just after the change
    await deploy_is_frozen(world, unchanged, summer_end)
    clock.set("2026-03-30T05:59:59+00:00")  # Monday 07:59:59 CEST
    await deploy_is_frozen(world, unchanged, summer_end)
    clock.set(summer_end)  # Monday 08:00 CEST
    await deploy_is_open(world)
    clock.set("2026-03-30T06:30:00+00:00")  # still frozen if the winter offset were kept
    await deploy_is_open(world)


async def test_weekly_window_across_autumn_dst_change_in_berlin(world, unchanged, clock):
    """Freezes, DST: the same Europe/Berlin window over the last Sunday of October
    (25 October 2026, CEST -> CET) starts at 16:00 UTC Friday and ends at 07:00 UTC Monday."""
    await create_freeze(
        world,
        pipelineId=world.ids["shop/staging"],
        weekly=weekly("Europe/Berlin", "FRIDAY", "18:00", "MONDAY", "08:00"),
    )
    winter_end = datetime(2026, 10, 26, 7, 0, tzinfo=UTC)
    clock.set("2026-10-23T15:59:59+00:00")  # Friday 17:59:59 CEST
    await deploy_is_open(world)
    clock.set("2026-10-23T16:00:00+00:00")  # Friday 18:00 CEST
    await deploy_is_frozen(world, unchanged, winter_end)
    clock.set("2026-10-25T02:30:00+00:00")  # Sunday 03:30 CET, just after the change
    await deploy_is_frozen(world, unchanged, winter_end)
    clock.set("2026-10-26T06:30:00+00:00")  # Monday 07:30 CET: open if the summer offset were kept
    await deploy_is_frozen(world, unchanged, winter_end)
    clock.set("2026-10-26T06:59:59+00:00")
    await deploy_is_frozen(world, unchanged, winter_end)
    clock.set(winter_end)  # Monday 08:00 CET
    await deploy_is_open(world)


# --- refusal order -----------------------------------------------------------------------------


async def test_freeze_refusal_order(world, unchanged):
    """Freezes: on a frozen shop/prod, FORBIDDEN / NOT_FOUND and CONFLICT (R22) come
    before DEPLOY_FROZEN, and DEPLOY_FROZEN before NOT_APPROVED; an APPROVED request stays
    APPROVED."""
    active, _ = await world.approved_image()
    await world.deploy(active)
    end = real_now() + timedelta(hours=3)
    await one_off(world, real_now() - timedelta(minutes=5), end, pipeline="shop/prod")
    approved, request = await world.approved_image()
    unapproved = await world.register_image("dev")

    async with unchanged():
        assert await world["viewer"].code(DEPLOY, deploy_vars(world, approved, "shop/prod")) == "FORBIDDEN"
        assert await world["nobody"].code(DEPLOY, deploy_vars(world, approved, "shop/prod")) == "NOT_FOUND"
        assert await world["dev"].code(DEPLOY, deploy_vars(world, active, "shop/prod")) == "CONFLICT"
        for image in (approved, unapproved):
            error = await world["dev"].fails(DEPLOY, deploy_vars(world, image, "shop/prod"))
            assert_frozen_error(error, end)
    state = (await world["dev"].ok(REQUEST_STATE, {"id": request}))["approvalRequest"]["state"]
    assert state == "APPROVED"


async def test_exception_users_are_frozen_too(world, unchanged):
    """Freezes, exceptions: an exception user deploying without approval is still
    refused DEPLOY_FROZEN while frozen."""
    await world["admin"].ok(
        """mutation($p: ID!, $i: ApprovalPolicyInput!) { updateApprovalPolicy(pipelineId: $p, input: $i) { id } }""",
        {
            "p": world.ids["shop/prod"],
            "i": {"requiredApprovals": 2, "ttlHours": 24, "exceptionUserIds": [world["dev"].user_id]},
        },
    )
    end = real_now() + timedelta(hours=1)
    await one_off(world, real_now() - timedelta(hours=1), end, environment="prod")
    await deploy_is_frozen(world, unchanged, end, "shop/prod")


async def test_requesting_and_approving_are_not_frozen(world):
    """Freezes: while prod is frozen, approval is requested and given as usual; the
    image deploys once the freeze is deleted."""
    freeze = await one_off(world, real_now() - timedelta(hours=1), real_now() + timedelta(hours=1), "prod")
    image, request = await world.approved_image()
    assert (await world["dev"].ok(REQUEST_STATE, {"id": request}))["approvalRequest"]["state"] == "APPROVED"
    await world["admin"].ok(DELETE_FREEZE, {"id": freeze["id"]})
    deployed = await world["dev"].ok(DEPLOY, deploy_vars(world, image, "shop/prod"))
    assert deployed["deployImage"]["approvalRequest"] == {"id": request, "state": "CONSUMED"}


# --- override ----------------------------------------------------------------------------------


async def test_super_admin_overrides_a_freeze_with_a_reason(world, unchanged):
    """Freezes, override: a super-admin passing freezeOverrideReason deploys through
    the freeze; Deployment.freezeOverrideReason holds it and an audit "freeze_override" event on
    the Deployment has after.reason. Approval is still needed (R20): an unapproved image with a
    reason is NOT_APPROVED."""
    end = real_now() + timedelta(hours=2)
    await one_off(world, real_now() - timedelta(hours=1), end, environment="staging")
    await one_off(world, real_now() - timedelta(hours=1), end, environment="prod")
    reason = "incident 4711: hotfix for checkout"

    image = await world.register_image("dev")
    data = await world["admin"].ok(DEPLOY, deploy_vars(world, image, freezeOverrideReason=reason))
    deployment = data["deployImage"]
    assert deployment["status"] == "PROGRESSING"
    assert deployment["freezeOverrideReason"] == reason
    assert deployment["triggeredBy"] == {"id": world["admin"].user_id}
    read = await world["viewer"].ok(DEPLOYMENT, {"id": deployment["id"]})
    assert read["deployment"]["freezeOverrideReason"] == reason
    active = (await world["dev"].ok(ACTIVE, {"p": world.ids["shop/staging"]}))["pipeline"]
    assert active["activeDeployment"] == {"id": deployment["id"]}
    (event,) = await audit_events(world, "freeze_override")
    assert event["objectId"] == deployment["id"]
    assert event["actor"] == {"id": world["admin"].user_id}
    assert event["after"]["reason"] == reason

    approved, request = await world.approved_image()
    data = await world["admin2"].ok(
        DEPLOY, deploy_vars(world, approved, "shop/prod", freezeOverrideReason="board sign-off")
    )
    assert data["deployImage"]["approvalRequest"] == {"id": request, "state": "CONSUMED"}
    assert data["deployImage"]["freezeOverrideReason"] == "board sign-off"
    assert len(await audit_events(world, "freeze_override")) == 2

    unapproved = await world.register_image("dev")
    async with unchanged():
        code = await world["admin"].code(
            DEPLOY, deploy_vars(world, unapproved, "shop/prod", freezeOverrideReason=reason)
        )
    assert code == "NOT_APPROVED"


async def test_override_needs_a_reason_and_a_super_admin(world, unchanged):
    """Freezes, override: while frozen, a super-admin without a reason gets
    DEPLOY_FROZEN, with an empty or blank reason BAD_USER_INPUT; anyone else passing a reason
    gets FORBIDDEN. Nothing changes, no freeze_override is audited."""
    end = real_now() + timedelta(hours=2)
    await one_off(world, real_now() - timedelta(hours=1), end, environment="staging")
    image = await world.register_image("dev")

    async with unchanged():
        error = await world["admin"].fails(DEPLOY, deploy_vars(world, image))
    assert_frozen_error(error, end)
    for blank in ("", "   ", "\n\t"):
        async with unchanged():
            code = await world["admin"].code(DEPLOY, deploy_vars(world, image, freezeOverrideReason=blank))
        assert code == "BAD_USER_INPUT", repr(blank)
    for who in ("dev", "dev2"):
        async with unchanged():
            code = await world[who].code(DEPLOY, deploy_vars(world, image, freezeOverrideReason="urgent"))
        assert code == "FORBIDDEN", who
    assert await audit_events(world, "freeze_override") == []
    assert await frozen_until(world) == end


async def test_override_reason_is_ignored_when_not_frozen(world):
    """Freezes, override: with no freeze in force the reason is ignored, whoever
    passes it: the deploy goes ahead, freezeOverrideReason is null, nothing is audited as an
    override."""
    await one_off(world, real_now() + timedelta(days=1), real_now() + timedelta(days=2), "staging")
    for who in ("dev", "admin"):
        image = await world.register_image("dev")
        data = await world[who].ok(DEPLOY, deploy_vars(world, image, freezeOverrideReason="just in case"))
        assert data["deployImage"]["status"] == "PROGRESSING", who
        assert data["deployImage"]["freezeOverrideReason"] is None, who
    assert await audit_events(world, "freeze_override") == []


# --- automatic pipelines (R24) -----------------------------------------------------------------


async def test_r24_automatic_pipeline_waits_while_frozen(world):
    """R24, freezes: on a frozen AUTOMATIC pipeline the completing approval deploys
    nothing; the request stays APPROVED and "automatic_deploy_skipped" is audited. After the
    freeze the requester deploys it."""
    data = await world["admin"].ok(
        "mutation($i: CreatePipelineInput!) { createPipeline(input: $i) { id } }",
        {
            "i": {
                "applicationId": world.ids["billing"],
                "environmentId": world.ids["staging"],
                "requiredApprovals": 1,
                "triggerType": "AUTOMATIC",
            }
        },
    )
    world.ids["billing/staging"] = pipeline = data["createPipeline"]["id"]
    end = real_now() + timedelta(hours=1)
    freeze = await one_off(world, real_now() - timedelta(hours=1), end, pipeline="billing/staging")
    assert await frozen_until(world, "billing/staging", "billing_dev") == end

    image = await world.register_image("admin", "billing")
    request = await world.request_approval(image, "billing/staging", who="billing_dev")
    assert (await world.approve(request, "billing_approver"))["state"] == "APPROVED"
    active = (await world["billing_dev"].ok(ACTIVE, {"p": pipeline}))["pipeline"]
    assert active == {"activeImage": None, "activeDeployment": None}
    assert request in [e["objectId"] for e in await audit_events(world, "automatic_deploy_skipped")]
    assert (await world["billing_dev"].ok(REQUEST_STATE, {"id": request}))["approvalRequest"]["state"] == (
        "APPROVED"
    )

    await world["admin"].ok(DELETE_FREEZE, {"id": freeze["id"]})
    deployed = await world["billing_dev"].ok(DEPLOY, deploy_vars(world, image, "billing/staging"))
    assert deployed["deployImage"]["approvalRequest"] == {"id": request, "state": "CONSUMED"}


# --- createDeployFreeze and deleteDeployFreeze -------------------------------------------------


async def test_create_deploy_freeze_refuses_bad_input(world, unchanged):
    """Freezes: exactly one of environmentId / pipelineId, exactly one of a one-off
    range (startsAt < endsAt) / weekly window, an IANA time zone, "HH:MM" times, a weekly start
    and end that differ, a name of 1..200 characters; all else BAD_USER_INPUT, nothing made."""
    start, end = iso(real_now()), iso(real_now() + timedelta(hours=1))
    env = {"environmentId": world.ids["staging"]}
    good_weekly = weekly("Europe/Berlin", "FRIDAY", "18:00", "MONDAY", "08:00")

    def with_weekly(**changes) -> dict:
        return {**env, "weekly": {**good_weekly, **changes}}

    cases = {
        "no target": {"startsAt": start, "endsAt": end},
        "both targets": {**env, "pipelineId": world.ids["shop/staging"], "startsAt": start, "endsAt": end},
        "environmentId of another kind": {
            "environmentId": world.ids["shop"],
            "startsAt": start,
            "endsAt": end,
        },
        "no window": {**env},
        "both windows": {**env, "startsAt": start, "endsAt": end, "weekly": good_weekly},
        "startsAt only": {**env, "startsAt": start},
        "endsAt only": {**env, "endsAt": end},
        "startsAt equals endsAt": {**env, "startsAt": start, "endsAt": start},
        "startsAt after endsAt": {**env, "startsAt": end, "endsAt": start},
        "unknown time zone": with_weekly(timeZone="Mars/Olympus_Mons"),
        "empty time zone": with_weekly(timeZone=""),
        "hour 25": with_weekly(startTime="25:00"),
        "minute 60": with_weekly(endTime="12:60"),
        "not a time": with_weekly(startTime="noon"),
        "empty time": with_weekly(endTime=""),
        "start equals end": with_weekly(startDay="MONDAY", startTime="08:00"),
        "empty name": {**env, "startsAt": start, "endsAt": end, "name": ""},
        "name of 201": {**env, "startsAt": start, "endsAt": end, "name": "x" * 201},
    }
    for case, fields in cases.items():
        variables = {"i": {"name": "bad", **fields}}
        async with unchanged():
            body = await world["admin"].execute(CREATE_FREEZE, variables)
        assert body.get("errors"), f"{case}: expected BAD_USER_INPUT, got {body}"
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", (case, body["errors"][0])
        assert await freezes(world) == [], case
    assert await frozen_until(world) is None

    # the boundaries are accepted
    made = await create_freeze(world, name="x" * 200, **env, startsAt=start, endsAt=end)
    assert made["name"] == "x" * 200
    made = await create_freeze(world, **with_weekly(startTime="00:00", endTime="23:59"))
    assert made["weekly"] == {**good_weekly, "startTime": "00:00", "endTime": "23:59"}
    assert made["startsAt"] is None and made["endsAt"] is None


async def test_r2_only_super_admins_manage_freezes(world, unchanged):
    """R2, freezes: createDeployFreeze and deleteDeployFreeze are for super-admins;
    admin2 may, others who see the scope get FORBIDDEN, anonymous UNAUTHENTICATED."""
    window = {"startsAt": iso(real_now()), "endsAt": iso(real_now() + timedelta(hours=1))}
    variables = {"i": {"name": "mine", "pipelineId": world.ids["shop/staging"], **window}}
    freeze = await create_freeze(world, "admin2", environmentId=world.ids["prod"], **window)
    assert freeze["createdBy"] == {"id": world["admin2"].user_id}
    for who in ("dev", "approver1", "viewer", "prod_approver"):
        async with unchanged():
            assert await world[who].code(CREATE_FREEZE, variables) == "FORBIDDEN", who
            assert await world[who].code(DELETE_FREEZE, {"id": freeze["id"]}) == "FORBIDDEN", who
    async with unchanged():
        assert await world["nobody"].code(CREATE_FREEZE, variables) in ("FORBIDDEN", "NOT_FOUND")
        assert await world.anonymous.code(CREATE_FREEZE, variables) == "UNAUTHENTICATED"
    assert await freezes(world) == [freeze["id"]]
    assert await world["admin"].code(DELETE_FREEZE, {"id": "DeployFreeze:999999"}) == "NOT_FOUND"
    await world["admin"].ok(DELETE_FREEZE, {"id": freeze["id"]})
    assert await freezes(world) == []
    assert await world["admin"].code(DELETE_FREEZE, {"id": freeze["id"]}) == "NOT_FOUND"
