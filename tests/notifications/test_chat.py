"""Chat notices (the issue's item "Chat"): approval events reach Slack and Microsoft Teams
incoming webhooks and generic signed JSON webhooks, configured per pipeline or environment
by super-admins, through the outbox (retries, never lost, a stable delivery id). Every test
receives them with a real HTTP receiver on loopback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from greenlight import jobs
from greenlight.config import Settings
from greenlight.models import AuditEvent, ChatDelivery
from greenlight.notifications import audit_stream, chat
from greenlight.workflow.deployments import finish_rollout
from tests.rollout.test_webhook import Receiver

CREATE = """mutation($i: CreateChatChannelInput!) {
  createChatChannel(input: $i) {
    id kind urlHost events signingSecret createdBy { email }
    pipeline { id } environment { id }
  }
}"""
DELETE = "mutation($id: ID!) { deleteChatChannel(id: $id) { id } }"
CHANNELS = "{ chatChannels { id kind urlHost events signingSecret pipeline { id } environment { name } } }"
REJECT = "mutation($id: ID!, $r: String!) { rejectRequest(id: $id, reason: $r) { state } }"
CANCEL = "mutation($id: ID!) { cancelApprovalRequest(id: $id) { state } }"
EXPIRE = "mutation($id: ID!) { expireApproval(id: $id) { state } }"
ALL_EVENTS = ["REQUESTED", "APPROVED", "REJECTED", "CANCELLED", "EXPIRED", "DEPLOYED", "ROLLOUT_FINISHED"]
MAX_ATTEMPTS = 3


@pytest.fixture
async def receiver():
    found = Receiver()
    await found.start()
    try:
        yield found
    finally:
        await found.stop()


@pytest.fixture
def settings(database_url) -> Settings:
    return Settings(
        database_url=database_url,
        background_jobs=False,
        mutations_per_minute=0,
        webhook_max_attempts=MAX_ATTEMPTS,
        webhook_backoff_seconds=60.0,
        webhook_timeout_seconds=5.0,
    )


@pytest.fixture
async def quiet(world):
    """The world's own events sequenced already: what follows is the test's."""
    await audit_stream.sequence()
    return world


def url(receiver: Receiver, path: str) -> str:
    return receiver.url.replace("/hooks/greenlight", path)


async def channel(world, kind: str, address: str, *, pipeline=None, environment=None, events=None) -> dict:
    given = {"kind": kind, "url": address, "events": events}
    if pipeline:
        given["pipelineId"] = world.ids[pipeline]
    if environment:
        given["environmentId"] = world.ids[environment]
    return (await world["admin"].ok(CREATE, {"i": given}))["createChatChannel"]


async def settle(settings: Settings) -> int:
    """What the background jobs do: sequence the audit log (fanning out), then send."""
    await audit_stream.sequence()
    async with httpx.AsyncClient(trust_env=False) as client:
        return await chat.deliver_due(settings, client)


async def make_due() -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    await ChatDelivery.filter(delivered_at__isnull=True, failed_at__isnull=True).update(next_attempt_at=past)


def at(receiver: Receiver, path: str) -> list:
    return [r for r in receiver.requests if r.path == path]


async def every_event(world) -> dict[str, str]:
    """On shop/prod, one of each event, in ALL_EVENTS order but for the rollout's end; the
    ids involved."""
    image, approved = await world.approved_image()  # REQUESTED, APPROVED
    rejected = await world.request_approval(await world.register_image(), who="dev2")
    await world["approver1"].ok(REJECT, {"id": rejected, "r": "fails the load test"})
    cancelled = await world.request_approval(await world.register_image(), who="dev2")
    await world["dev2"].ok(CANCEL, {"id": cancelled})
    _, expiring = await world.approved_image()
    await world["dev2"].ok(EXPIRE, {"id": expiring})
    deployment = await world.deploy(image)  # DEPLOYED
    await finish_rollout(int(deployment["id"].split(":")[1]), _healthy())  # ROLLOUT_FINISHED
    return {"image": image, "approved": approved, "rejected": rejected, "deployment": deployment["id"]}


def _healthy():
    from greenlight.models import DeploymentStatus

    return DeploymentStatus.HEALTHY


async def test_chat_each_event_kind_reaches_slack_teams_and_the_webhook_in_their_formats(
    quiet, settings, receiver
):
    """Chat: requested, approved, rejected, cancelled, expired, deployed and rollout
    finished each reach a Slack channel ({"text"} and a block), a Teams channel (a
    MessageCard) and a generic webhook (a JSON event with type, ids, actor, pipeline, image,
    time and delivery id, signed with the channel's secret)."""
    world = quiet
    await channel(world, "SLACK", url(receiver, "/slack"), pipeline="shop/prod")
    await channel(world, "TEAMS", url(receiver, "/teams"), pipeline="shop/prod")
    hook = await channel(world, "WEBHOOK", url(receiver, "/hook"), pipeline="shop/prod")
    assert hook["signingSecret"].startswith("whsec_")
    ids = await every_event(world)

    sent = await settle(settings)
    kinds = ["REQUESTED", "APPROVED", "REQUESTED", "REJECTED", "REQUESTED", "CANCELLED"]
    kinds += ["REQUESTED", "APPROVED", "EXPIRED", "DEPLOYED", "ROLLOUT_FINISHED"]
    assert sent == 3 * len(kinds)

    hooks = at(receiver, "/hook")
    events = [Webhook(hook["signingSecret"]).verify(r.body, r.headers) for r in hooks]
    assert [e["event"] for e in events] == kinds
    assert {e["type"] for e in events} == {
        "approval.requested",
        "approval.approved",
        "approval.rejected",
        "approval.cancelled",
        "approval.expired",
        "deployment.started",
        "deployment.finished",
    }
    for request, event in zip(hooks, events, strict=True):
        assert request.headers["webhook-id"] == event["deliveryId"]
        assert event["pipeline"] == {
            "id": world.ids["shop/prod"],
            "application": "shop",
            "environment": "prod",
        }
        assert event["image"]["repository"] == "registry.example.com/acme/shop"
        assert datetime.fromisoformat(event["at"]).tzinfo is not None
    approved = events[1]
    assert approved["approvalRequestId"] == ids["approved"]
    assert approved["image"]["id"] == ids["image"]
    assert approved["actor"]["email"] == world["approver2"].email  # the completing approval
    assert events[3]["reason"] == "fails the load test"
    assert events[3]["actor"]["email"] == world["approver1"].email
    assert events[9]["deploymentId"] == ids["deployment"] and events[9]["status"] == "PROGRESSING"
    assert events[10]["status"] == "HEALTHY" and events[10]["actor"] is None  # the system

    slack = [r.json for r in at(receiver, "/slack")]
    assert len(slack) == len(kinds)
    assert all(m["text"] and m["blocks"][0]["text"]["text"] == m["text"] for m in slack)
    assert "rejected for shop/prod by approver1@example.com: fails the load test" in slack[3]["text"]
    assert "ended HEALTHY" in slack[10]["text"]

    teams = [r.json for r in at(receiver, "/teams")]
    assert len(teams) == len(kinds)
    assert all(m["@type"] == "MessageCard" and m["text"] and m["summary"] for m in teams)
    assert "Approval requested for registry.example.com/acme/shop" in teams[0]["text"]
    # Slack and Teams know no signature; the delivery id still travels.
    assert all(
        "webhook-signature" not in r.headers and r.headers["webhook-id"].startswith("msg_")
        for r in at(receiver, "/slack") + at(receiver, "/teams")
    )


async def test_chat_environment_channel_hears_its_pipelines_and_pipeline_channel_only_its_own(
    quiet, settings, receiver
):
    """Chat: a channel on an environment hears every pipeline on it (shop/prod and
    billing/prod), a pipeline's channel only that pipeline, and `events` narrows what a
    channel hears."""
    world = quiet
    await channel(world, "SLACK", url(receiver, "/prod"), environment="prod")
    await channel(world, "SLACK", url(receiver, "/shop-prod"), pipeline="shop/prod")
    await channel(world, "WEBHOOK", url(receiver, "/deploys"), environment="staging", events=["DEPLOYED"])
    await world.request_approval(await world.register_image())  # shop/prod
    await world.approved_image("billing/prod")  # billing/prod: requested, approved
    await world.deploy(await world.register_image(), pipeline="shop/staging")  # no approval needed
    await world.request_approval(
        await world.register_image("billing_dev", "billing"), pipeline="billing/prod", who="billing_dev"
    )

    await settle(settings)
    prod = [r.json["text"] for r in at(receiver, "/prod")]
    assert len(prod) == 4
    assert "on shop/prod" in prod[0] and "billing/prod" in prod[1] and "billing/prod" in prod[3]
    shop_prod = [r.json["text"] for r in at(receiver, "/shop-prod")]
    assert len(shop_prod) == 1 and "on shop/prod" in shop_prod[0]
    deploys = [r.json for r in at(receiver, "/deploys")]
    assert [(d["event"], d["pipeline"]["id"]) for d in deploys] == [("DEPLOYED", world.ids["shop/staging"])]


async def test_chat_webhook_signature_verifies_and_a_retry_after_500_keeps_the_delivery_id(
    quiet, settings, receiver
):
    """Chat: a receiver answering 500 gets the same delivery again later, with the same
    webhook-id and body, each attempt signed afresh and verifiable with standardwebhooks;
    another secret does not verify."""
    world = quiet
    hook = await channel(world, "WEBHOOK", url(receiver, "/hook"), pipeline="shop/prod")
    await world.request_approval(await world.register_image())
    receiver.fail_next = 1

    assert await settle(settings) == 0
    row = await ChatDelivery.get()
    assert row.attempts == 1 and row.delivered_at is None and row.last_error == "HTTP 500"
    assert row.next_attempt_at > datetime.now(UTC)
    assert await settle(settings) == 0  # not due yet
    assert len(receiver.requests) == 1

    await make_due()
    assert await settle(settings) == 1
    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == row.delivery_id
    assert first.body == second.body
    for attempt in (first, second):
        assert (
            Webhook(hook["signingSecret"]).verify(attempt.body, attempt.headers)["deliveryId"]
            == row.delivery_id
        )
        with pytest.raises(WebhookVerificationError):
            Webhook("whsec_" + "A" * 43 + "=").verify(attempt.body, attempt.headers)
    assert (await ChatDelivery.get()).delivered_at is not None
    assert await settle(settings) == 0 and len(receiver.requests) == 2  # once delivered, done


async def test_chat_failures_never_lose_the_row(quiet, settings, receiver):
    """Chat: a receiver that keeps failing, or is not there at all, gets MAX_ATTEMPTS
    attempts; then the delivery is marked failed with the last error, and kept."""
    world = quiet
    await channel(world, "TEAMS", url(receiver, "/teams"), pipeline="shop/prod")
    await channel(world, "SLACK", "http://127.0.0.1:9/nobody-listens", pipeline="shop/prod")
    await world.request_approval(await world.register_image())
    receiver.fail_next = 100

    for _ in range(MAX_ATTEMPTS):
        await make_due()
        assert await settle(settings) == 0
    rows = await ChatDelivery.all().order_by("id")
    assert len(rows) == 2
    assert all(r.failed_at is not None and r.attempts == MAX_ATTEMPTS for r in rows)
    assert rows[0].last_error == "HTTP 500"
    assert rows[1].last_error.startswith("ConnectError")
    await make_due()
    assert await settle(settings) == 0
    assert len(at(receiver, "/teams")) == MAX_ATTEMPTS  # given up: not sent again


async def test_chat_a_refused_action_tells_no_one(quiet, settings, receiver, unchanged):
    """Chat: a delivery exists only when its outcome committed: a refused approval
    (SELF_APPROVAL) or request (CONFLICT) sends nothing."""
    world = quiet
    await channel(world, "SLACK", url(receiver, "/slack"), pipeline="shop/prod")
    image = await world.register_image()
    request = await world.request_approval(image, who="admin")
    await settle(settings)
    receiver.requests.clear()
    async with unchanged():
        assert (
            await world["admin"].code(
                "mutation($id: ID!) { approveRequest(id: $id) { id } }", {"id": request}
            )
            == "SELF_APPROVAL"
        )
        assert (
            await world["dev"].code(
                "mutation($i: RequestApprovalInput!) { requestApproval(input: $i) { id } }",
                {"i": {"pipelineId": world.ids["shop/prod"], "imageId": image}},
            )
            == "CONFLICT"
        )
    assert await settle(settings) == 0 and receiver.requests == []


async def test_chat_slack_text_people_typed_is_not_markup(quiet, settings, receiver):
    """Chat: a rejection reason reaches Slack as text: <!channel> does not ping everyone."""
    world = quiet
    await channel(world, "SLACK", url(receiver, "/slack"), pipeline="shop/prod", events=["REJECTED"])
    request = await world.request_approval(await world.register_image(), who="dev2")
    await world["approver1"].ok(REJECT, {"id": request, "r": "<!channel> broke it & more"})
    await settle(settings)
    (message,) = [r.json for r in at(receiver, "/slack")]
    assert "&lt;!channel&gt; broke it &amp; more" in message["text"]
    assert "<!channel>" not in message["text"]


async def test_chat_channels_are_listed_masked_and_deleting_one_stops_it(quiet, settings, receiver):
    """Chat: chatChannels shows each channel's URL as its host only and never the signing
    secret; the audit log does not hold the URL either. A deleted channel is no longer
    listed, and what it had not been sent is marked failed, not sent."""
    world = quiet
    secret_url = url(receiver, "/services/T000/B000/very-secret-token")
    made = await channel(world, "WEBHOOK", secret_url, environment="prod", events=["DEPLOYED", "DEPLOYED"])
    assert made["events"] == ["DEPLOYED"] and made["environment"] == {"id": world.ids["prod"]}
    assert made["createdBy"]["email"] == world["admin"].email
    listed = (await world["admin"].ok(CHANNELS))["chatChannels"]
    assert listed == [
        {
            "id": made["id"],
            "kind": "WEBHOOK",
            "urlHost": "http://127.0.0.1/",
            "events": ["DEPLOYED"],
            "signingSecret": None,
            "pipeline": None,
            "environment": {"name": "prod"},
        }
    ]
    node = await world["admin"].ok("query($id: ID!) { node(id: $id) { id } }", {"id": made["id"]})
    assert node["node"]["id"] == made["id"]
    events = await AuditEvent.filter(action="create_chat_channel")
    assert len(events) == 1 and "very-secret-token" not in str(events[0].after)

    image, _ = await world.approved_image()
    await world.deploy(image)
    await audit_stream.sequence()
    assert await ChatDelivery.filter(delivered_at__isnull=True).count() == 1
    await world["admin"].ok(DELETE, {"id": made["id"]})
    assert await settle(settings) == 0 and receiver.requests == []
    row = await ChatDelivery.get()
    assert row.failed_at is not None and row.last_error == "not sent: the channel was deleted"
    assert (await world["admin"].ok(CHANNELS))["chatChannels"] == []
    assert await world["admin"].code(DELETE, {"id": made["id"]}) == "NOT_FOUND"
    assert [e.action for e in await AuditEvent.filter(action__contains="chat_channel").order_by("id")] == [
        "create_chat_channel",
        "delete_chat_channel",
    ]


async def test_chat_only_super_admins_manage_channels(quiet, receiver, unchanged):
    """Chat, R2: creating, deleting and listing channels is for super-admins only: anyone
    else gets FORBIDDEN and nothing changes."""
    world = quiet
    made = await channel(world, "SLACK", url(receiver, "/slack"), pipeline="shop/prod")
    given = {"kind": "SLACK", "url": url(receiver, "/x"), "pipelineId": world.ids["shop/prod"]}
    async with unchanged():
        for who in ("dev", "approver1", "viewer", "nobody"):
            assert await world[who].code(CREATE, {"i": given}) == "FORBIDDEN", who
            assert await world[who].code(DELETE, {"id": made["id"]}) == "FORBIDDEN", who
            assert await world[who].code(CHANNELS) == "FORBIDDEN", who
    assert await world["admin2"].ok(CHANNELS)


@pytest.mark.parametrize(
    "change, field",
    [
        ({"url": "hooks.slack.com/services/x"}, "url"),
        ({"url": "ftp://hooks.example.com/x"}, "url"),
        ({"url": "https:///no-host"}, "url"),
        ({"url": "https://hooks.example.com/a b"}, "url"),
        ({"url": "https://hooks.example.com/" + "x" * 2100}, "url"),
        ({"environmentId": "ENV"}, "pipelineId"),  # both
        ({"pipelineId": None}, "pipelineId"),  # neither
        ({"events": []}, "events"),
        ({"pipelineId": "Environment:1"}, "pipelineId"),  # an id of the wrong kind
    ],
)
async def test_chat_bad_input_is_refused_and_nothing_changes(quiet, unchanged, change, field):
    """Chat: a bad channel is BAD_USER_INPUT naming the field, and nothing is written."""
    world = quiet
    given = {
        "kind": "SLACK",
        "url": "https://hooks.slack.com/services/T/B/x",
        "pipelineId": world.ids["shop/prod"],
    }
    given |= {k: (world.ids["prod"] if v == "ENV" else v) for k, v in change.items()}
    async with unchanged():
        error = await world["admin"].fails(CREATE, {"i": given})
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert error["extensions"].get("field") == field, error


async def test_chat_a_pipeline_that_does_not_exist_is_not_found(quiet, unchanged):
    """Chat: a channel on a pipeline or environment that does not exist is NOT_FOUND."""
    world = quiet
    async with unchanged():
        for key, value in (("pipelineId", "Pipeline:999"), ("environmentId", "Environment:999")):
            given = {"kind": "TEAMS", "url": "https://example.webhook.office.com/x", key: value}
            assert await world["admin"].code(CREATE, {"i": given}) == "NOT_FOUND"


async def test_chat_the_background_jobs_send_the_notices(quiet, settings, receiver):
    """Chat: a server's periodic jobs (jobs.run_once) sequence the audit log and send."""
    world = quiet
    await channel(world, "SLACK", url(receiver, "/slack"), pipeline="shop/prod")
    await world.request_approval(await world.register_image())
    async with httpx.AsyncClient(trust_env=False) as client:
        await jobs.run_once(settings, client)
    assert len(at(receiver, "/slack")) == 1


DELIVERIES = """query($f: Boolean) { chatDeliveries(failedOnly: $f, first: 50) {
  edges { node { id event deliveryId attempts lastError failedAt deliveredAt channel { id urlHost } } } } }"""
RETRY = "mutation($id: ID!) { retryChatDelivery(id: $id) { id attempts failedAt } }"


async def test_chat_a_failed_delivery_is_listed_and_sent_again_as_the_same_message(quiet, settings, receiver):
    """Chat: super-admins see the deliveries given up (chatDeliveries(failedOnly)) and queue
    one again (retryChatDelivery): the receiver then gets the same body with the same
    webhook-id. Only a failed one can be retried (INVALID_STATE), only by super-admins."""
    world = quiet
    made = await channel(world, "WEBHOOK", url(receiver, "/hook"), pipeline="shop/prod")
    await world.request_approval(await world.register_image())
    receiver.fail_next = MAX_ATTEMPTS
    for _ in range(MAX_ATTEMPTS):
        await make_due()
        await settle(settings)
    (failed,) = [
        e["node"] for e in (await world["admin"].ok(DELIVERIES, {"f": True}))["chatDeliveries"]["edges"]
    ]
    assert failed["event"] == "REQUESTED" and failed["attempts"] == MAX_ATTEMPTS
    assert failed["lastError"] == "HTTP 500" and failed["failedAt"] and failed["deliveredAt"] is None
    assert failed["channel"] == {"id": made["id"], "urlHost": "http://127.0.0.1/"}
    assert await world["dev"].code(RETRY, {"id": failed["id"]}) == "FORBIDDEN"
    assert await world["dev"].code(DELIVERIES) == "FORBIDDEN"

    retried = (await world["admin"].ok(RETRY, {"id": failed["id"]}))["retryChatDelivery"]
    assert retried == {"id": failed["id"], "attempts": 0, "failedAt": None}
    assert await settle(settings) == 1
    bodies = {r.body for r in receiver.requests}
    assert len(bodies) == 1 and {r.headers["webhook-id"] for r in receiver.requests} == {failed["deliveryId"]}
    assert len(receiver.requests) == MAX_ATTEMPTS + 1
    assert await world["admin"].code(RETRY, {"id": failed["id"]}) == "INVALID_STATE"
    assert (await world["admin"].ok(DELIVERIES, {"f": True}))["chatDeliveries"]["edges"] == []
