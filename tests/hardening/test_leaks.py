"""Hardening: no leaks, and faults answered cleanly.

- An unexpected exception reaches the client only as INTERNAL with extensions.requestId
  (the X-Request-ID), never its detail nor a traceback; the detail is in the log
  "greenlight.errors". A failed mutation changes nothing.
- R1: NOT_FOUND reads the same whether the object does not exist or the caller cannot
  see it, for every way of naming an object (queries and mutations).
- The database unreachable: operations answer UNAVAILABLE (not INTERNAL), /readyz 503;
  both recover by themselves when it answers again, without a restart.
"""

from __future__ import annotations

import errno
import json
import logging

import asyncpg
import pytest
from tortoise.exceptions import DBConnectionError, OperationalError

import greenlight.workflow.identity
from greenlight import db
from greenlight.models import Approval, ApprovalRequest, ApprovalState, Deployment, Image
from greenlight.workflow import audit, reads

SECRET = "secret detail"
PIPELINE_Q = "query($id: ID!) { pipeline(id: $id) { id application { name } } }"
APPROVE_M = "mutation($id: ID!) { approveRequest(id: $id) { id state } }"
MISSING = 999_999


def number(gid: str) -> int:
    return int(gid.split(":")[1])


def missing(gid: str) -> str:
    """An id of the same kind that names nothing."""
    return f"{gid.split(':')[0]}:{MISSING}"


async def post(world, who: str, query: str, variables: dict | None = None, **headers):
    headers.setdefault("Authorization", f"Bearer {world[who].token}")
    response = await world.http.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
    )
    assert response.status_code == 200, response.text
    return response


def assert_no_detail(text: str) -> None:
    for leak in (SECRET, "Traceback", "RuntimeError", 'File "', ".py", "line "):
        assert leak not in text, f"{leak!r} leaked in {text}"


# --- INTERNAL -----------------------------------------------------------------------------------------


async def test_unexpected_exception_in_a_query_is_internal_with_the_request_id(world, monkeypatch, caplog):
    async def broken(actor, pipeline_id):
        raise RuntimeError(f"{SECRET}: password=hunter2 at db.internal:5432")

    monkeypatch.setattr(reads, "pipeline", broken)
    caplog.set_level(logging.INFO)
    response = await post(
        world, "dev", PIPELINE_Q, {"id": world.ids["shop/prod"]}, **{"X-Request-ID": "leak-check-42"}
    )
    body = response.json()
    assert body["data"] == {"pipeline": None}
    [error] = body["errors"]
    assert error["extensions"] == {"code": "INTERNAL", "requestId": "leak-check-42"}
    assert response.headers["X-Request-ID"] == "leak-check-42"
    assert_no_detail(response.text)
    assert "hunter2" not in response.text

    records = [r for r in caplog.records if r.name == "greenlight.errors"]
    assert records, "the detail must be logged"
    logged = "\n".join(
        r.getMessage() + (logging.Formatter().formatException(r.exc_info) if r.exc_info else "")
        for r in records
    )
    assert SECRET in logged
    assert "leak-check-42" in logged
    assert "RuntimeError" in logged


async def test_internal_without_a_request_id_gets_one_that_matches_the_header(world, monkeypatch):
    async def broken(actor, pipeline_id):
        raise RuntimeError(SECRET)

    monkeypatch.setattr(reads, "pipeline", broken)
    response = await post(world, "dev", PIPELINE_Q, {"id": world.ids["shop/prod"]})
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "INTERNAL"
    assert error["extensions"]["requestId"]
    assert error["extensions"]["requestId"] == response.headers["X-Request-ID"]
    assert_no_detail(response.text)


async def test_unexpected_exception_in_a_mutation_is_internal_and_changes_nothing(
    world, monkeypatch, unchanged, caplog
):
    """The exception strikes inside the approval's transaction, after its writes (at the
    audit event): the client sees INTERNAL, and the approval is rolled back."""
    request = await world.request_approval(await world.register_image("dev"), "shop/prod", who="dev2")

    async def broken(*args, **kwargs):
        raise RuntimeError(SECRET)

    monkeypatch.setattr(audit, "record", broken)
    caplog.set_level(logging.INFO)
    async with unchanged():
        response = await post(world, "approver1", APPROVE_M, {"id": request}, **{"X-Request-ID": "approve-1"})
    body = response.json()
    assert body.get("data") is None
    [error] = body["errors"]
    assert error["extensions"] == {"code": "INTERNAL", "requestId": "approve-1"}
    assert_no_detail(response.text)
    assert await Approval.filter(request_id=number(request)).count() == 0
    assert (await ApprovalRequest.get(id=number(request))).state == ApprovalState.PENDING
    assert any(
        r.name == "greenlight.errors" and r.exc_info and SECRET in str(r.exc_info[1]) for r in caplog.records
    )


# --- NOT_FOUND: invisible and missing read the same (R1) ----------------------------------------------


@pytest.fixture
async def billing(world) -> dict[str, str]:
    """Billing objects none of the shop users can see: an image with a PENDING request,
    and a deployment (its request CONSUMED)."""
    deployed_image, consumed = await world.approved_image("billing/prod")
    deployment = (await world.deploy(deployed_image, "billing/prod", who="billing_dev"))["id"]
    image = await world.register_image("admin", "billing")
    pending = await world.request_approval(image, "billing/prod", who="billing_dev")
    return {"image": image, "pending": pending, "consumed": consumed, "deployment": deployment}


async def same_answer(world, who: str, query: str, invisible: dict, absent: dict) -> dict:
    """Runs `query` with the invisible object's variables and the missing one's; the two
    answers must be identical, a NOT_FOUND. Returns the error."""
    seen = [(await post(world, who, query, variables)).json() for variables in (invisible, absent)]
    assert seen[0] == seen[1], f"invisible {seen[0]} != missing {seen[1]}"
    assert [e["extensions"]["code"] for e in seen[0]["errors"]] == ["NOT_FOUND"], seen[0]
    return seen[0]["errors"][0]


QUERIES = {
    "pipeline": PIPELINE_Q,
    "approvalRequest": "query($id: ID!) { approvalRequest(id: $id) { id state } }",
    "deployment": "query($id: ID!) { deployment(id: $id) { id status } }",
    "images": "query($id: ID!) { images(applicationId: $id) { totalCount edges { node { id } } } }",
    "eligibleApprovers": "query($p: ID!, $i: ID!) { eligibleApprovers(pipelineId: $p, imageId: $i) { id } }",
    "pipelineFor": "query($a: String!, $e: String!) { pipelineFor(application: $a, environment: $e) { id } }",
}


def case(label: str, who: str, query: str, invisible, absent=None):
    return pytest.param(who, query, invisible, absent, id=label)


@pytest.mark.parametrize(
    "who,query,invisible,absent",
    [
        case("pipeline-of-other-application", "dev", "pipeline", lambda w, b: {"id": w.ids["billing/prod"]}),
        case("pipeline-without-any-role", "nobody", "pipeline", lambda w, b: {"id": w.ids["shop/prod"]}),
        # prod_approver holds a role on shop/prod only: shop/staging is invisible to them.
        case(
            "pipeline-of-other-environment",
            "prod_approver",
            "pipeline",
            lambda w, b: {"id": w.ids["shop/staging"]},
        ),
        case("pending-request", "dev", "approvalRequest", lambda w, b: {"id": b["pending"]}),
        case("consumed-request", "approver1", "approvalRequest", lambda w, b: {"id": b["consumed"]}),
        case("deployment", "dev", "deployment", lambda w, b: {"id": b["deployment"]}),
        case("images-of-other-application", "viewer", "images", lambda w, b: {"id": w.ids["billing"]}),
        case("images-without-any-role", "nobody", "images", lambda w, b: {"id": w.ids["shop"]}),
        case(
            "pipeline-for-other-application",
            "dev",
            "pipelineFor",
            lambda w, b: {"a": "billing", "e": "prod"},
            lambda w, b: {"a": "payroll", "e": "prod"},
        ),
        case(
            "pipeline-for-other-environment",
            "prod_approver",
            "pipelineFor",
            lambda w, b: {"a": "shop", "e": "staging"},
            lambda w, b: {"a": "shop", "e": "qa"},
        ),
    ],
)
async def test_r1_not_found_query_reads_the_same_for_invisible_and_missing(
    world, billing, who, query, invisible, absent
):
    variables = invisible(world, billing)
    other = absent(world, billing) if absent else {k: missing(v) for k, v in variables.items()}
    error = await same_answer(world, who, QUERIES[query], variables, other)
    for leak in ("billing", "staging", "prod", str(MISSING)):
        assert leak not in error["message"]


async def test_r1_eligible_approvers_of_an_invisible_pipeline_or_image_read_as_missing(world, billing):
    shop_image = await world.register_image("dev")
    query = QUERIES["eligibleApprovers"]
    await same_answer(
        world,
        "dev",
        query,
        {"p": world.ids["billing/prod"], "i": shop_image},
        {"p": missing(world.ids["billing/prod"]), "i": shop_image},
    )
    await same_answer(
        world,
        "dev",
        query,
        {"p": world.ids["shop/prod"], "i": billing["image"]},
        {"p": world.ids["shop/prod"], "i": missing(billing["image"])},
    )


DEPLOY_M = "mutation($p: ID!, $i: ID!) { deployImage(input: {pipelineId: $p, imageId: $i}) { id } }"
REQUEST_M = "mutation($p: ID!, $i: ID!) { requestApproval(input: {pipelineId: $p, imageId: $i}) { id } }"
REQUEST_MUTATIONS = {
    "approveRequest": APPROVE_M,
    "rejectRequest": 'mutation($id: ID!) { rejectRequest(id: $id, reason: "no") { id } }',
    "cancelApprovalRequest": "mutation($id: ID!) { cancelApprovalRequest(id: $id) { id } }",
    "expireApproval": "mutation($id: ID!) { expireApproval(id: $id) { id } }",
}


@pytest.mark.parametrize("mutation", list(REQUEST_MUTATIONS))
@pytest.mark.parametrize("state", ["pending", "consumed"])
async def test_r1_acting_on_an_invisible_request_reads_as_missing_and_changes_nothing(
    world, billing, unchanged, mutation, state
):
    """approver1 (an approver of shop) acts on billing's requests: NOT_FOUND, whatever the
    request's state (never INVALID_STATE, which would tell it exists)."""
    request = billing[state]
    async with unchanged():
        await same_answer(
            world, "approver1", REQUEST_MUTATIONS[mutation], {"id": request}, {"id": missing(request)}
        )


async def test_r1_deploying_on_an_invisible_pipeline_reads_as_missing_and_changes_nothing(
    world, billing, unchanged
):
    shop_image = await world.register_image("dev")
    async with unchanged():
        await same_answer(
            world,
            "dev",
            DEPLOY_M,
            {"p": world.ids["billing/prod"], "i": shop_image},
            {"p": missing(world.ids["billing/prod"]), "i": shop_image},
        )
    assert await Deployment.filter(image_id=number(shop_image)).count() == 0


async def test_r1_deploying_an_invisible_image_reads_as_missing_and_changes_nothing(
    world, billing, unchanged
):
    """On shop/staging (no approval needed) an image of billing is NOT_FOUND for dev, as a
    missing one is; not the BAD_USER_INPUT a visible image of another application gets."""
    async with unchanged():
        await same_answer(
            world,
            "dev",
            DEPLOY_M,
            {"p": world.ids["shop/staging"], "i": billing["image"]},
            {"p": world.ids["shop/staging"], "i": missing(billing["image"])},
        )


async def test_r1_deploying_an_invisible_environments_pipeline_reads_as_missing(world, unchanged):
    """A user whose role is on shop/prod only: shop/staging reads as missing."""
    await world["admin"].ok(
        "mutation($i: RoleBindingInput!) { grantRole(input: $i) { id } }",
        {
            "i": {
                "userId": world["nobody"].user_id,
                "role": "BUILD_AND_DEPLOY",
                "application": "shop",
                "environment": "prod",
            }
        },
    )
    image = await world.register_image("nobody")
    async with unchanged():
        await same_answer(
            world,
            "nobody",
            DEPLOY_M,
            {"p": world.ids["shop/staging"], "i": image},
            {"p": missing(world.ids["shop/staging"]), "i": image},
        )


async def test_r1_requesting_approval_on_invisible_objects_reads_as_missing_and_changes_nothing(
    world, billing, unchanged
):
    shop_image = await world.register_image("dev")
    async with unchanged():
        await same_answer(
            world,
            "dev",
            REQUEST_M,
            {"p": world.ids["billing/prod"], "i": shop_image},
            {"p": missing(world.ids["billing/prod"]), "i": shop_image},
        )
        await same_answer(
            world,
            "dev",
            REQUEST_M,
            {"p": world.ids["shop/prod"], "i": billing["image"]},
            {"p": world.ids["shop/prod"], "i": missing(billing["image"])},
        )


# --- UNAVAILABLE --------------------------------------------------------------------------------------


def unreachable_errors():
    return [
        pytest.param(
            lambda: asyncpg.exceptions.ConnectionDoesNotExistError(
                "connection was closed in the middle of operation"
            ),
            id="asyncpg-connection-does-not-exist",
        ),
        pytest.param(
            lambda: asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
            id="asyncpg-cannot-connect-now",
        ),
        pytest.param(
            lambda: asyncpg.exceptions.AdminShutdownError(
                "terminating connection due to administrator command"
            ),
            id="asyncpg-admin-shutdown",
        ),
        pytest.param(
            lambda: asyncpg.exceptions.InterfaceError("connection is closed"), id="asyncpg-interface-closed"
        ),
        pytest.param(lambda: ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), id="refused"),
        pytest.param(lambda: ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), id="reset"),
        pytest.param(lambda: DBConnectionError("Can't establish connection to database"), id="tortoise"),
        pytest.param(
            lambda: chained(
                OperationalError("wrapped"),
                asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
            ),
            id="wrapped-by-tortoise",
        ),
    ]


def chained(outer: BaseException, cause: BaseException) -> BaseException:
    outer.__cause__ = cause
    return outer


@pytest.mark.parametrize("make_error", unreachable_errors())
async def test_database_unreachable_in_a_resolver_is_unavailable_then_recovers(
    world, monkeypatch, make_error
):
    real = reads.pipeline

    async def unreachable(actor, pipeline_id):
        raise make_error()

    monkeypatch.setattr(reads, "pipeline", unreachable)
    response = await post(world, "dev", PIPELINE_Q, {"id": world.ids["shop/prod"]})
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "UNAVAILABLE"
    for leak in ("asyncpg", "Traceback", "closed", "refused", "reset", "administrator", "starting up"):
        assert leak not in response.text.lower(), response.text

    monkeypatch.setattr(reads, "pipeline", real)
    data = (await post(world, "dev", PIPELINE_Q, {"id": world.ids["shop/prod"]})).json()
    assert data == {"data": {"pipeline": {"id": world.ids["shop/prod"], "application": {"name": "shop"}}}}


@pytest.mark.parametrize(
    "query,variables",
    [
        pytest.param("{ me { email } }", {}, id="query"),
        pytest.param(
            "mutation($i: RegisterImageInput!) { registerImage(input: $i) { id } }",
            {
                "i": {
                    "application": "shop",
                    "repository": "registry.example.com/acme/shop",
                    "tag": "unreachable",
                    "digest": "sha256:" + "c" * 64,
                }
            },
            id="mutation",
        ),
    ],
)
async def test_database_unreachable_while_authenticating_is_unavailable_then_recovers(
    world, monkeypatch, unchanged, query, variables
):
    """The credentials cannot be checked: UNAVAILABLE (not UNAUTHENTICATED, not INTERNAL),
    nothing runs; once the database answers, the same server answers normally."""

    async def unreachable(authorization):
        raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")

    # credentials(): the user and the API token behind the header, as every request reads them
    monkeypatch.setattr(greenlight.workflow.identity, "credentials", unreachable)
    async with unchanged():
        response = await post(world, "dev", query, variables)
    body = response.json()
    assert body.get("data") is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["UNAVAILABLE"]
    assert "Connection refused" not in response.text
    assert await Image.filter(tag="unreachable").count() == 0

    monkeypatch.undo()
    again = await post(world, "dev", query, variables)
    assert not again.json().get("errors"), again.text
    if "registerImage" in query:
        assert await Image.filter(tag="unreachable").count() == 1


async def test_a_bug_is_still_internal_not_unavailable(world, monkeypatch):
    """Only errors of reaching the database are UNAVAILABLE: a refused statement (here a
    tortoise OperationalError of a syntax error) stays INTERNAL."""

    async def broken(actor, pipeline_id):
        raise chained(
            OperationalError("syntax error at or near"), asyncpg.exceptions.PostgresSyntaxError("x")
        )

    monkeypatch.setattr(reads, "pipeline", broken)
    response = await post(world, "dev", PIPELINE_Q, {"id": world.ids["shop/prod"]})
    assert [e["extensions"]["code"] for e in response.json()["errors"]] == ["INTERNAL"]
    assert "syntax" not in response.text


async def test_readyz_is_503_while_the_database_does_not_answer_and_200_after(world, monkeypatch):
    assert (await world.http.get("/readyz")).status_code == 200

    async def no_answer() -> bool:
        return False

    monkeypatch.setattr(db, "ping", no_answer)
    down = await world.http.get("/readyz")
    assert down.status_code == 503
    assert (await world.http.get("/healthz")).status_code == 200  # the process still runs

    monkeypatch.undo()
    up = await world.http.get("/readyz")
    assert up.status_code == 200
    assert json.loads(up.text)


async def test_readyz_is_503_when_the_ping_query_fails(world, monkeypatch):
    """db.ping itself: the query failing (the connection refused) makes /readyz 503."""
    from tortoise import connections

    connection = connections.get("default")

    async def refused(*args, **kwargs):
        raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")

    monkeypatch.setattr(connection, "execute_query", refused)
    assert await db.ping() is False
    assert (await world.http.get("/readyz")).status_code == 503
    monkeypatch.undo()
    assert await db.ping() is True
    assert (await world.http.get("/readyz")).status_code == 200


async def test_dropped_postgres_connections_are_never_internal_and_recover(world, backend, database_url):
    """PostgreSQL ends every connection of the server's pool (as on a failover or an
    administrator's pg_terminate_backend): what follows answers with data or UNAVAILABLE,
    never INTERNAL, and the server works again by itself."""
    if backend != "postgres":
        pytest.skip("PostgreSQL only: SQLite has no server to drop connections")
    from ..conftest import _pg_server_url

    me = "{ me { email } }"
    assert (await post(world, "dev", me)).json() == {"data": {"me": {"email": "dev@example.com"}}}
    admin = await asyncpg.connect(_pg_server_url("postgres").replace("postgres://", "postgresql://", 1))
    try:
        ended = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            database_url.rsplit("/", 1)[1],
        )
    finally:
        await admin.close()
    assert ended >= 1
    answers = []
    for n in range(3):
        answers.append((await post(world, "dev", me)).json())
        answers.append(
            (
                await post(
                    world,
                    "admin",
                    "mutation($n: String!) { createApplication(name: $n) { id } }",
                    {"n": f"app{n}"},
                )
            ).json()
        )
    for body in answers:
        codes = [e["extensions"]["code"] for e in body.get("errors") or []]
        assert codes in ([], ["UNAVAILABLE"]), body
    assert answers[-2] == {"data": {"me": {"email": "dev@example.com"}}}
    assert not answers[-1].get("errors")
    assert (await world.http.get("/readyz")).status_code == 200


async def test_a_connection_dropped_while_idle_reads_as_unavailable(backend, database_url):
    """The server's FATAL "terminating connection" can reach an idle pooled connection a
    moment before the socket's end. asyncpg then fails the next statement on it with an
    InternalClientError ("another operation is in progress"), not a connection error: it is
    still the database going away, answered UNAVAILABLE, never INTERNAL."""
    if backend != "postgres":
        pytest.skip("PostgreSQL only")
    connection = await asyncpg.connect(database_url.replace("postgres://", "postgresql://", 1))
    try:
        fields = b"SFATAL\0C57P01\0Mterminating connection due to administrator command\0\0"
        connection._protocol.data_received(b"E" + (len(fields) + 4).to_bytes(4, "big") + fields)
        with pytest.raises(asyncpg.exceptions.InternalClientError) as raised:
            await connection.fetchval("SELECT 1")
    finally:
        connection.terminate()
    assert db.is_unavailable(raised.value)
    assert not db.is_unavailable(asyncpg.exceptions.InternalClientError("a bug of ours"))


async def test_r1_an_images_state_on_an_invisible_pipeline_reads_as_on_a_missing_one(world):
    """prod_approver sees shop's images (a role on shop/prod) but not shop/staging: an image's
    approvalState on shop/staging, where it has a PENDING request, and the requests listed
    for that pipeline, read as they do for a pipeline that does not exist."""
    staging = world.ids["shop/staging"]
    await world["admin"].ok(
        "mutation($p: ID!) { updateApprovalPolicy(pipelineId: $p, input: {requiredApprovals: 1}) { id } }",
        {"p": staging},
    )
    image = await world.register_image("dev")
    await world.request_approval(image, "shop/staging", who="dev2")
    query = """query($a: ID!, $p: ID!) {
      images(applicationId: $a) { edges { node { id approvalState(pipelineId: $p) } } }
      approvalRequests(filter: {pipelineId: $p}) { totalCount edges { node { id } } }
    }"""
    assert (await world["dev"].ok(query, {"a": world.ids["shop"], "p": staging}))["images"]["edges"][0][
        "node"
    ] == {"id": image, "approvalState": "PENDING"}
    seen = [
        await world["prod_approver"].execute(query, {"a": world.ids["shop"], "p": p})
        for p in (staging, missing(staging))
    ]
    assert seen[0] == seen[1]
    assert "PENDING" not in json.dumps(seen[0])
