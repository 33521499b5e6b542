"""R25 over a real WebSocket: subscriptions with the graphql-transport-ws protocol.

The ASGI app is served by uvicorn inside the test's event loop; a `websockets` client
speaks graphql-transport-ws to it: connection_init with {"Authorization": "Bearer <token>"},
connection_ack, subscribe, then next / error / complete. The test drives rollouts by hand
with `finish_due_rollouts`. Every wait is bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import jwt
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.typing import Subprotocol

from greenlight.clock import now
from greenlight.config import Settings
from greenlight.jobs import finish_due_rollouts
from greenlight.models import ApiToken, ApprovalRequest, ApprovalState, Deployment, DeploymentStatus, Image
from tests.conftest import Client
from tests.support import receive, send, serving

TRANSPORT_WS = Subprotocol("graphql-transport-ws")
LEGACY_WS = Subprotocol("graphql-ws")
TIMEOUT = 5.0


DEPLOYMENT_STATUS = "subscription($id: ID!) { deploymentStatus(deploymentId: $id) { id status } }"
REQUEST_EVENTS = """subscription($p: ID) {
  approvalRequestEvents(pipelineId: $p) { id state pipeline { application { name } } approvals { user { email } } }
}"""


@pytest.fixture
def settings(database_url) -> Settings:
    """Subscriptions re-check their token every 0.2 s, so a revocation closes them soon."""
    return Settings(
        database_url=database_url,
        background_jobs=False,
        rollout_seconds=90,
        subscription_recheck_seconds=0.2,
    )


@pytest.fixture
async def ws_url(app) -> AsyncIterator[str]:
    """The app served by uvicorn on a free loopback port, in this event loop."""
    async with serving(app, TIMEOUT) as port:
        yield f"ws://127.0.0.1:{port}/graphql"


# --- a small graphql-transport-ws client ----------------------------------------------------------


async def subscribe(
    ws: ClientConnection, op_id: str, query: str, variables: dict[str, Any] | None = None
) -> None:
    """Starts an operation and waits for a ping's pong, so the server has taken it in."""
    await send(
        ws, {"id": op_id, "type": "subscribe", "payload": {"query": query, "variables": variables or {}}}
    )
    await send(ws, {"type": "ping"})
    pong = await receive(ws)
    assert pong["type"] == "pong", pong


async def close_of(ws: ClientConnection, timeout: float = TIMEOUT) -> tuple[int | None, list[dict]]:
    """Waits until the server closes the socket; returns its close code and the messages
    that arrived before."""
    messages = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                messages.append(json.loads(await ws.recv()))
    except ConnectionClosed as closed:
        return (closed.rcvd.code if closed.rcvd else None), messages
    except TimeoutError:
        pytest.fail(f"the server did not close the socket within {timeout} s; got {messages}")


@asynccontextmanager
async def opened(url: str, payload: dict[str, Any] | None) -> AsyncIterator[ClientConnection]:
    """A socket speaking graphql-transport-ws that has sent connection_init (no ack awaited)."""
    async with connect(url, subprotocols=[TRANSPORT_WS], open_timeout=TIMEOUT, close_timeout=2) as ws:
        assert ws.subprotocol == TRANSPORT_WS
        init: dict[str, Any] = {"type": "connection_init"}
        if payload is not None:
            init["payload"] = payload
        await send(ws, init)
        yield ws


@asynccontextmanager
async def session(url: str, token: str, key: str = "Authorization") -> AsyncIterator[ClientConnection]:
    """An acknowledged graphql-transport-ws connection authenticated with `token`."""
    async with opened(url, {key: f"Bearer {token}"}) as ws:
        ack = await receive(ws)
        assert ack["type"] == "connection_ack", ack
        yield ws


def data(message: dict[str, Any], field: str) -> Any:
    assert message["type"] == "next", message
    assert not message["payload"].get("errors"), message
    return message["payload"]["data"][field]


async def issue_token(world, who: str) -> tuple[str, str]:
    """A fresh API token for `who`, issued by the admin; returns (token, ApiToken id)."""
    issued = (
        await world["admin"].ok(
            """mutation($i: IssueApiTokenInput!) { issueApiToken(input: $i) { token apiToken { id } } }""",
            {"i": {"userId": world[who].user_id, "name": "websocket"}},
        )
    )["issueApiToken"]
    return issued["token"], issued["apiToken"]["id"]


# --- deploymentStatus -----------------------------------------------------------------------------


async def test_r23_r25_ws_deployment_status_progressing_then_healthy_then_complete(world, ws_url):
    image = await world.register_image("dev")
    deployment = await world.deploy(image, "shop/staging")
    did = deployment["id"]
    async with session(ws_url, world["viewer"].token) as ws:
        await subscribe(ws, "1", DEPLOYMENT_STATUS, {"id": did})
        first = await receive(ws)
        assert first["id"] == "1"
        assert data(first, "deploymentStatus") == {"id": did, "status": "PROGRESSING"}

        assert await finish_due_rollouts(0) == 1
        second = await receive(ws)
        assert second["id"] == "1"
        assert data(second, "deploymentStatus") == {"id": did, "status": "HEALTHY"}
        assert await receive(ws) == {"id": "1", "type": "complete"}

        # The socket stays usable after the operation completed.
        await send(ws, {"type": "ping"})
        assert (await receive(ws))["type"] == "pong"
    stored = await Deployment.get(id=int(did.split(":")[1]))
    assert stored.status == DeploymentStatus.HEALTHY


async def test_r1_r25_ws_outsider_cannot_subscribe_to_a_shop_deployment(world, ws_url):
    """billing_dev may not watch a shop deployment: NOT_FOUND, and no status is streamed."""
    image = await world.register_image("dev")
    did = (await world.deploy(image, "shop/staging"))["id"]
    async with session(ws_url, world["billing_dev"].token) as ws:
        await subscribe(ws, "1", DEPLOYMENT_STATUS, {"id": did})
        message = await receive(ws)
        assert message["id"] == "1"
        if message["type"] == "next":
            errors = message["payload"]["errors"]
            assert message["payload"].get("data") is None
        else:
            assert message["type"] == "error", message
            errors = message["payload"]
        assert [e["extensions"]["code"] for e in errors] == ["NOT_FOUND"]
        assert "PROGRESSING" not in json.dumps(message)
        await finish_due_rollouts(0)
        for _ in range(3):  # nothing but a completion may follow
            try:
                later = await receive(ws, timeout=0.3)
            except TimeoutError:
                break
            assert later == {"id": "1", "type": "complete"}, later


# --- approvalRequestEvents ------------------------------------------------------------------------


async def test_r1_r25_ws_outsider_sees_nothing_of_shop_requests_while_shop_viewer_does(world, ws_url):
    """billing_dev, subscribed to all request events, never sees a shop request; the shop
    viewer sees each change of it and nothing of billing's. Events reach a subscriber in
    order, so the first event billing_dev gets being billing's own proves no shop event
    came before it."""
    async with (
        session(ws_url, world["billing_dev"].token) as outsider,
        session(ws_url, world["viewer"].token) as viewer,
    ):
        await subscribe(outsider, "all", REQUEST_EVENTS)
        await subscribe(viewer, "all", REQUEST_EVENTS)

        image = await world.register_image("dev")
        seen = []
        shop_request = await world.request_approval(image, "shop/prod", who="dev2")
        seen.append(data(await receive(viewer), "approvalRequestEvents"))
        for approver in ("approver1", "approver2"):
            # An event carries the request as it is when delivered: wait for each one.
            await world.approve(shop_request, approver)
            seen.append(data(await receive(viewer), "approvalRequestEvents"))
        assert [(e["id"], e["state"]) for e in seen] == [
            (shop_request, "PENDING"),
            (shop_request, "PENDING"),
            (shop_request, "APPROVED"),
        ]
        assert {e["pipeline"]["application"]["name"] for e in seen} == {"shop"}

        billing_image = await world.register_image("admin", "billing")
        billing_request = await world.request_approval(billing_image, "billing/prod", who="billing_dev")
        await world.deploy(image, "shop/prod", who="dev")  # the shop request becomes CONSUMED
        await world.approve(billing_request, "billing_approver")

        got = [data(await receive(outsider), "approvalRequestEvents") for _ in range(2)]
        assert [(e["id"], e["state"]) for e in got] == [
            (billing_request, "PENDING"),
            (billing_request, "APPROVED"),
        ]
        after = data(await receive(viewer), "approvalRequestEvents")
        assert (after["id"], after["state"]) == (shop_request, "CONSUMED")
        with pytest.raises(TimeoutError):
            await receive(viewer, timeout=0.3)
        with pytest.raises(TimeoutError):
            await receive(outsider, timeout=0.3)
    assert (await ApprovalRequest.get(id=int(shop_request.split(":")[1]))).state == ApprovalState.CONSUMED


async def test_r25_ws_request_events_carry_the_request_as_it_is_now(world, ws_url):
    """Each event shows the request after that change: its approvals so far, and the
    rejection once rejected."""
    query = """subscription {
      approvalRequestEvents { id state approvals { user { email } } rejection { comment } }
    }"""
    async with session(ws_url, world["viewer"].token) as ws:
        await subscribe(ws, "all", query)
        request = await world.request_approval(await world.register_image("dev"), "shop/prod", who="dev2")
        seen = [data(await receive(ws), "approvalRequestEvents")]
        await world.approve(request, "approver1")
        seen.append(data(await receive(ws), "approvalRequestEvents"))
        await world["approver2"].ok(
            'mutation($id: ID!) { rejectRequest(id: $id, reason: "broken") { id } }', {"id": request}
        )
        seen.append(data(await receive(ws), "approvalRequestEvents"))
    assert [e["state"] for e in seen] == ["PENDING", "PENDING", "REJECTED"]
    assert [[a["user"]["email"] for a in e["approvals"]] for e in seen] == [
        [],
        ["approver1@example.com"],
        ["approver1@example.com"],
    ]
    assert [e["rejection"] for e in seen] == [None, None, {"comment": "broken"}]


async def test_r25_ws_pipeline_filter_streams_only_that_pipelines_requests(world, ws_url):
    async with session(ws_url, world["admin"].token) as ws:
        await subscribe(ws, "prod", REQUEST_EVENTS, {"p": world.ids["billing/prod"]})
        shop_image = await world.register_image("dev")
        await world.request_approval(shop_image, "shop/prod", who="dev2")
        billing_image = await world.register_image("admin", "billing")
        billing_request = await world.request_approval(billing_image, "billing/prod", who="billing_dev")
        event = data(await receive(ws), "approvalRequestEvents")
        assert (event["id"], event["state"]) == (billing_request, "PENDING")


async def test_r5_r25_ws_revoked_role_stops_the_stream_of_that_scope(world, ws_url):
    """A binding revoked while subscribed is enforced at the next event: the viewer, left
    with a viewer role on billing only, gets the billing request and never the shop one."""
    admin = world["admin"]
    await admin.ok(
        "mutation($i: RoleBindingInput!) { grantRole(input: $i) { id } }",
        {
            "i": {
                "userId": world["viewer"].user_id,
                "role": "VIEWER",
                "application": "billing",
                "environment": "*",
            }
        },
    )
    async with session(ws_url, world["viewer"].token) as ws:
        await subscribe(ws, "all", REQUEST_EVENTS)
        users = (await admin.ok("{ users { id roleBindings { id application } } }"))["users"]
        bindings = next(u for u in users if u["id"] == world["viewer"].user_id)["roleBindings"]
        shop_binding = next(b["id"] for b in bindings if b["application"] == "shop")
        await admin.ok("mutation($id: ID!) { revokeRole(id: $id) { id } }", {"id": shop_binding})

        image = await world.register_image("dev")
        await world.request_approval(image, "shop/prod", who="dev2")
        billing_image = await world.register_image("admin", "billing")
        billing_request = await world.request_approval(billing_image, "billing/prod", who="billing_dev")
        event = data(await receive(ws), "approvalRequestEvents")
        assert (event["id"], event["state"]) == (billing_request, "PENDING")


# --- authentication -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"Authorization": "Bearer not-a-real-token"}, id="unknown-token"),
        pytest.param({"Authorization": "Basic dXNlcjpwYXNz"}, id="not-bearer"),
        pytest.param({"Authorization": "Bearer "}, id="empty-bearer"),
        pytest.param({}, id="no-authorization-key"),
        pytest.param(None, id="no-payload"),
        pytest.param({"Authorization": 42}, id="not-a-string"),
    ],
)
async def test_r25_ws_bad_or_missing_token_closes_the_socket_with_4403(ws_url, payload):
    async with opened(ws_url, payload) as ws:
        code, messages = await close_of(ws)
    assert code == 4403
    assert all(m.get("type") != "connection_ack" for m in messages), messages


async def test_r25_ws_revoked_or_expired_token_is_refused_at_connection_init(world, ws_url):
    revoked, revoked_id = await issue_token(world, "viewer")
    await world["admin"].ok("mutation($id: ID!) { revokeApiToken(id: $id) { id } }", {"id": revoked_id})
    expired, expired_id = await issue_token(world, "viewer")
    await ApiToken.filter(id=int(expired_id.split(":")[1])).update(expires_at=now() - timedelta(minutes=1))
    for token in (revoked, expired):
        async with opened(ws_url, {"Authorization": f"Bearer {token}"}) as ws:
            code, messages = await close_of(ws)
        assert code == 4403
        assert messages == []


@pytest.mark.parametrize("key", ["authorization", "AUTHORIZATION", "aUtHoRiZaTiOn"])
async def test_r25_ws_authorization_key_is_matched_case_insensitively(world, ws_url, key):
    image = await world.register_image("dev")
    did = (await world.deploy(image, "shop/staging"))["id"]
    async with session(ws_url, world["viewer"].token, key=key) as ws:
        await subscribe(ws, "1", DEPLOYMENT_STATUS, {"id": did})
        assert data(await receive(ws), "deploymentStatus") == {"id": did, "status": "PROGRESSING"}


@pytest.mark.parametrize("how", ["revoked", "expired"])
@pytest.mark.parametrize("operation", ["deploymentStatus", "approvalRequestEvents"])
async def test_r25_ws_token_withdrawn_while_subscribed_closes_the_socket_with_4403(
    world, ws_url, how, operation
):
    image = await world.register_image("dev")
    did = (await world.deploy(image, "shop/staging"))["id"]
    token, token_id = await issue_token(world, "viewer")
    async with session(ws_url, token) as ws:
        if operation == "deploymentStatus":
            await subscribe(ws, "1", DEPLOYMENT_STATUS, {"id": did})
            assert data(await receive(ws), "deploymentStatus")["status"] == "PROGRESSING"
        else:
            await subscribe(ws, "1", REQUEST_EVENTS)
            first = await world.request_approval(await world.register_image("dev"), "shop/prod", who="dev2")
            assert data(await receive(ws), "approvalRequestEvents")["id"] == first

        if how == "revoked":
            await world["admin"].ok("mutation($id: ID!) { revokeApiToken(id: $id) { id } }", {"id": token_id})
        else:
            await ApiToken.filter(id=int(token_id.split(":")[1])).update(
                expires_at=now() - timedelta(seconds=1)
            )

        code, messages = await close_of(ws)
    assert code == 4403
    assert all(m.get("type") != "next" for m in messages), messages
    stored = await ApiToken.get(id=int(token_id.split(":")[1]))
    assert (stored.revoked_at is not None) == (how == "revoked")


# --- protocol -------------------------------------------------------------------------------------


async def test_r25_ws_legacy_graphql_ws_protocol_is_not_accepted(world, ws_url):
    """Only graphql-transport-ws: a client offering only the legacy subprotocol gets no
    session (the handshake is refused, or the socket is closed without an ack)."""
    init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {world['viewer'].token}"}}
    try:
        async with connect(ws_url, subprotocols=[LEGACY_WS], open_timeout=TIMEOUT, close_timeout=2) as ws:
            assert ws.subprotocol != LEGACY_WS
            with contextlib.suppress(ConnectionClosed):  # the server may have closed it already
                await send(ws, init)
            code, messages = await close_of(ws)
    except InvalidHandshake:
        return
    assert code == 4406
    assert all(m.get("type") not in ("connection_ack", "ka") for m in messages), messages


# --- every operation on a socket is authorised at its moment (R5) ---------------------------------


async def run_on(ws: ClientConnection, op_id: str, query: str, variables: dict | None = None) -> dict:
    """A query or mutation sent on the socket: its one result (`next`, or `error`), then
    `complete` for a `next`."""
    await send(
        ws, {"id": op_id, "type": "subscribe", "payload": {"query": query, "variables": variables or {}}}
    )
    message = await receive(ws)
    assert message["id"] == op_id, message
    if message["type"] == "next":
        assert await receive(ws) == {"id": op_id, "type": "complete"}
    return message


def codes_of(message: dict) -> list[str]:
    errors = message["payload"]["errors"] if message["type"] == "next" else message["payload"]
    return [e["extensions"]["code"] for e in errors]


class Attempt:
    """One operation a user sends on an open socket, and what it would change."""

    who = "dev"
    query = ""

    async def prepare(self, world) -> dict:
        return {}

    async def state(self, world, variables) -> Any:
        """What the operation changes, read from the database."""


class Approve(Attempt):
    who = "approver1"
    query = "mutation($id: ID!) { approveRequest(id: $id) { id state } }"

    async def prepare(self, world):
        image = await world.register_image("dev")
        return {"id": await world.request_approval(image, "shop/prod", who="dev2")}

    async def state(self, world, variables):
        request = await ApprovalRequest.get(id=int(variables["id"].split(":")[1]))
        return request.state, await request.approvals.all().count()


class Deploy(Attempt):
    query = "mutation($i: DeployImageInput!) { deployImage(input: $i) { id status } }"

    async def prepare(self, world):
        image = await world.register_image("dev2")
        return {"i": {"pipelineId": world.ids["shop/staging"], "imageId": image}}

    async def state(self, world, variables):
        return await Deployment.all().count()


class Register(Attempt):
    query = "mutation($i: RegisterImageInput!) { registerImage(input: $i) { id } }"

    async def prepare(self, world):
        digest = "sha256:" + "ab" * 32
        return {
            "i": {"application": "shop", "repository": "r.example.com/shop", "tag": "ws", "digest": digest}
        }

    async def state(self, world, variables):
        return await Image.filter(digest=variables["i"]["digest"]).count()


class Read(Attempt):
    who = "viewer"
    query = "query($id: ID!) { approvalRequest(id: $id) { id state } }"

    async def prepare(self, world):
        image = await world.register_image("dev")
        return {"id": await world.request_approval(image, "shop/prod", who="dev2")}


ATTEMPTS = {"approveRequest": Approve(), "deployImage": Deploy(), "registerImage": Register(), "read": Read()}
ME_ON_SOCKET = "{ me { email } }"


async def revoke_every_role(admin, user_id: str) -> None:
    users = (await admin.ok("{ users { id roleBindings { id } } }"))["users"]
    bindings = next(u for u in users if u["id"] == user_id)["roleBindings"]
    assert bindings
    for binding in bindings:
        await admin.ok("mutation($id: ID!) { revokeRole(id: $id) { id } }", {"id": binding["id"]})


@pytest.mark.parametrize("how", ["token revoked", "user deactivated"])
@pytest.mark.parametrize("operation", list(ATTEMPTS))
async def test_r5_socket_operation_after_credentials_withdrawn_is_refused_and_closes_4403(
    world, ws_url, operation, how
):
    """The socket authenticated at connection_init; the credentials are withdrawn while it
    stays open. The next operation sent on it does not run (nothing changes, no data is
    sent) and the socket is closed with 4403, as an HTTP request with them is refused."""
    attempt = ATTEMPTS[operation]
    variables = await attempt.prepare(world)
    before = await attempt.state(world, variables)
    token, token_id = await issue_token(world, attempt.who)
    async with session(ws_url, token) as ws:
        warm = await run_on(ws, "warm", ME_ON_SOCKET)
        assert data(warm, "me") == {"email": f"{attempt.who}@example.com"}
        if how == "token revoked":
            await world["admin"].ok("mutation($id: ID!) { revokeApiToken(id: $id) { id } }", {"id": token_id})
        else:
            await world["admin"].ok(
                "mutation($id: ID!) { deactivateUser(id: $id) { id } }", {"id": world[attempt.who].user_id}
            )
        await send(
            ws, {"id": "1", "type": "subscribe", "payload": {"query": attempt.query, "variables": variables}}
        )
        code, messages = await close_of(ws)
    assert code == 4403
    assert all(m.get("type") != "next" or m["payload"].get("data") is None for m in messages), messages
    assert await attempt.state(world, variables) == before
    assert await Client(world.http, token).code(ME_ON_SOCKET) == "UNAUTHENTICATED"


@pytest.mark.parametrize("via", ["this process", "another process"])
@pytest.mark.parametrize("operation", list(ATTEMPTS))
async def test_r5_socket_operation_after_role_revoked_is_refused(world, cluster, ws_url, operation, via):
    """Every role of the user is revoked, on this server or on another process sharing the
    database, after the socket connected and ran an operation (so this process holds the old
    decision). The next operation on the socket is decided on the roles as of now: refused,
    and it changes nothing; the credentials still hold, so the socket stays open."""
    attempt = ATTEMPTS[operation]
    variables = await attempt.prepare(world)
    before = await attempt.state(world, variables)
    admin = world["admin"] if via == "this process" else cluster.on_b("admin")
    async with session(ws_url, world[attempt.who].token) as ws:
        # the old decision, taken on this process before the revocation
        if operation == "read":
            assert (
                data(await run_on(ws, "warm", attempt.query, variables), "approvalRequest")["state"]
                == "PENDING"
            )
        else:
            warm = await run_on(
                ws,
                "warm",
                '{ canI(action: DEPLOY, application: "shop", environment: "staging") { allowed } }',
            )
            assert warm["type"] == "next"
        await revoke_every_role(admin, world[attempt.who].user_id)
        refused = await run_on(ws, "1", attempt.query, variables)
        assert codes_of(refused) in (["FORBIDDEN"], ["NOT_FOUND"]), refused
        if refused["type"] == "next":
            assert not any((refused["payload"].get("data") or {}).values()), refused
        # still open: the credentials hold
        assert data(await run_on(ws, "2", ME_ON_SOCKET), "me") == {"email": f"{attempt.who}@example.com"}
    assert await attempt.state(world, variables) == before


JWT_SECRET = "a-shared-secret-long-enough-for-hs256-0123456789"


@pytest.mark.parametrize("operation", list(ATTEMPTS))
async def test_r5_socket_operation_after_jwt_expired_is_refused_and_closes_4403(
    world, settings, operation, monkeypatch
):
    """A socket signed in with a JWT (single sign-on): once the JWT has expired, the next
    operation sent on it does not run and the socket is closed with 4403. The JWT expired
    ten seconds ago but is inside the 30 s leeway at connection_init; the leeway is then
    taken away, which is the JWT expiring while the socket is open."""
    from greenlight import sso
    from greenlight.app import create_app

    attempt = ATTEMPTS[operation]
    variables = await attempt.prepare(world)
    before = await attempt.state(world, variables)
    sso_settings = dataclasses.replace(
        settings, jwt_issuer="https://idp.example.com/", jwt_audience="greenlight", jwt_secret=JWT_SECRET
    )
    at = int(time.time())
    claims = {
        "iss": "https://idp.example.com/",
        "aud": "greenlight",
        "email": f"{attempt.who}@example.com",
        "iat": at - 60,
        "exp": at - 10,
    }
    token = jwt.encode(claims, JWT_SECRET, algorithm="HS256")
    async with (
        serving(create_app(sso_settings, manage_database=False), TIMEOUT) as port,
        session(f"ws://127.0.0.1:{port}/graphql", token) as ws,
    ):
        warm = await run_on(ws, "warm", ME_ON_SOCKET)
        assert data(warm, "me") == {"email": f"{attempt.who}@example.com"}
        monkeypatch.setattr(sso, "LEEWAY_SECONDS", 0)
        await send(
            ws,
            {"id": "1", "type": "subscribe", "payload": {"query": attempt.query, "variables": variables}},
        )
        code, messages = await close_of(ws)
    assert code == 4403
    assert all(m.get("type") != "next" or m["payload"].get("data") is None for m in messages), messages
    assert await attempt.state(world, variables) == before


async def test_ws_message_over_max_body_bytes_closes_the_socket_with_1009(world, ws_url, settings):
    """GREENLIGHT_MAX_BODY_BYTES binds WebSocket messages as it binds request bodies: a
    message larger than it (15 MiB, say) is not read; the socket is closed with 1009
    (message too big). A message within the limit on another socket is served."""
    padding = " " * (settings.max_body_bytes + 1)
    async with session(ws_url, world["viewer"].token) as ws:
        await send(ws, {"id": "big", "type": "subscribe", "payload": {"query": "{ me { email } }" + padding}})
        code, messages = await close_of(ws)
    assert code == 1009
    assert messages == []
    within = " " * (settings.max_body_bytes - 1000)
    async with session(ws_url, world["viewer"].token) as ws:
        answer = await run_on(ws, "ok", "{ me { email } }" + within)
        assert data(answer, "me") == {"email": "viewer@example.com"}
