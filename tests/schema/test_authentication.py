"""Authentication: API tokens, the first super-admin, and user creation (api.graphql, R2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from tortoise import connections

from greenlight import db
from greenlight.app import create_app
from greenlight.clock import now
from greenlight.config import Settings
from greenlight.errors import GreenlightError
from greenlight.models import ApiToken, Role, RoleBinding, User
from greenlight.workflow.identity import bootstrap

from ..conftest import Client

ISSUE_M = """mutation($i: IssueApiTokenInput!) {
  issueApiToken(input: $i) { token apiToken { id name expiresAt createdAt user { id email } } }
}"""
REVOKE_TOKEN_M = "mutation($id: ID!) { revokeApiToken(id: $id) { id name user { id } } }"
CREATE_USER_M = "mutation($i: CreateUserInput!) { createUser(input: $i) { id email name } }"
ME_Q = "{ me { id email isSuperAdmin } }"
GREENLIGHT = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "greenlight"
if not GREENLIGHT.exists():  # a virtualenv elsewhere: the script beside this interpreter
    GREENLIGHT = Path(sys.executable).parent / "greenlight"


def operations(world, image: str, request: str, deployment: str) -> list[tuple[str, str, dict]]:
    """Every operation of the contract, with arguments an authorised caller could use."""
    digest = "sha256:" + "ab" * 32
    pipeline = world.ids["shop/prod"]
    return [
        ("me", ME_Q, {}),
        ("applications", "{ applications { id name } }", {}),
        ("environments", "{ environments { id name } }", {}),
        ("pipeline", "query($id: ID!) { pipeline(id: $id) { id } }", {"id": pipeline}),
        ("pipelineFor", '{ pipelineFor(application: "shop", environment: "prod") { id } }', {}),
        (
            "images",
            "query($a: ID!) { images(applicationId: $a) { totalCount } }",
            {"a": world.ids["shop"]},
        ),
        ("approvalRequests", "{ approvalRequests { totalCount } }", {}),
        ("approvalRequest", "query($id: ID!) { approvalRequest(id: $id) { id } }", {"id": request}),
        (
            "eligibleApprovers",
            "query($p: ID!, $i: ID!) { eligibleApprovers(pipelineId: $p, imageId: $i) { id } }",
            {"p": pipeline, "i": image},
        ),
        ("deployment", "query($id: ID!) { deployment(id: $id) { id } }", {"id": deployment}),
        ("users", "{ users { id } }", {}),
        (
            "registerImage",
            "mutation($i: RegisterImageInput!) { registerImage(input: $i) { id } }",
            {"i": {"application": "shop", "repository": "acme/shop", "tag": "v1", "digest": digest}},
        ),
        (
            "requestApproval",
            "mutation($i: RequestApprovalInput!) { requestApproval(input: $i) { id } }",
            {"i": {"pipelineId": pipeline, "imageId": image}},
        ),
        ("approveRequest", "mutation($id: ID!) { approveRequest(id: $id) { id } }", {"id": request}),
        (
            "rejectRequest",
            'mutation($id: ID!) { rejectRequest(id: $id, reason: "no") { id } }',
            {"id": request},
        ),
        (
            "cancelApprovalRequest",
            "mutation($id: ID!) { cancelApprovalRequest(id: $id) { id } }",
            {"id": request},
        ),
        ("expireApproval", "mutation($id: ID!) { expireApproval(id: $id) { id } }", {"id": request}),
        (
            "deployImage",
            "mutation($i: DeployImageInput!) { deployImage(input: $i) { id } }",
            {"i": {"pipelineId": world.ids["shop/staging"], "imageId": image}},
        ),
        ("createUser", CREATE_USER_M, {"i": {"email": "eve@example.com", "name": "eve"}}),
        ("issueApiToken", ISSUE_M, {"i": {"userId": world["admin"].user_id, "name": "eve"}}),
        ("revokeApiToken", REVOKE_TOKEN_M, {"id": "ApiToken:1"}),
        ("createApplication", 'mutation { createApplication(name: "evil") { id } }', {}),
        ("createEnvironment", 'mutation { createEnvironment(name: "evil") { id } }', {}),
        (
            "createPipeline",
            "mutation($i: CreatePipelineInput!) { createPipeline(input: $i) { id } }",
            {"i": {"applicationId": world.ids["billing"], "environmentId": world.ids["staging"]}},
        ),
        (
            "updateApprovalPolicy",
            """mutation($p: ID!) {
                 updateApprovalPolicy(pipelineId: $p, input: {requiredApprovals: 0}) { id } }""",
            {"p": pipeline},
        ),
        (
            "grantRole",
            "mutation($i: RoleBindingInput!) { grantRole(input: $i) { id } }",
            {"i": {"userId": world["nobody"].user_id, "role": "SUPER_ADMIN"}},
        ),
        ("revokeRole", "mutation($id: ID!) { revokeRole(id: $id) { id } }", {"id": "RoleBinding:1"}),
    ]


async def objects(world) -> tuple[str, str, str]:
    """An image, a pending request on shop/prod and a deployment on shop/staging."""
    image = await world.register_image("dev")
    deployment = (await world.deploy(image, "shop/staging"))["id"]
    image = await world.register_image("dev")
    request = await world.request_approval(image, "shop/prod", who="dev2")
    return image, request, deployment


async def unauthenticated_everywhere(world, ops, headers: dict) -> list[str]:
    """The operations that did not answer UNAUTHENTICATED (with no data) for these headers."""
    anonymous = Client(world.http, None)
    problems = []
    for name, query, variables in ops:
        body = await anonymous.execute(query, variables, **headers)
        codes = [e.get("extensions", {}).get("code") for e in body.get("errors") or []]
        if not codes or set(codes) != {"UNAUTHENTICATED"}:
            problems.append(f"{headers} {name}: {codes or body}")
        elif body.get("data"):
            problems.append(f"{headers} {name}: data leaked {body['data']}")
    return problems


async def issue(world, who: str, ttl_hours: int | None = None) -> dict:
    data = await world["admin"].ok(
        ISSUE_M, {"i": {"userId": world[who].user_id, "name": "ci", "ttlHours": ttl_hours}}
    )
    return data["issueApiToken"]


def pk(global_id: str) -> int:
    return int(global_id.split(":")[1])


async def test_missing_malformed_and_unknown_credentials_are_unauthenticated(world, unchanged):
    """api.graphql: no header, a malformed one, or an unknown token: every query and mutation
    fails with UNAUTHENTICATED and changes nothing."""
    ops = operations(world, *await objects(world))
    admin_token = world["admin"].token
    cases = [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": admin_token},  # no scheme
        {"Authorization": f"Token {admin_token}"},  # wrong scheme, valid secret
        {"Authorization": f"Basic {admin_token}"},
        {"Authorization": f"Bearer {admin_token}x"},  # unknown token
        {"Authorization": f"Bearer {admin_token[:-1]}"},
        {"Authorization": "Bearer glt_" + "A" * 43},
    ]
    problems = []
    async with unchanged():
        for headers in cases:
            problems += await unauthenticated_everywhere(world, ops, headers)
    assert not problems, "\n".join(problems)
    # the admin's own token, sent properly, works for the same operations
    assert (await world["admin"].ok(ME_Q))["me"]["email"] == "admin@example.com"


async def test_revoked_token_is_unauthenticated(world, unchanged):
    """api.graphql: a token revoked with revokeApiToken stops working on the next request;
    the user's other tokens keep working; revoking it twice is INVALID_STATE."""
    ops = operations(world, *await objects(world))
    issued = await issue(world, "dev")
    token = Client(world.http, issued["token"])
    assert (await token.ok(ME_Q))["me"]["email"] == "dev@example.com"
    data = await world["admin"].ok(REVOKE_TOKEN_M, {"id": issued["apiToken"]["id"]})
    assert data["revokeApiToken"] == {
        "id": issued["apiToken"]["id"],
        "name": "ci",
        "user": {"id": world["dev"].user_id},
    }
    assert (await ApiToken.get(id=pk(issued["apiToken"]["id"]))).revoked_at is not None
    async with unchanged():
        problems = await unauthenticated_everywhere(
            world, ops, {"Authorization": f"Bearer {issued['token']}"}
        )
        assert not problems, "\n".join(problems)
        error = await world["admin"].fails(REVOKE_TOKEN_M, {"id": issued["apiToken"]["id"]})
        assert error["extensions"]["code"] == "INVALID_STATE"
    assert (await world["dev"].ok(ME_Q))["me"]["email"] == "dev@example.com"


async def test_expired_token_is_unauthenticated(world, unchanged):
    """api.graphql: a token past its expiresAt fails every operation with UNAUTHENTICATED."""
    ops = operations(world, *await objects(world))
    issued = await issue(world, "dev", ttl_hours=1)
    stored = await ApiToken.get(id=pk(issued["apiToken"]["id"]))
    assert timedelta(minutes=59) <= stored.expires_at - stored.created_at <= timedelta(minutes=61)
    assert issued["apiToken"]["expiresAt"] is not None
    token = Client(world.http, issued["token"])
    assert (await token.ok(ME_Q))["me"]["email"] == "dev@example.com"
    await ApiToken.filter(id=stored.id).update(expires_at=now() - timedelta(seconds=1))
    async with unchanged():
        problems = await unauthenticated_everywhere(
            world, ops, {"Authorization": f"Bearer {issued['token']}"}
        )
    assert not problems, "\n".join(problems)
    # a token without ttlHours never expires
    issued = await issue(world, "dev")
    assert issued["apiToken"]["expiresAt"] is None
    assert (await ApiToken.get(id=pk(issued["apiToken"]["id"]))).expires_at is None


async def test_issued_token_works_and_is_stored_only_as_a_hash(world):
    """R2: issueApiToken returns a secret that authenticates as that user; the database holds
    only a hash of it (not in api_tokens, nor in the audit log)."""
    issued = await issue(world, "viewer")
    secret = issued["token"]
    assert issued["apiToken"]["user"] == {"id": world["viewer"].user_id, "email": "viewer@example.com"}
    assert issued["apiToken"]["name"] == "ci"
    me = (await Client(world.http, secret).ok(ME_Q))["me"]
    assert me == {"id": world["viewer"].user_id, "email": "viewer@example.com", "isSuperAdmin": False}
    conn = connections.get("default")
    rows = await conn.execute_query_dict("SELECT * FROM api_tokens")
    assert len(rows) == await ApiToken.all().count() >= 2
    for table in ("api_tokens", "audit_events"):
        for row in await conn.execute_query_dict(f"SELECT * FROM {table}"):
            for column, value in row.items():
                text = str(value)
                assert secret not in text, f"{table}.{column} holds the secret"
                assert secret[4:] not in text, f"{table}.{column} holds the secret"
    # two tokens for the same user are distinct and both work
    again = await issue(world, "viewer")
    assert again["token"] != secret
    assert (await Client(world.http, again["token"]).ok(ME_Q))["me"]["email"] == "viewer@example.com"
    assert (await Client(world.http, secret).ok(ME_Q))["me"]["email"] == "viewer@example.com"


async def test_token_ttl_out_of_range_is_bad_user_input(world, unchanged):
    """R2 inputs: ttlHours must be a positive number of hours of sane size; nothing is created."""
    async with unchanged():
        for ttl in (0, -1, 1_000_000, 2**31 - 1):
            variables = {"i": {"userId": world["dev"].user_id, "name": "ci", "ttlHours": ttl}}
            assert await world["admin"].code(ISSUE_M, variables) == "BAD_USER_INPUT", ttl
        variables = {"i": {"userId": world["dev"].user_id, "name": " "}}
        assert await world["admin"].code(ISSUE_M, variables) == "BAD_USER_INPUT"
        variables = {"i": {"userId": "User:99999", "name": "ci"}}
        assert await world["admin"].code(ISSUE_M, variables) == "NOT_FOUND"
    issued = await issue(world, "dev", ttl_hours=1)
    assert issued["apiToken"]["expiresAt"] is not None


async def test_create_user_duplicate_email_is_conflict(world, unchanged):
    """R2: createUser with an email in use is CONFLICT naming the user (emails ignore case)."""
    async with unchanged():
        for email in ("dev@example.com", "DEV@Example.com"):
            error = await world["admin"].fails(CREATE_USER_M, {"i": {"email": email, "name": "again"}})
            assert error["extensions"]["code"] == "CONFLICT", email
            assert error["extensions"]["existingId"] == world["dev"].user_id, email
    data = await world["admin"].ok(CREATE_USER_M, {"i": {"email": "Zed@Example.com", "name": "Zed"}})
    assert data["createUser"]["email"] == "zed@example.com"
    assert await User.filter(email="zed@example.com").count() == 1


async def test_create_user_malformed_email_is_bad_user_input(world, unchanged):
    """R2 inputs: an email that is not one, or an empty name, is BAD_USER_INPUT; nothing stored."""
    async with unchanged():
        for email in ("", "not-an-email", "a@b", "two@@example.com", "sp ace@example.com", "@example.com"):
            code = await world["admin"].code(CREATE_USER_M, {"i": {"email": email, "name": "x"}})
            assert code == "BAD_USER_INPUT", email
        code = await world["admin"].code(CREATE_USER_M, {"i": {"email": "ok@example.com", "name": ""}})
        assert code == "BAD_USER_INPUT"


# --- bootstrap --------------------------------------------------------------------------------


async def test_bootstrap_makes_then_reuses_the_first_super_admin(http, unchanged):
    """RULES 'Running it': bootstrap makes the first super-admin, reuses it with a new token,
    and refuses any other email once a super-admin exists."""
    user, token = await bootstrap("root@example.com")
    bindings = await RoleBinding.filter(user_id=user.id).values_list("role", "application", "environment")
    assert [(Role(r), a, e) for r, a, e in bindings] == [(Role.SUPER_ADMIN, "*", "*")]
    me = (await Client(http, token).ok(ME_Q))["me"]
    assert me == {"id": f"User:{user.id}", "email": "root@example.com", "isSuperAdmin": True}

    again, token2 = await bootstrap("root@example.com")
    assert again.id == user.id
    assert token2 != token
    assert await User.all().count() == 1
    assert await RoleBinding.all().count() == 1
    assert await ApiToken.filter(user_id=user.id).count() == 2
    for secret in (token, token2):
        assert (await Client(http, secret).ok(ME_Q))["me"]["isSuperAdmin"] is True

    # someone else, or a user who exists but is no super-admin, is refused
    admin = Client(http, token2)
    await admin.ok(CREATE_USER_M, {"i": {"email": "joe@example.com", "name": "joe"}})
    async with unchanged():
        for email in ("mallory@example.com", "joe@example.com", "not-an-email"):
            with pytest.raises(GreenlightError):
                await bootstrap(email)
    assert not await User.filter(email="mallory@example.com").exists()
    assert await RoleBinding.filter(role=Role.SUPER_ADMIN).count() == 1


def run_cli(database_url: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENLIGHT_")}
    env["GREENLIGHT_DATABASE_URL"] = database_url
    return subprocess.run(
        [str(GREENLIGHT), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


async def test_bootstrap_cli_prints_a_working_token(tmp_path):
    """RULES 'Running it': `greenlight bootstrap EMAIL` exits 0 with a token as the last line of
    stdout (a second run reuses the admin); another email exits 1."""
    url = f"sqlite://{tmp_path / 'cli.sqlite3'}"
    first = run_cli(url, tmp_path, "bootstrap", "ops@example.com")
    assert first.returncode == 0, first.stderr
    second = run_cli(url, tmp_path, "bootstrap", "ops@example.com")
    assert second.returncode == 0, second.stderr
    other = run_cli(url, tmp_path, "bootstrap", "intruder@example.com")
    assert other.returncode == 1, (other.stdout, other.stderr)
    assert other.stderr.strip()

    tokens = [run.stdout.strip().splitlines()[-1].strip() for run in (first, second)]
    assert tokens[0] != tokens[1]
    assert all(token and " " not in token for token in tokens)
    await db.connect(url)
    try:
        app = create_app(Settings(database_url=url, background_jobs=False), manage_database=False)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://greenlight.test") as http:
            for token in tokens:
                me = (await Client(http, token).ok(ME_Q))["me"]
                assert me["email"] == "ops@example.com"
                assert me["isSuperAdmin"] is True
            body = await Client(http, None).execute(ME_Q)
            assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        assert await User.all().values_list("email", flat=True) == ["ops@example.com"]
        assert await ApiToken.all().count() == 2
        assert await RoleBinding.all().count() == 1
    finally:
        await db.close()


# --- before authentication, say nothing ------------------------------------------------------------

# Documents that would draw validation's answers: suggestions of field and type names, the
# schema's names in "Cannot query field ... on type ...", introspection.
PROBES = [
    "{ pipelin { id } }",
    "{ me { emal } }",
    "query($i: ApprovalPolicyInpt) { me { id } }",
    "{ __schema { types { name } } }",
    '{ __type(name: "Pipeline") { fields { name } } }',
    "mutation { approveReques(id: 1) { id } }",
]
SCHEMA_NAMES = (
    "Did you mean",
    "pipeline",
    "Pipeline",
    "Query",
    "Mutation",
    "email",
    "ApprovalPolicy",
    "approveRequest",
)


@pytest.mark.parametrize("introspection", [True, False], ids=["introspection on", "introspection off"])
async def test_anonymous_callers_get_unauthenticated_and_no_schema_names(world, settings, introspection):
    """Without credentials, or with bad ones, every document (valid or not) is answered with
    a single UNAUTHENTICATED: no "Did you mean ...?", no field or type names of the schema,
    whether introspection is on or off. Authenticated callers still get validation's answers."""
    import dataclasses

    app = create_app(dataclasses.replace(settings, introspection=introspection), manage_database=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        for token in (None, "not-a-real-token"):
            for probe in PROBES:
                body = await Client(http, token).execute(probe)
                assert [e["extensions"]["code"] for e in body["errors"]] == ["UNAUTHENTICATED"], (probe, body)
                assert body.get("data") is None
                for name in SCHEMA_NAMES:
                    assert name not in json.dumps(body), (probe, name, body)
        validated = await Client(http, world["viewer"].token).execute("{ pipelin { id } }")
        assert validated["errors"][0]["extensions"]["code"] != "UNAUTHENTICATED"
        assert "pipelin" in validated["errors"][0]["message"]
