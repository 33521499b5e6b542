"""The webhook rollout driver (R23) against a real HTTP receiver on loopback:
signed events, retries with backoff, exhaustion, supersession; the CD system reporting
back through reportDeploymentStatus as a deploy-agent; and the auditEvents query (R25)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from greenlight import jobs, outbox, signing
from greenlight.config import Settings
from greenlight.jobs import finish_due_rollouts
from greenlight.models import AuditEvent, Deployment, DeploymentStatus, WebhookDelivery
from greenlight.workflow.deployments import finish_rollout
from tests.conftest import Client

SECRET = "s3cret-shared-with-the-cd-system"
MAX_ATTEMPTS = 3
BACKOFF_SECONDS = 60.0

DEPLOY = """mutation($i: DeployImageInput!) {
  deployImage(input: $i) { id status startedAt steps { name status } image { id } }
}"""
DEPLOYMENT = """query($id: ID!) {
  deployment(id: $id) { id status message finishedAt steps { name status } }
}"""
REPORT = """mutation($id: ID!, $s: DeploymentStatus!, $m: String) {
  reportDeploymentStatus(deploymentId: $id, status: $s, message: $m) { id status message finishedAt }
}"""
ACTIVE = "query($p: ID!) { pipeline(id: $p) { activeDeployment { id status } } }"
AUDIT = """query($f: AuditEventFilter, $first: Int, $after: String) {
  auditEvents(filter: $f, first: $first, after: $after) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node {
      id at actor { id email } action objectId application environment before after
    } }
  }
}"""


# --- a real HTTP receiver on loopback -----------------------------------------------------


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A minimal HTTP/1.1 server: records every request and answers 200, or 500 to the
    next `fail_next` requests."""

    requests: list[Received] = field(default_factory=list)
    fail_next: int = 0
    hang: bool = False  # keep the sender waiting until the receiver stops
    server: asyncio.base_events.Server | None = None
    released: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)

    @property
    def url(self) -> str:
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/hooks/greenlight"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            if not line:
                return
            method, path, _ = line.decode("latin-1").split(" ", 2)
            headers = {}
            while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = header.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(Received(method, path, headers, body))
            if self.hang:
                await self.released.wait()
                return
            if self.fail_next > 0:
                self.fail_next -= 1
                status, text = "500 Internal Server Error", b"boom"
            else:
                status, text = "200 OK", b"ok"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(text)}\r\n"
                f"Connection: close\r\n\r\n".encode()
                + text
            )
            await writer.drain()
        finally:
            writer.close()

    async def stop(self) -> None:
        self.released.set()
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
async def receiver():
    found = Receiver()
    await found.start()
    try:
        yield found
    finally:
        await found.stop()


@pytest.fixture
def settings(database_url, receiver) -> Settings:
    return Settings(
        database_url=database_url,
        background_jobs=False,
        deployer="webhook",
        deploy_webhook_url=receiver.url,
        deploy_webhook_secret=SECRET,
        webhook_max_attempts=MAX_ATTEMPTS,
        webhook_backoff_seconds=BACKOFF_SECONDS,
        webhook_timeout_seconds=5.0,
    )


async def deliver(settings: Settings) -> int:
    async with httpx.AsyncClient(trust_env=False) as client:
        return await jobs.deliver_webhooks(settings, client)


def expected_signature(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verifies(request: Received, secret: str = SECRET) -> bool:
    given = request.headers.get("x-greenlight-signature", "")
    return hmac.compare_digest(given, expected_signature(request.body, secret))


def standard_verify(request: Received, secret: str | bytes = SECRET.encode()) -> dict:
    """What a receiver does with the standardwebhooks library: the event, or
    WebhookVerificationError."""
    return Webhook(secret).verify(request.body, request.headers)


def pk(global_id: str) -> int:
    return int(global_id.split(":")[1])


async def deploy(world, pipeline: str = "shop/staging", image: str | None = None) -> dict:
    image = image or await world.register_image("dev")
    data = await world["dev"].ok(DEPLOY, {"i": {"pipelineId": world.ids[pipeline], "imageId": image}})
    return data["deployImage"]


async def read(world, deployment_id: str, who: str = "viewer") -> dict:
    return (await world[who].ok(DEPLOYMENT, {"id": deployment_id}))["deployment"]


async def make_due(deployment_id: str) -> None:
    """Moves time: every pending delivery of the deployment is due again."""
    past = datetime.now(UTC) - timedelta(seconds=1)
    await WebhookDelivery.filter(
        deployment_id=pk(deployment_id), delivered_at__isnull=True, failed_at__isnull=True
    ).update(next_attempt_at=past)


async def deploy_agent(world, name: str, application: str, environment: str) -> Client:
    """A user holding deploy-agent on one scope, with a token, as the CD system would."""
    admin = world["admin"]
    user = await admin.ok(
        "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }",
        {"i": {"email": f"{name}@example.com", "name": name}},
    )
    user_id = user["createUser"]["id"]
    await admin.ok(
        "mutation($i: RoleBindingInput!) { grantRole(input: $i) { id role } }",
        {
            "i": {
                "userId": user_id,
                "role": "DEPLOY_AGENT",
                "application": application,
                "environment": environment,
            }
        },
    )
    token = await admin.ok(
        "mutation($i: IssueApiTokenInput!) { issueApiToken(input: $i) { token } }",
        {"i": {"userId": user_id, "name": "cd"}},
    )
    return Client(world.http, token["issueApiToken"]["token"], user_id, f"{name}@example.com")


async def report(client: Client, deployment_id: str, status: str, message: str | None = None) -> dict:
    return await client.execute(REPORT, {"id": deployment_id, "s": status, "m": message})


def code_of(body: dict) -> str | None:
    errors = body.get("errors")
    return errors[0]["extensions"]["code"] if errors else None


# --- the deployment.started event --------------------------------------------------------


async def test_webhook_started_event_carries_the_deployment_and_a_valid_signature(world, settings, receiver):
    image, request = await world.approved_image()
    deployment = await deploy(world, "shop/prod", image)
    assert deployment["status"] == "PROGRESSING"
    assert deployment["steps"] == []  # the external system owns the rollout

    # Written in the deploy's transaction, not sent yet.
    rows = await WebhookDelivery.filter(deployment_id=pk(deployment["id"]))
    assert len(rows) == 1 and rows[0].attempts == 0 and rows[0].delivered_at is None
    assert receiver.requests == []

    assert await deliver(settings) == 1
    assert len(receiver.requests) == 1
    sent = receiver.requests[0]
    assert sent.method == "POST"
    assert sent.path == "/hooks/greenlight"
    assert sent.headers["content-type"].startswith("application/json")
    assert verifies(sent)
    assert not verifies(sent, "another-secret")
    event = sent.json
    # Compact JSON with sorted keys: the exact bytes that were signed.
    assert sent.body == json.dumps(event, sort_keys=True, separators=(",", ":")).encode()

    stored = await world["dev"].ok(
        "query($id: ID!) { deployment(id: $id) { image { repository tag digest } } }",
        {"id": deployment["id"]},
    )
    assert event["event"] == "deployment.started"
    assert event["deploymentId"] == deployment["id"]
    assert event["application"] == "shop"
    assert event["environment"] == "prod"
    assert event["strategy"] == "ROLLING"
    assert event["approvalRequestId"] == request
    assert event["image"] == {"id": image, **stored["deployment"]["image"]}
    assert datetime.fromisoformat(event["startedAt"]) == datetime.fromisoformat(deployment["startedAt"])

    row = await WebhookDelivery.get(id=rows[0].id)
    assert row.attempts == 1
    assert row.delivered_at is not None and row.failed_at is None
    # Delivered once: nothing more is sent, and the deployment waits for the CD system.
    assert await deliver(settings) == 0
    assert len(receiver.requests) == 1
    assert (await read(world, deployment["id"]))["status"] == "PROGRESSING"


async def test_webhook_is_signed_the_standard_way_and_verifies_with_standardwebhooks(
    world, settings, receiver
):
    deployment = await deploy(world)
    before = int(datetime.now(UTC).timestamp())
    assert await deliver(settings) == 1
    (sent,) = receiver.requests
    row = await WebhookDelivery.get(deployment_id=pk(deployment["id"]))
    assert sent.headers["webhook-id"] == str(row.id)
    assert before <= int(sent.headers["webhook-timestamp"]) <= int(datetime.now(UTC).timestamp())
    assert sent.headers["webhook-signature"].startswith("v1,")
    event = standard_verify(sent)
    assert event["event"] == "deployment.started" and event["deploymentId"] == deployment["id"]
    with pytest.raises(WebhookVerificationError):
        standard_verify(sent, b"another-secret")
    # The deprecated header is still sent, and still valid, for one release.
    assert verifies(sent)


async def test_webhook_captured_event_cannot_be_replayed(world, settings, receiver, monkeypatch):
    """A captured "deployment started" sent again later: with its own timestamp it is too old;
    with a fresh timestamp, or another id, or another body, the signature no longer matches."""
    deployment = await deploy(world)
    captured_at = datetime.now(UTC) - timedelta(minutes=10)
    monkeypatch.setattr(signing, "now", lambda: captured_at)
    assert await deliver(settings) == 1
    monkeypatch.undo()
    (captured,) = receiver.requests
    with pytest.raises(WebhookVerificationError, match="too old"):
        standard_verify(captured)

    fresh = str(int(datetime.now(UTC).timestamp()))
    replays = [
        {**captured.headers, "webhook-timestamp": fresh},
        {**captured.headers, "webhook-timestamp": fresh, "webhook-id": "another"},
    ]
    for headers in replays:
        with pytest.raises(WebhookVerificationError, match="signature"):
            standard_verify(Received(captured.method, captured.path, headers, captured.body))
    # The signature covers the body too.
    tampered = captured.body.replace(deployment["id"].encode(), b"Deployment:999999")
    signed_now = await _sign_now(deployment, settings)
    with pytest.raises(WebhookVerificationError, match="signature"):
        standard_verify(Received(captured.method, captured.path, signed_now.headers, tampered))
    assert standard_verify(signed_now)["deploymentId"] == deployment["id"]


async def _sign_now(deployment: dict, settings: Settings) -> Received:
    """The headers and body of the same delivery signed now (as a retry would be)."""
    row = await WebhookDelivery.get(deployment_id=pk(deployment["id"]))
    body = signing.body_of(row.payload)
    headers = signing.standard_headers(settings.deploy_webhook_secret, str(row.id), body)
    return Received("POST", "/", {k.lower(): v for k, v in headers.items()}, body)


async def test_webhook_id_is_the_delivery_id_on_every_retry(world, settings, receiver):
    deployment = await deploy(world)
    receiver.fail_next = 2
    for _ in range(3):
        await deliver(settings)
        await make_due(deployment["id"])
    assert len(receiver.requests) == 3
    row = await WebhookDelivery.get(deployment_id=pk(deployment["id"]))
    assert row.delivered_at is not None
    assert {r.headers["webhook-id"] for r in receiver.requests} == {str(row.id)}
    assert {r.headers["x-greenlight-delivery"] for r in receiver.requests} == {str(row.id)}
    for sent in receiver.requests:  # each attempt is signed when it is made
        assert standard_verify(sent)["deploymentId"] == deployment["id"]


async def test_webhook_whsec_secret_is_the_standard_webhooks_key(world, settings, receiver):
    key = b"\x01\x02 a binary key of the receiver's \xff"
    secret = "whsec_" + base64.b64encode(key).decode()
    await deploy(world)
    assert await deliver(replace(settings, deploy_webhook_secret=secret)) == 1
    (sent,) = receiver.requests
    assert standard_verify(sent, secret)["event"] == "deployment.started"
    assert standard_verify(sent, key)["event"] == "deployment.started"


async def test_webhook_retries_are_jittered(world, settings, receiver):
    """Deliveries failing together are not all retried at the same moment: each waits
    between half and all of its backoff."""
    deployment = await deploy(world)
    for n in range(7):
        await WebhookDelivery.create(
            deployment_id=pk(deployment["id"]),
            payload={"event": "deployment.test", "n": n},
            next_attempt_at=datetime.now(UTC) - timedelta(seconds=1),
        )
    receiver.fail_next = 100
    backoff = 200.0
    before = datetime.now(UTC)
    assert await deliver(replace(settings, webhook_backoff_seconds=backoff)) == 0
    after = datetime.now(UTC)
    rows = await WebhookDelivery.filter(deployment_id=pk(deployment["id"]))
    assert len(rows) == 8 and all(r.attempts == 1 for r in rows)
    retries = [r.next_attempt_at for r in rows]
    for at in retries:
        assert before + timedelta(seconds=backoff / 2) <= at <= after + timedelta(seconds=backoff)
    assert max(retries) - min(retries) > timedelta(seconds=10) + (after - before)


async def test_webhook_failed_delivery_is_retried_with_backoff(world, settings, receiver):
    deployment = await deploy(world)
    receiver.fail_next = 1
    before = datetime.now(UTC)
    assert await deliver(settings) == 0
    assert len(receiver.requests) == 1
    row = await WebhookDelivery.get(deployment_id=pk(deployment["id"]))
    assert row.attempts == 1
    assert row.delivered_at is None and row.failed_at is None
    assert row.last_error and "500" in row.last_error
    assert row.next_attempt_at > before + timedelta(seconds=BACKOFF_SECONDS / 2)

    # Not due yet: nothing is sent.
    assert await deliver(settings) == 0
    assert len(receiver.requests) == 1

    await make_due(deployment["id"])
    assert await deliver(settings) == 1
    assert len(receiver.requests) == 2
    first, second = receiver.requests
    assert second.body == first.body
    assert verifies(first) and verifies(second)
    row = await WebhookDelivery.get(id=row.id)
    assert row.attempts == 2
    assert row.delivered_at is not None and row.failed_at is None
    assert (await read(world, deployment["id"]))["status"] == "PROGRESSING"


async def test_webhook_unreachable_receiver_is_retried(world, settings, receiver):
    deployment = await deploy(world)
    nobody_listens = Receiver()
    await nobody_listens.start()
    dead_url = nobody_listens.url
    await nobody_listens.stop()

    assert await deliver(replace(settings, deploy_webhook_url=dead_url)) == 0
    row = await WebhookDelivery.get(deployment_id=pk(deployment["id"]))
    assert row.attempts == 1 and row.last_error
    assert row.next_attempt_at > datetime.now(UTC)
    await make_due(deployment["id"])
    assert await deliver(settings) == 1
    assert len(receiver.requests) == 1 and verifies(receiver.requests[0])
    row = await WebhookDelivery.get(id=row.id)
    assert row.attempts == 2 and row.delivered_at is not None


async def test_webhook_receiver_that_does_not_answer_in_time_is_retried(world, settings, receiver):
    deployment = await deploy(world)
    receiver.hang = True
    assert await deliver(replace(settings, webhook_timeout_seconds=0.3)) == 0
    assert len(receiver.requests) == 1
    row = await WebhookDelivery.get(deployment_id=pk(deployment["id"]))
    assert row.attempts == 1 and row.last_error and row.delivered_at is None
    assert row.next_attempt_at > datetime.now(UTC)
    receiver.hang = False
    await make_due(deployment["id"])
    assert await deliver(settings) == 1
    row = await WebhookDelivery.get(id=row.id)
    assert row.attempts == 2 and row.delivered_at is not None


async def test_webhook_exhausted_deliveries_fail_the_deployment(world, settings, receiver):
    deployment = await deploy(world)
    receiver.fail_next = 100
    delays = []
    for attempt in range(1, MAX_ATTEMPTS + 1):
        before = datetime.now(UTC)
        assert await deliver(settings) == 0
        assert len(receiver.requests) == attempt
        row = await WebhookDelivery.get(deployment_id=pk(deployment["id"]))
        assert row.attempts == attempt
        if attempt < MAX_ATTEMPTS:
            assert row.failed_at is None
            assert (await read(world, deployment["id"]))["status"] == "PROGRESSING"
            delays.append((row.next_attempt_at - before).total_seconds())
            await make_due(deployment["id"])
    # Backoff doubles from one failed attempt to the next, each delay jittered between half
    # and all of its step.
    for step, delay in enumerate(delays):
        full = BACKOFF_SECONDS * 2**step
        assert full * (1 - outbox.HTTP_BACKOFF_JITTER) <= delay <= full + 5, (step, delays)
    assert row.failed_at is not None and row.delivered_at is None

    failed = await read(world, deployment["id"])
    assert failed["status"] == "FAILED"
    assert failed["message"]
    assert failed["finishedAt"] is not None
    assert (await Deployment.get(id=pk(deployment["id"]))).status == DeploymentStatus.FAILED
    event = await AuditEvent.get(
        object_type="Deployment", object_id=pk(deployment["id"]), action="deployment_failed"
    )
    assert event.actor_id is None

    # Given up: no further attempt, even once "due".
    await WebhookDelivery.filter(id=row.id).update(next_attempt_at=datetime.now(UTC) - timedelta(hours=1))
    assert await deliver(settings) == 0
    assert len(receiver.requests) == MAX_ATTEMPTS


async def test_r23_superseding_deploy_sends_deployment_superseded_for_the_old_one(world, settings, receiver):
    old = await deploy(world)
    assert await deliver(settings) == 1
    new = await deploy(world)
    assert (await read(world, old["id"]))["status"] == "SUPERSEDED"
    assert (await read(world, new["id"]))["status"] == "PROGRESSING"

    assert await deliver(settings) == 2
    events = [r.json for r in receiver.requests]
    assert all(verifies(r) for r in receiver.requests)
    assert [(e["event"], e["deploymentId"]) for e in events[:1]] == [("deployment.started", old["id"])]
    assert sorted((e["event"], e["deploymentId"]) for e in events[1:]) == sorted(
        [("deployment.superseded", old["id"]), ("deployment.started", new["id"])]
    )
    superseded = next(e for e in events if e["event"] == "deployment.superseded")
    assert superseded["application"] == "shop" and superseded["environment"] == "staging"
    assert superseded["image"]["id"] == old["image"]["id"]


async def test_r23_superseded_deployment_is_never_started_after_it_was_superseded(world, settings, receiver):
    """R23: once superseded, a deployment whose start was never accepted must not be started
    by the CD system: its pending deployment.started is not sent any more."""
    old = await deploy(world)
    receiver.fail_next = 1
    assert await deliver(settings) == 0  # the start of `old` waits for a retry
    new = await deploy(world)
    assert (await read(world, old["id"]))["status"] == "SUPERSEDED"
    await deliver(settings)
    await make_due(old["id"])  # the retry's time comes
    await deliver(settings)
    assert await deliver(settings) == 0

    sent = [(r.json["event"], r.json["deploymentId"]) for r in receiver.requests]
    assert ("deployment.started", new["id"]) in sent
    # The only start of `old` the receiver saw is the first (refused) attempt.
    assert sent.count(("deployment.started", old["id"])) == 1
    assert sent[0] == ("deployment.started", old["id"])
    assert (await read(world, old["id"]))["status"] == "SUPERSEDED"
    assert (await read(world, new["id"]))["status"] == "PROGRESSING"


async def test_r23_superseded_event_is_not_sent_for_a_deployment_whose_start_was_never_sent(
    world, settings, receiver
):
    """R23 through the webhook driver: both events or neither. A deployment superseded before
    its deployment.started went out gets neither: the receiver never hears of it."""
    old = await deploy(world)
    new = await deploy(world)
    assert (await read(world, old["id"]))["status"] == "SUPERSEDED"
    await deliver(settings)
    assert await deliver(settings) == 0
    sent = [(r.json["event"], r.json["deploymentId"]) for r in receiver.requests]
    assert sent == [("deployment.started", new["id"])]
    kept = await WebhookDelivery.filter(deployment_id=pk(old["id"])).order_by("id")
    assert [(d.payload["event"], d.attempts, d.failed_at is not None) for d in kept] == [
        ("deployment.started", 0, True),
        ("deployment.superseded", 0, True),
    ]
    assert "never" in kept[1].last_error or "before" in kept[1].last_error


async def test_r23_superseded_event_waits_for_a_start_still_in_flight(world, settings, receiver):
    """R23 through the webhook driver: while the deployment.started is in the hands of
    another process (leased, its outcome not known yet), the superseded event is held back;
    once the start went out, the superseded one follows it."""
    old = await deploy(world)
    start = await WebhookDelivery.get(deployment_id=pk(old["id"]))
    later = datetime.now(UTC) + timedelta(seconds=60)
    await WebhookDelivery.filter(id=start.id).update(next_attempt_at=later)  # leased elsewhere
    new = await deploy(world)
    await deliver(settings)
    sent = [(r.json["event"], r.json["deploymentId"]) for r in receiver.requests]
    assert sent == [("deployment.started", new["id"])], "nothing about `old` while its start is in flight"
    # The other process sent the start (the receiver accepted it) and recorded it.
    await WebhookDelivery.filter(id=start.id).update(delivered_at=datetime.now(UTC), attempts=1)
    await make_due(old["id"])
    assert await deliver(settings) == 1
    sent = [(r.json["event"], r.json["deploymentId"]) for r in receiver.requests]
    assert sent[-1] == ("deployment.superseded", old["id"])


# --- the CD system reports back ---------------------------------------------------------


async def test_deploy_agent_reports_progress_then_healthy(world, settings, receiver):
    agent = await deploy_agent(world, "cd-shop", "shop", "*")
    image, _ = await world.approved_image()
    deployment = await deploy(world, "shop/prod", image)
    await deliver(settings)

    body = await report(agent, deployment["id"], "PROGRESSING", "canary at 10%")
    assert body.get("errors") is None, body
    assert body["data"]["reportDeploymentStatus"]["status"] == "PROGRESSING"
    assert body["data"]["reportDeploymentStatus"]["message"] == "canary at 10%"
    seen = await read(world, deployment["id"], who="dev")
    assert seen["status"] == "PROGRESSING"
    assert seen["message"] == "canary at 10%"
    assert seen["finishedAt"] is None
    row = await Deployment.get(id=pk(deployment["id"]))
    assert row.status == DeploymentStatus.PROGRESSING and row.message == "canary at 10%"

    body = await report(agent, deployment["id"], "HEALTHY", "all replicas ready")
    assert body.get("errors") is None, body
    assert body["data"]["reportDeploymentStatus"]["status"] == "HEALTHY"
    seen = await read(world, deployment["id"])
    assert seen["status"] == "HEALTHY"
    assert seen["message"] == "all replicas ready"
    assert seen["finishedAt"] is not None
    active = await world["dev"].ok(ACTIVE, {"p": world.ids["shop/prod"]})
    assert active["pipeline"]["activeDeployment"] == {"id": deployment["id"], "status": "HEALTHY"}

    events = await AuditEvent.filter(object_type="Deployment", object_id=row.id).order_by("id")
    assert [e.action for e in events] == ["deploy", "deployment_progress", "deployment_healthy"]
    assert {e.actor_id for e in events[1:]} == {pk(agent.user_id)}
    assert events[2].before == {"status": "PROGRESSING"}
    assert events[2].after["status"] == "HEALTHY"


@pytest.mark.parametrize("status", ["DEGRADED", "FAILED"])
async def test_deploy_agent_reports_a_failed_rollout(world, settings, status):
    agent = await deploy_agent(world, "cd-shop", "shop", "staging")
    deployment = await deploy(world)
    body = await report(agent, deployment["id"], status, "pods crash-looping")
    assert body.get("errors") is None, body
    seen = await read(world, deployment["id"])
    assert seen["status"] == status
    assert seen["message"] == "pods crash-looping"
    assert seen["finishedAt"] is not None
    active = await world["dev"].ok(ACTIVE, {"p": world.ids["shop/staging"]})
    assert active["pipeline"]["activeDeployment"] is None


async def test_deploy_agent_illegal_transitions_are_refused_and_change_nothing(world, settings, unchanged):
    agent = await deploy_agent(world, "cd-shop", "shop", "*")
    deployment = await deploy(world)
    await report(agent, deployment["id"], "HEALTHY", "done")
    async with unchanged():
        for status in ("PROGRESSING", "FAILED", "DEGRADED", "HEALTHY"):
            body = await report(agent, deployment["id"], status, "again")
            assert code_of(body) == "INVALID_STATE", status
        assert code_of(await report(agent, deployment["id"], "SUPERSEDED")) == "BAD_USER_INPUT"
    assert (await read(world, deployment["id"]))["status"] == "HEALTHY"
    assert (await read(world, deployment["id"]))["message"] == "done"


async def test_deploy_agent_may_not_report_superseded_nor_revive_a_superseded_deployment(
    world, settings, unchanged
):
    agent = await deploy_agent(world, "cd-shop", "shop", "*")
    old = await deploy(world)
    async with unchanged():
        assert code_of(await report(agent, old["id"], "SUPERSEDED", "replaced")) == "BAD_USER_INPUT"
    assert (await read(world, old["id"]))["status"] == "PROGRESSING"
    await deploy(world)
    async with unchanged():
        for status in ("PROGRESSING", "HEALTHY", "FAILED"):
            assert code_of(await report(agent, old["id"], status)) == "INVALID_STATE", status
    assert (await read(world, old["id"]))["status"] == "SUPERSEDED"


async def test_deploy_agent_permission_people_get_forbidden_outsiders_not_found(world, settings, unchanged):
    image, _ = await world.approved_image()
    deployment = await deploy(world, "shop/prod", image)
    billing_agent = await deploy_agent(world, "cd-billing", "billing", "*")
    staging_agent = await deploy_agent(world, "cd-staging", "shop", "staging")
    async with unchanged():
        # Those who can see it, but are no deploy-agent; not even a super-admin.
        for who in ("dev", "approver1", "viewer", "admin", "admin2"):
            body = await report(world[who], deployment["id"], "HEALTHY", "trust me")
            assert code_of(body) == "FORBIDDEN", who
        # R1: a deployment outside one's scopes is invisible.
        for client in (world["nobody"], world["billing_dev"], billing_agent, staging_agent):
            body = await report(client, deployment["id"], "HEALTHY", "trust me")
            assert code_of(body) == "NOT_FOUND", client.email
        assert code_of(await report(world.anonymous, deployment["id"], "HEALTHY")) == "UNAUTHENTICATED"
    # A deploy-agent reports; it does not deploy.
    staging_image = await world.register_image("dev")
    async with unchanged():
        body = await staging_agent.execute(
            DEPLOY, {"i": {"pipelineId": world.ids["shop/staging"], "imageId": staging_image}}
        )
        assert code_of(body) == "FORBIDDEN"
    assert (await read(world, deployment["id"]))["status"] == "PROGRESSING"

    # The staging agent may report on its own scope.
    own = await deploy(world, "shop/staging", staging_image)
    body = await report(staging_agent, own["id"], "HEALTHY")
    assert body.get("errors") is None, body
    assert (await Deployment.get(id=pk(own["id"]))).status == DeploymentStatus.HEALTHY


async def test_simulator_never_finishes_webhook_deployments(world, settings, receiver):
    deployment = await deploy(world)
    await Deployment.filter(id=pk(deployment["id"])).update(started_at=datetime.now(UTC) - timedelta(days=1))
    assert await finish_due_rollouts(0) == 0
    async with httpx.AsyncClient(trust_env=False) as client:
        await jobs.run_once(settings, client)
    seen = await read(world, deployment["id"])
    assert seen["status"] == "PROGRESSING"
    assert seen["steps"] == []
    assert (await Deployment.get(id=pk(deployment["id"]))).status == DeploymentStatus.PROGRESSING
    # run_once delivered the event meanwhile.
    assert [r.json["event"] for r in receiver.requests] == ["deployment.started"]


async def test_deploy_agent_cannot_report_on_a_simulated_deployment(world, settings, receiver):
    """A deployment the simulator rolls out (started while this process used it) is not the
    CD system's to report on: INVALID_STATE, and nothing changes."""
    from greenlight.rollout import drivers

    drivers.configure(replace(settings, deployer="simulator"))
    simulated = await deploy(world)
    agent = await deploy_agent(world, "cd-shop", "shop", "*")
    body = await report(agent, simulated["id"], "HEALTHY")
    assert code_of(body) == "INVALID_STATE"
    assert (await Deployment.get(id=pk(simulated["id"]))).status == DeploymentStatus.PROGRESSING


# --- auditEvents ------------------------------------------------------------------------


async def audit(client: Client, first: int = 100, after: str | None = None, **filters) -> dict:
    return (await client.ok(AUDIT, {"f": filters or None, "first": first, "after": after}))["auditEvents"]


async def audit_all(client: Client, page_size: int = 100, **filters) -> list[dict]:
    nodes, after = [], None
    while True:
        found = await audit(client, page_size, after, **filters)
        nodes += [e["node"] for e in found["edges"]]
        if not found["pageInfo"]["hasNextPage"]:
            return nodes
        after = found["pageInfo"]["endCursor"]


def ids_of(nodes: list[dict]) -> list[int]:
    return [pk(n["id"]) for n in nodes]


async def stored_ids(**filters) -> list[int]:
    return await AuditEvent.filter(**filters).order_by("-id").values_list("id", flat=True)


async def audit_scenario(world) -> dict:
    """Requests, approvals and deploys on shop and billing, and a rollout the system ends."""
    image, request = await world.approved_image()
    prod = await deploy(world, "shop/prod", image)
    staging = await deploy(world)
    billing_image, _ = await world.approved_image("billing/prod")
    billing = (
        await world["billing_dev"].ok(
            DEPLOY, {"i": {"pipelineId": world.ids["billing/prod"], "imageId": billing_image}}
        )
    )["deployImage"]
    await finish_rollout(pk(staging["id"]), DeploymentStatus.HEALTHY)  # the system acts
    return {"prod": prod, "staging": staging, "billing": billing, "request": request}


async def test_r25_audit_events_are_for_super_admins_only(world, settings, unchanged):
    await audit_scenario(world)
    async with unchanged():
        for who in ("dev", "viewer", "approver1", "prod_approver", "billing_dev", "nobody"):
            assert await world[who].code(AUDIT, {"first": 5}) == "FORBIDDEN", who
        assert await world.anonymous.code(AUDIT, {"first": 5}) == "UNAUTHENTICATED"
    agent = await deploy_agent(world, "cd-shop", "shop", "*")
    assert await agent.code(AUDIT, {"first": 5}) == "FORBIDDEN"
    for who in ("admin", "admin2"):
        found = await audit(world[who], 5)
        assert found["totalCount"] == await AuditEvent.all().count()
        assert len(found["edges"]) == 5


async def test_r25_audit_events_newest_first_and_paginated(world, settings):
    await audit_scenario(world)
    everything = await stored_ids()
    assert len(everything) > 12
    seen, after, pages = [], None, 0
    while True:
        found = await audit(world["admin"], 5, after)
        assert found["totalCount"] == len(everything)
        assert len(found["edges"]) <= 5
        seen += ids_of([e["node"] for e in found["edges"]])
        pages += 1
        if not found["pageInfo"]["hasNextPage"]:
            break
        after = found["pageInfo"]["endCursor"]
        assert after == found["edges"][-1]["cursor"]
    assert seen == everything  # newest (highest id) first, each once
    assert pages == -(-len(everything) // 5)
    nodes = await audit_all(world["admin"])
    times = [datetime.fromisoformat(n["at"]) for n in nodes]
    assert times == sorted(times, reverse=True)
    assert await world["admin"].code(AUDIT, {"first": 101}) == "BAD_USER_INPUT"
    assert await world["admin"].code(AUDIT, {"first": 5, "after": "Deployment:3"}) == "BAD_USER_INPUT"


async def test_r25_audit_events_filter_by_application_environment_action_and_actor(world, settings):
    made = await audit_scenario(world)

    billing = await audit_all(world["admin"], application="billing")
    assert billing and {n["application"] for n in billing} == {"billing"}
    assert ids_of(billing) == await stored_ids(application="billing")
    assert f"Deployment:{pk(made['billing']['id'])}" in {n["objectId"] for n in billing}

    staging = await audit_all(world["admin"], environment="staging")
    assert staging and {n["environment"] for n in staging} == {"staging"}
    assert ids_of(staging) == await stored_ids(environment="staging")

    deploys = await audit_all(world["admin"], action="deploy")
    assert {n["action"] for n in deploys} == {"deploy"}
    assert {n["objectId"] for n in deploys} == {made[k]["id"] for k in ("prod", "staging", "billing")}
    assert {n["objectId"]: n["actor"]["email"] for n in deploys} == {
        made["prod"]["id"]: "dev@example.com",
        made["staging"]["id"]: "dev@example.com",
        made["billing"]["id"]: "billing_dev@example.com",
    }
    prod_deploy = next(n for n in deploys if n["objectId"] == made["prod"]["id"])
    assert prod_deploy["application"] == "shop" and prod_deploy["environment"] == "prod"
    assert prod_deploy["after"]["status"] == "PROGRESSING"

    by_dev = await audit_all(world["admin"], actorId=world["dev"].user_id)
    assert by_dev and {n["actor"]["email"] for n in by_dev} == {"dev@example.com"}
    assert ids_of(by_dev) == await stored_ids(actor_id=pk(world["dev"].user_id))
    assert {"register_image", "deploy"} <= {n["action"] for n in by_dev}

    combined = await audit_all(world["admin"], application="shop", environment="prod", action="deploy")
    assert [n["objectId"] for n in combined] == [made["prod"]["id"]]
    assert await audit_all(world["admin"], application="nothing-here") == []
    assert await world["admin"].code(AUDIT, {"f": {"actorId": "Deployment:1"}}) == "BAD_USER_INPUT"


async def test_r25_audit_system_actions_have_no_actor(world, settings, receiver):
    made = await audit_scenario(world)
    agent = await deploy_agent(world, "cd-shop", "shop", "*")
    await report(agent, made["prod"]["id"], "HEALTHY", "ok")

    healthy = await audit_all(world["admin"], action="deployment_healthy")
    assert {n["objectId"]: n["actor"] for n in healthy} == {
        made["staging"]["id"]: None,  # ended by the system
        made["prod"]["id"]: {"id": agent.user_id, "email": "cd-shop@example.com"},
    }
    by_agent = await audit_all(world["admin"], actorId=agent.user_id)
    assert [(n["action"], n["objectId"]) for n in by_agent] == [("deployment_healthy", made["prod"]["id"])]
    system = next(n for n in healthy if n["actor"] is None)
    assert system["before"] == {"status": "PROGRESSING"}
    assert system["after"]["status"] == "HEALTHY"


async def test_r25_audit_events_filter_by_time_range(world, settings):
    made = await audit_scenario(world)
    older = await AuditEvent.get(action="deploy", object_type="Deployment", object_id=pk(made["prod"]["id"]))
    newer = await AuditEvent.get(
        action="deploy", object_type="Deployment", object_id=pk(made["billing"]["id"])
    )
    assert older.id < newer.id
    await AuditEvent.filter(id=older.id).update(at=datetime(2021, 1, 10, 12, tzinfo=UTC))
    await AuditEvent.filter(id=newer.id).update(at=datetime(2021, 6, 10, 12, tzinfo=UTC))

    def t(text: str) -> str:
        return f"{text}T00:00:00+00:00"

    admin = world["admin"]
    assert ids_of(await audit_all(admin, since=t("2021-01-01"), until=t("2021-02-01"))) == [older.id]
    assert ids_of(await audit_all(admin, since=t("2021-01-01"), until=t("2022-01-01"))) == [
        newer.id,
        older.id,
    ]
    assert ids_of(await audit_all(admin, until=t("2021-03-01"))) == [older.id]
    after_march = await audit_all(admin, since=t("2021-03-01"))
    assert older.id not in ids_of(after_march) and newer.id in ids_of(after_march)
    assert len(after_march) == await AuditEvent.all().count() - 1
    assert await audit_all(admin, since=t("2021-02-01"), until=t("2021-03-01")) == []
    window = await audit_all(admin, application="billing", since=t("2021-01-01"), until=t("2022-01-01"))
    assert ids_of(window) == [newer.id]
    node = window[0]
    assert datetime.fromisoformat(node["at"]) == datetime(2021, 6, 10, 12, tzinfo=UTC)
