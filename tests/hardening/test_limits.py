"""Hardening: the limits that keep one client from hurting everyone.

- GraphQL limits (QUERY_TOO_COMPLEX): depth, tokens, aliases; just under each limit is fine;
  each is configurable through Settings (and GREENLIGHT_* variables).
- Batched requests (a JSON array) are refused with HTTP 400.
- Request bodies over max_body_bytes get HTTP 413, declared or streamed (chunked).
- Introspection on by default, off with introspection=False.
- GET never runs a mutation; POST needs a JSON content type (a cross-site form cannot act).
- Mutations per token per minute (RATE_LIMITED with retryAfter and a Retry-After header).
- Live subscriptions per token (RATE_LIMITED), over a real WebSocket served by uvicorn.

Tests that need other limits than the suite's defaults parametrize `overrides`, which the
module's `settings` fixture applies.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from greenlight.config import Settings
from greenlight.jobs import finish_due_rollouts
from greenlight.models import Approval, Image
from tests.support import receive, send, serving

TIMEOUT = 5.0
ME_Q = "{ me { email } }"
REGISTER_M = """mutation($i: RegisterImageInput!) { registerImage(input: $i) { id } }"""


@pytest.fixture
def overrides() -> dict[str, Any]:
    """Settings to change for one test (parametrize it)."""
    return {}


@pytest.fixture
def settings(database_url, overrides) -> Settings:
    return Settings(
        **{
            "database_url": database_url,
            "background_jobs": False,
            "rollout_seconds": 90,
            "mutations_per_minute": 0,
            **overrides,
        }
    )


def limits(**values: Any):
    """Parametrizes `overrides` with `values`."""
    label = ",".join(f"{k}={v}" for k, v in values.items())
    return pytest.mark.parametrize("overrides", [pytest.param(values, id=label)])


def nested(depth: int) -> str:
    """A valid query whose deepest field is at `depth` (root fields are at depth 0):
    applications { pipelines { application { pipelines { ... { id } } } } }."""
    assert depth >= 1
    inner = "id"
    kinds = ["pipelines" if i % 2 == 0 else "application" for i in range(depth - 1)]
    for kind in reversed(kinds):
        inner = f"{kind} {{ {inner} }}"
    return f"{{ applications {{ {inner} }} }}"


def many_tokens(count: int) -> str:
    """A valid query of exactly `count` lexical tokens (16 + one per list item)."""
    assert count > 16
    states = " ".join("PENDING" for _ in range(count - 16))
    return f"{{ approvalRequests(filter: {{states: [{states}]}}) {{ totalCount }} }}"


def aliased(count: int) -> str:
    return "{ " + " ".join(f"a{i}: me {{ email }}" for i in range(count)) + " }"


def register_input(tag: str) -> dict:
    return {
        "i": {
            "application": "shop",
            "repository": "registry.example.com/acme/shop",
            "tag": tag,
            "digest": "sha256:" + tag.encode().hex().ljust(64, "0")[:64],
        }
    }


def bearer(client) -> dict[str, str]:
    return {"Authorization": f"Bearer {client.token}"}


# --- depth, tokens, aliases -------------------------------------------------------------------------


@limits(max_query_cost=10**9)  # lists nested ten deep could be huge: the cost limit would refuse it
async def test_query_depth_at_the_limit_is_answered(world):
    data = await world["dev"].ok(nested(10))
    assert [a["pipelines"] is not None for a in data["applications"]] == [True]


async def test_query_depth_over_the_limit_is_query_too_complex(world):
    body = await world["dev"].execute(nested(11))
    assert body.get("data") is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["QUERY_TOO_COMPLEX"]


@limits(max_query_cost=10**9)  # as above: this is about depth, not about the answer's size
async def test_query_depth_is_counted_through_fragments(world):
    """Fragments do not hide depth: depth 11 spread over fragments is still too deep."""
    query = """
      query { applications { ...A } }
      fragment A on Application { pipelines { ...P } }
      fragment P on Pipeline { application { pipelines { application { pipelines { ...Q } } } } }
      fragment Q on Pipeline { application { pipelines { application { pipelines { application { id } } } } } }
    """
    assert await world["dev"].code(query) == "QUERY_TOO_COMPLEX"
    shallower = query.replace("application { id }", "id")
    assert (await world["dev"].ok(shallower))["applications"][0]["pipelines"]


@limits(max_query_depth=3)
async def test_query_depth_limit_is_configurable(world):
    assert (await world["dev"].ok(nested(3)))["applications"][0]["pipelines"]
    assert await world["dev"].code(nested(4)) == "QUERY_TOO_COMPLEX"


async def test_query_tokens_at_the_limit_are_answered(world):
    data = await world["dev"].ok(many_tokens(2000))
    assert data["approvalRequests"]["totalCount"] == 0


async def test_query_tokens_over_the_limit_are_query_too_complex(world):
    body = await world["dev"].execute(many_tokens(2001))
    assert body.get("data") is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["QUERY_TOO_COMPLEX"]


@limits(max_query_tokens=100)
async def test_query_token_limit_is_configurable(world):
    assert (await world["dev"].ok(many_tokens(100)))["approvalRequests"]["totalCount"] == 0
    assert await world["dev"].code(many_tokens(101)) == "QUERY_TOO_COMPLEX"


async def test_too_many_tokens_in_a_mutation_change_nothing(world, unchanged):
    """A mutation over the token limit is refused before it runs."""
    padding = " ".join("__typename" for _ in range(2000))  # one token each
    mutation = (
        'mutation { registerImage(input: {application: "shop", repository: "r", tag: "t", '
        f'digest: "sha256:{"a" * 64}"}}) {{ id {padding} }} }}'
    )
    async with unchanged():
        assert await world["dev"].code(mutation) == "QUERY_TOO_COMPLEX"


async def test_aliases_at_the_limit_are_answered(world):
    data = await world["dev"].ok(aliased(15))
    assert len(data) == 15
    assert {v["email"] for v in data.values()} == {"dev@example.com"}


async def test_aliases_over_the_limit_are_query_too_complex(world):
    body = await world["dev"].execute(aliased(16))
    assert body.get("data") is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["QUERY_TOO_COMPLEX"]


@limits(max_aliases=2)
async def test_alias_limit_is_configurable(world):
    assert len(await world["dev"].ok(aliased(2))) == 2
    assert await world["dev"].code(aliased(3)) == "QUERY_TOO_COMPLEX"


async def test_aliased_mutations_over_the_limit_change_nothing(world, unchanged):
    """Sixteen aliased registerImage in one document: refused whole, nothing registered."""
    fields = " ".join(
        f'm{i}: registerImage(input: {{application: "shop", repository: "r", tag: "t{i}", '
        f'digest: "sha256:{str(i).rjust(64, "0")}"}}) {{ id }}'
        for i in range(16)
    )
    async with unchanged():
        assert await world["dev"].code(f"mutation {{ {fields} }}") == "QUERY_TOO_COMPLEX"


async def test_query_the_validator_gives_up_on_is_query_too_complex(world):
    """1000 repetitions of one field stay under the token limit (1005 tokens) but exhaust
    the validator's budget: a size limit exceeded, so QUERY_TOO_COMPLEX, not a user error."""
    query = "{ me { " + " ".join("email" for _ in range(1000)) + " } }"
    assert await world["dev"].code(query) == "QUERY_TOO_COMPLEX"


def test_limits_are_read_from_the_environment():
    settings = Settings.from_env(
        {
            "GREENLIGHT_MAX_QUERY_DEPTH": "4",
            "GREENLIGHT_MAX_QUERY_TOKENS": "300",
            "GREENLIGHT_MAX_ALIASES": "0",
            "GREENLIGHT_MAX_BODY_BYTES": "2048",
            "GREENLIGHT_INTROSPECTION": "false",
            "GREENLIGHT_MUTATIONS_PER_MINUTE": "7",
            "GREENLIGHT_MAX_SUBSCRIPTIONS_PER_TOKEN": "3",
        }
    )
    assert (
        settings.max_query_depth,
        settings.max_query_tokens,
        settings.max_aliases,
        settings.max_body_bytes,
        settings.introspection,
        settings.mutations_per_minute,
        settings.max_subscriptions_per_token,
    ) == (4, 300, 0, 2048, False, 7, 3)
    defaults = Settings.from_env({})
    assert (
        defaults.max_query_depth,
        defaults.max_query_tokens,
        defaults.max_aliases,
        defaults.max_body_bytes,
        defaults.introspection,
        defaults.mutations_per_minute,
        defaults.max_subscriptions_per_token,
    ) == (10, 2000, 15, 1_048_576, True, 120, 10)


# --- batches ----------------------------------------------------------------------------------------


async def test_batched_operations_are_refused_and_change_nothing(world, unchanged):
    batch = [
        {"query": ME_Q},
        {"query": REGISTER_M, "variables": register_input("batched")},
    ]
    async with unchanged():
        response = await world.http.post("/graphql", json=batch, headers=bearer(world["dev"]))
    assert response.status_code == 400
    assert "registerImage" not in response.text


async def test_a_batch_of_one_is_refused_too(world):
    response = await world.http.post("/graphql", json=[{"query": ME_Q}], headers=bearer(world["dev"]))
    assert response.status_code == 400
    assert "dev@example.com" not in response.text


# --- body size --------------------------------------------------------------------------------------

SMALL_BODY = 4096


def padded_body(query: str, variables: dict, size: int) -> bytes:
    """A JSON body of exactly `size` bytes: the query padded with spaces."""
    base = json.dumps({"query": query, "variables": variables}).encode()
    assert len(base) <= size
    body = json.dumps({"query": query + " " * (size - len(base)), "variables": variables}).encode()
    assert len(body) == size
    return body


@limits(max_body_bytes=SMALL_BODY)
async def test_body_at_the_limit_is_answered(world):
    body = padded_body(REGISTER_M, register_input("at-limit"), SMALL_BODY)
    response = await world.http.post(
        "/graphql",
        content=body,
        headers={**bearer(world["dev"]), "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"]["registerImage"]["id"].startswith("Image:")
    assert await Image.filter(tag="at-limit").count() == 1


@limits(max_body_bytes=SMALL_BODY)
async def test_body_over_the_limit_with_content_length_is_413_and_changes_nothing(world, unchanged):
    body = padded_body(REGISTER_M, register_input("over-limit"), SMALL_BODY + 1)
    async with unchanged():
        response = await world.http.post(
            "/graphql",
            content=body,
            headers={**bearer(world["dev"]), "Content-Type": "application/json"},
        )
    assert response.status_code == 413
    assert response.request.headers["content-length"] == str(SMALL_BODY + 1)


@limits(max_body_bytes=SMALL_BODY)
async def test_body_over_the_limit_declared_is_413_whatever_is_sent(world):
    """A Content-Length over the limit is refused from the header alone."""
    response = await world.http.post(
        "/graphql",
        content=b"{}",
        headers={**bearer(world["dev"]), "Content-Type": "application/json", "Content-Length": "999999"},
    )
    assert response.status_code == 413


@limits(max_body_bytes=SMALL_BODY)
async def test_chunked_body_over_the_limit_without_content_length_is_413_and_changes_nothing(
    world, unchanged
):
    body = padded_body(REGISTER_M, register_input("chunked"), SMALL_BODY * 3)

    async def chunks():
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    async with unchanged():
        response = await world.http.post(
            "/graphql",
            content=chunks(),
            headers={**bearer(world["dev"]), "Content-Type": "application/json"},
        )
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert response.status_code == 413


@limits(max_body_bytes=SMALL_BODY)
async def test_chunked_body_under_the_limit_is_answered(world):
    body = padded_body(REGISTER_M, register_input("chunked-ok"), SMALL_BODY)

    async def chunks():
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    response = await world.http.post(
        "/graphql", content=chunks(), headers={**bearer(world["dev"]), "Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert await Image.filter(tag="chunked-ok").count() == 1


async def test_default_body_limit_is_one_mebibyte(world):
    query = ME_Q + " " * (1_048_576 + 10)
    response = await world.http.post("/graphql", json={"query": query}, headers=bearer(world["dev"]))
    assert response.status_code == 413


# --- introspection ----------------------------------------------------------------------------------

SCHEMA_Q = "{ __schema { queryType { name } } }"
TYPE_Q = '{ __type(name: "Pipeline") { name fields { name } } }'


async def test_introspection_is_on_by_default(world):
    assert (await world["viewer"].ok(SCHEMA_Q))["__schema"]["queryType"]["name"] == "Query"
    fields = {f["name"] for f in (await world["viewer"].ok(TYPE_Q))["__type"]["fields"]}
    assert {"id", "application", "environment", "approvalPolicy"} <= fields


@limits(introspection=False)
@pytest.mark.parametrize("query", [SCHEMA_Q, TYPE_Q], ids=["__schema", "__type"])
async def test_introspection_off_refuses_schema_queries(world, query):
    body = await world["admin"].execute(query)
    assert body.get("data") is None
    assert body["errors"]
    assert body["errors"][0]["extensions"]["code"] in ("BAD_USER_INPUT", "FORBIDDEN")
    assert [e["message"] for e in body["errors"] if "introspection" in e["message"].lower()], body


@limits(introspection=False)
async def test_introspection_off_still_answers_ordinary_queries(world):
    data = await world["admin"].ok("{ __typename me { email } }")
    assert data == {"__typename": "Query", "me": {"email": "admin@example.com"}}


# --- GET and content types --------------------------------------------------------------------------


async def test_get_runs_queries(world):
    response = await world.http.get(
        "/graphql", params={"query": ME_Q}, headers={**bearer(world["dev"]), "Accept": "application/json"}
    )
    assert response.status_code == 200
    assert response.json()["data"] == {"me": {"email": "dev@example.com"}}


async def test_get_never_runs_a_mutation(world, unchanged):
    request = await world.request_approval(await world.register_image("dev"), "shop/prod", who="dev2")
    mutation = f'mutation {{ approveRequest(id: "{request}") {{ id state }} }}'
    async with unchanged():
        response = await world.http.get(
            "/graphql",
            params={"query": mutation},
            headers={**bearer(world["approver1"]), "Accept": "application/json"},
        )
    assert response.status_code in (400, 405), response.text
    assert '"data"' not in response.text
    assert await Approval.filter(request_id=int(request.split(":")[1])).count() == 0


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain; charset=application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        None,
    ],
)
async def test_post_without_a_json_content_type_is_refused_and_changes_nothing(
    world, unchanged, content_type
):
    """What a cross-site HTML form (or a no-cors fetch) can send never acts."""
    payload = json.dumps({"query": REGISTER_M, "variables": register_input("cross-site")})
    if content_type is None:
        headers = {}
        content = payload.encode()
    elif content_type.startswith("application/x-www-form-urlencoded"):
        headers = {"Content-Type": content_type}
        content = urlencode(
            {"query": REGISTER_M, "variables": json.dumps(register_input("cross-site"))}
        ).encode()
    elif content_type.startswith("multipart/form-data"):
        headers = {"Content-Type": content_type}
        content = (
            b'--x\r\nContent-Disposition: form-data; name="operations"\r\n\r\n'
            + payload.encode()
            + b"\r\n--x--\r\n"
        )
    else:
        headers = {"Content-Type": content_type}
        content = payload.encode()
    async with unchanged():
        response = await world.http.post(
            "/graphql", content=content, headers={**bearer(world["dev"]), **headers}
        )
    assert response.status_code == 400, response.text
    assert await Image.filter(tag="cross-site").count() == 0


async def test_post_with_json_content_type_acts(world):
    """The control of the test above: the same request as application/json registers."""
    response = await world.http.post(
        "/graphql",
        content=json.dumps({"query": REGISTER_M, "variables": register_input("same-site")}),
        headers={**bearer(world["dev"]), "Content-Type": "application/json"},
    )
    assert response.status_code == 200
    assert await Image.filter(tag="same-site").count() == 1


# --- mutation rate ----------------------------------------------------------------------------------


async def post(world, who: str, query: str, variables: dict | None = None):
    return await world.http.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers=bearer(world[who])
    )


@limits(mutations_per_minute=3)
async def test_fourth_mutation_of_a_token_is_rate_limited_and_changes_nothing(world, unchanged):
    for n in range(3):
        response = await post(world, "dev", REGISTER_M, register_input(f"rate-{n}"))
        assert response.status_code == 200
        assert not response.json().get("errors"), response.text
    async with unchanged():
        response = await post(world, "dev", REGISTER_M, register_input("rate-3"))
    assert response.status_code in (200, 429)
    body = response.json()
    assert body.get("data") is None
    [error] = body["errors"]
    assert error["extensions"]["code"] == "RATE_LIMITED"
    retry_after = error["extensions"]["retryAfter"]
    assert isinstance(retry_after, int)
    assert 1 <= retry_after <= 20  # 3 a minute: one comes back within 20 s
    assert response.headers["Retry-After"] == str(retry_after)
    assert await Image.filter(tag__startswith="rate-").count() == 3


@limits(mutations_per_minute=3)
async def test_rate_limit_is_per_token_and_spares_queries(world):
    for n in range(3):
        assert not (await post(world, "dev", REGISTER_M, register_input(f"dev-{n}"))).json().get("errors")
    limited = (await post(world, "dev", REGISTER_M, register_input("dev-3"))).json()
    assert limited["errors"][0]["extensions"]["code"] == "RATE_LIMITED"

    # Queries by the same token are not limited.
    for _ in range(5):
        assert await world["dev"].ok(ME_Q) == {"me": {"email": "dev@example.com"}}
    # Another token is unaffected, also of the same team.
    for n in range(3):
        response = await post(world, "dev2", REGISTER_M, register_input(f"dev2-{n}"))
        assert response.status_code == 200
        assert not response.json().get("errors"), response.text
        assert "Retry-After" not in response.headers
    assert await Image.filter(tag__startswith="dev-").count() == 3
    assert await Image.filter(tag__startswith="dev2-").count() == 3


@limits(mutations_per_minute=3)
async def test_rate_limit_counts_every_kind_of_mutation(world, unchanged):
    """Register, request, cancel use up dev's three; the fourth, a request, is refused."""
    image = await world.register_image("dev")
    request = await world.request_approval(image, "shop/prod", who="dev")
    await world["dev"].ok("mutation($id: ID!) { cancelApprovalRequest(id: $id) { id } }", {"id": request})
    async with unchanged():
        error = await world["dev"].fails(
            "mutation($i: RequestApprovalInput!) { requestApproval(input: $i) { id } }",
            {"i": {"pipelineId": world.ids["shop/prod"], "imageId": image}},
        )
    assert error["extensions"]["code"] == "RATE_LIMITED"


@limits(mutations_per_minute=3)
async def test_rate_limit_cannot_be_dodged_by_respelling_the_authorization_header(world, unchanged):
    token = world["dev"].token
    spellings = [f"Bearer {token}", f"bearer {token}", f"BEARER  {token}", f" Bearer {token} "]
    for n, authorization in enumerate(spellings[:3]):
        response = await world.http.post(
            "/graphql",
            json={"query": REGISTER_M, "variables": register_input(f"spelled-{n}")},
            headers={"Authorization": authorization},
        )
        assert not response.json().get("errors"), response.text  # each spelling authenticates
    async with unchanged():
        response = await world.http.post(
            "/graphql",
            json={"query": REGISTER_M, "variables": register_input("spelled-3")},
            headers={"Authorization": spellings[3]},
        )
    assert response.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert await Image.filter(tag__startswith="spelled-").count() == 3


@limits(mutations_per_minute=3)
async def test_rate_limit_counts_each_mutation_of_one_document(world):
    """Four registerImage fields in one document, with a budget of three: the fourth (or the
    whole document) is RATE_LIMITED; never four images."""
    fields = " ".join(
        f'm{i}: registerImage(input: {{application: "shop", repository: "r", tag: "doc-{i}", '
        f'digest: "sha256:{str(i).rjust(64, "0")}"}}) {{ id }}'
        for i in range(4)
    )
    body = await world["dev"].execute(f"mutation {{ {fields} }}")
    registered = await Image.filter(tag__startswith="doc-").count()
    assert registered <= 3
    assert "RATE_LIMITED" in [e["extensions"]["code"] for e in body.get("errors") or []]


# --- live subscriptions per token -------------------------------------------------------------------

TRANSPORT_WS = Subprotocol("graphql-transport-ws")
STATUS_S = "subscription($id: ID!) { deploymentStatus(deploymentId: $id) { status } }"


@pytest.fixture
async def ws_url(app) -> AsyncIterator[str]:
    """The app served by uvicorn on a free loopback port, in this event loop."""
    async with serving(app, TIMEOUT) as port:
        yield f"ws://127.0.0.1:{port}/graphql"


@asynccontextmanager
async def session(url: str, token: str) -> AsyncIterator[ClientConnection]:
    """An acknowledged graphql-transport-ws connection authenticated with `token`."""
    async with connect(url, subprotocols=[TRANSPORT_WS], open_timeout=TIMEOUT, close_timeout=2) as ws:
        await send(ws, {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})
        ack = await receive(ws)
        assert ack["type"] == "connection_ack", ack
        yield ws


async def subscribe_status(ws: ClientConnection, op_id: str, deployment_id: str) -> tuple[str, Any]:
    """Subscribes to a deployment's status. deploymentStatus streams the current status at
    once, so the first message tells: ("live", status) or ("refused", [codes])."""
    await send(
        ws,
        {
            "id": op_id,
            "type": "subscribe",
            "payload": {"query": STATUS_S, "variables": {"id": deployment_id}},
        },
    )
    message = await receive(ws)
    assert message.get("id") == op_id, message
    if message["type"] == "error":
        return "refused", [e.get("extensions", {}).get("code") for e in message["payload"]]
    assert message["type"] == "next", message
    if message["payload"].get("errors"):
        assert message["payload"].get("data") is None, message
        assert await receive(ws) == {"id": op_id, "type": "complete"}
        return "refused", [e.get("extensions", {}).get("code") for e in message["payload"]["errors"]]
    return "live", message["payload"]["data"]["deploymentStatus"]["status"]


async def progressing_deployment(world) -> str:
    image = await world.register_image("dev")
    return (await world.deploy(image, "shop/staging"))["id"]


@limits(max_subscriptions_per_token=2)
async def test_third_live_subscription_of_a_token_across_connections_is_rate_limited(world, ws_url):
    """Two connections of the viewer's token hold one subscription each; a third on either
    is RATE_LIMITED, while the two keep streaming and another token may subscribe."""
    did = await progressing_deployment(world)
    async with (
        session(ws_url, world["viewer"].token) as first,
        session(ws_url, world["viewer"].token) as second,
        session(ws_url, world["approver1"].token) as other,
    ):
        assert await subscribe_status(first, "a", did) == ("live", "PROGRESSING")
        assert await subscribe_status(second, "b", did) == ("live", "PROGRESSING")
        assert await subscribe_status(second, "c", did) == ("refused", ["RATE_LIMITED"])
        assert await subscribe_status(other, "x", did) == ("live", "PROGRESSING")

        assert await finish_due_rollouts(0) == 1
        for ws, op_id in ((first, "a"), (second, "b"), (other, "x")):
            message = await receive(ws)
            assert message["id"] == op_id, message
            assert message["payload"]["data"]["deploymentStatus"]["status"] == "HEALTHY"
            assert await receive(ws) == {"id": op_id, "type": "complete"}


@limits(max_subscriptions_per_token=2)
async def test_ended_subscriptions_free_their_slots(world, ws_url):
    """Once a subscription ends (its deployment finished, or the client completed it, or
    the connection closed), the token may start another. The slot is freed when the server
    has ended it, a moment later, so the new subscription is retried (bounded)."""
    did = await progressing_deployment(world)
    async with session(ws_url, world["viewer"].token) as second:
        async with session(ws_url, world["viewer"].token) as first:
            assert await subscribe_status(first, "a", did) == ("live", "PROGRESSING")
            assert await subscribe_status(second, "b", did) == ("live", "PROGRESSING")
            assert await subscribe_status(second, "c", did) == ("refused", ["RATE_LIMITED"])
            await send(first, {"id": "a", "type": "complete"})
            assert await eventually_live(second, did) == "PROGRESSING"
        # `first` closed: its connection held nothing any more; `second` holds two.
        async with session(ws_url, world["viewer"].token) as third:
            assert await subscribe_status(third, "t", did) == ("refused", ["RATE_LIMITED"])
        # The deployment ends: both of `second`'s subscriptions complete and free their slots.
        assert await finish_due_rollouts(0) == 1
        done = [await receive(second) for _ in range(4)]
        assert sorted(m["type"] for m in done) == ["complete", "complete", "next", "next"]
        async with session(ws_url, world["viewer"].token) as fourth:
            image = await world.register_image("dev")
            did2 = (await world.deploy(image, "shop/staging"))["id"]
            assert await eventually_live(fourth, did2) == "PROGRESSING"
            assert await eventually_live(fourth, did2) == "PROGRESSING"


OPERATION_IDS = itertools.count(1)


async def eventually_live(ws: ClientConnection, deployment_id: str) -> str:
    """Subscribes until the server takes it (bounded); the first status."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            outcome, value = await subscribe_status(ws, f"retry-{next(OPERATION_IDS)}", deployment_id)
            if outcome == "live":
                return value
            assert value == ["RATE_LIMITED"]
            await asyncio.sleep(0.05)


@limits(max_subscriptions_per_token=2)
async def test_third_live_subscription_on_one_connection_is_rate_limited(world, ws_url):
    did = await progressing_deployment(world)
    async with session(ws_url, world["viewer"].token) as ws:
        assert await subscribe_status(ws, "a", did) == ("live", "PROGRESSING")
        assert await subscribe_status(ws, "b", did) == ("live", "PROGRESSING")
        assert await subscribe_status(ws, "c", did) == ("refused", ["RATE_LIMITED"])
