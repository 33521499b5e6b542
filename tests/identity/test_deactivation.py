"""Deactivation and API token listing.

deactivateUser makes every API token and JWT of the user fail at once, removes them from
eligible approvers (R9), keeps their past actions in the audit log and their pending requests
cancellable by super-admins (R14); reactivateUser restores access with the roles kept. apiTokens
lists tokens (never the secret): a user's own, any for super-admins; owners revoke their own.
"""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest

from greenlight.app import create_app
from greenlight.config import Settings
from greenlight.models import ApiToken, ApprovalRequest, AuditEvent, RoleBinding, User

from ..conftest import Client

ISSUER = "https://idp.example.com/"
AUDIENCE = "greenlight"
SECRET = "a-shared-secret-long-enough-for-hs256-0123456789"
ME = "{ me { email isActive } }"
DEACTIVATE = "mutation($id: ID!) { deactivateUser(id: $id) { id email isActive } }"
REACTIVATE = "mutation($id: ID!) { reactivateUser(id: $id) { id email isActive } }"
ISSUE = """mutation($i: IssueApiTokenInput!) {
  issueApiToken(input: $i) { token apiToken { id name user { email } createdAt expiresAt } }
}"""
REVOKE_TOKEN = "mutation($id: ID!) { revokeApiToken(id: $id) { id revokedAt user { email } } }"
TOKENS = """query($u: ID, $first: Int) { apiTokens(userId: $u, first: $first) {
  totalCount pageInfo { hasNextPage }
  edges { node { id name user { email } createdAt expiresAt lastUsedAt revokedAt } }
} }"""
ELIGIBLE = "query($p: ID!, $i: ID!) { eligibleApprovers(pipelineId: $p, imageId: $i) { email } }"
CANCEL = "mutation($id: ID!) { cancelApprovalRequest(id: $id) { id state } }"
EXPIRE = "mutation($id: ID!) { expireApproval(id: $id) { id state } }"
APPROVE = "mutation($id: ID!) { approveRequest(id: $id) { id state } }"


@pytest.fixture
def settings(database_url) -> Settings:
    """This module's app also accepts HS256 JWTs, so deactivation can be checked against both."""
    return Settings(
        database_url=database_url,
        background_jobs=False,
        rollout_seconds=90,
        mutations_per_minute=0,  # as in conftest: no mutation rate limit in tests
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        jwt_secret=SECRET,
    )


def pk(global_id: str) -> int:
    return int(global_id.split(":")[1])


def jwt_for(email: str) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "email": email, "iat": now, "exp": now + 300}
    return jwt.encode(claims, SECRET, algorithm="HS256")


async def issue(world, who: str, name: str = "extra", ttl: int | None = None) -> tuple[str, str]:
    """A new API token for `who`, issued by admin: (secret, id)."""
    data = await world["admin"].ok(
        ISSUE, {"i": {"userId": world[who].user_id, "name": name, "ttlHours": ttl}}
    )
    return data["issueApiToken"]["token"], data["issueApiToken"]["apiToken"]["id"]


async def eligible(world, who: str, image: str, pipeline: str = "shop/prod") -> set[str]:
    data = await world[who].ok(ELIGIBLE, {"p": world.ids[pipeline], "i": image})
    return {u["email"] for u in data["eligibleApprovers"]}


# --- deactivation ----------------------------------------------------------------------------------


async def test_deactivation_fails_every_token_and_jwt_at_once(world):
    """All of the user's API tokens and JWTs are UNAUTHENTICATED on the next request; the
    user is marked inactive; other users are unaffected."""
    approver = world["approver1"]
    second, _ = await issue(world, "approver1", "laptop", ttl=48)
    credentials = {
        "world token": approver,
        "second token": Client(world.http, second),
        "jwt": Client(world.http, jwt_for("approver1@example.com")),
    }
    for client in credentials.values():
        assert (await client.ok(ME))["me"] == {"email": "approver1@example.com", "isActive": True}

    data = await world["admin"].ok(DEACTIVATE, {"id": approver.user_id})
    assert data["deactivateUser"] == {
        "id": approver.user_id,
        "email": "approver1@example.com",
        "isActive": False,
    }
    for name, client in credentials.items():
        error = await client.fails(ME)
        assert error["extensions"]["code"] == "UNAUTHENTICATED", name
        mutation = "mutation($id: ID!) { approveRequest(id: $id) { id } }"
        assert await client.code(mutation, {"id": "ApprovalRequest:1"}) == "UNAUTHENTICATED", name
    assert (await User.get(id=pk(approver.user_id))).is_active is False
    assert await AuditEvent.filter(action="deactivate_user", object_id=pk(approver.user_id)).count() == 1
    # others carry on, and admins see the user as inactive
    assert (await world["approver2"].ok(ME))["me"]["email"] == "approver2@example.com"
    users = (await world["admin"].ok("{ users { email isActive } }"))["users"]
    assert {u["email"]: u["isActive"] for u in users}["approver1@example.com"] is False
    assert sum(not u["isActive"] for u in users) == 1


async def test_deactivated_user_is_refused_even_with_auto_provisioning(world, settings, unchanged):
    """A deactivated user's JWT is not a reason to provision anyone: still UNAUTHENTICATED."""
    await world["admin"].ok(DEACTIVATE, {"id": world["dev"].user_id})
    app = create_app(dataclasses.replace(settings, jwt_auto_provision=True), manage_database=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://b.test") as http, unchanged():
        assert await Client(http, jwt_for("dev@example.com")).code(ME) == "UNAUTHENTICATED"
    assert await User.filter(email="dev@example.com").count() == 1


async def test_r9_deactivated_users_leave_eligible_approvers(world, unchanged):
    """R8, R9: a deactivated image-approver, super-admin or group member is no longer eligible,
    and naming them is BAD_USER_INPUT with nothing created."""
    admin = world["admin"]
    group = (await admin.ok('mutation { createGroup(name: "prod") { id } }'))["createGroup"]["id"]
    await admin.ok(
        "mutation($g: ID!) { grantGroupRole(input: {groupId: $g, role: IMAGE_APPROVER}) { id } }",
        {"g": group},
    )
    await admin.ok(
        "mutation($g: ID!, $u: ID!) { addGroupMember(groupId: $g, userId: $u) { id } }",
        {"g": group, "u": world["nobody"].user_id},
    )
    image = await world.register_image("dev")
    before = await eligible(world, "dev2", image)
    gone = {"approver1@example.com", "admin2@example.com", "nobody@example.com"}
    assert gone <= before
    for who in ("approver1", "admin2", "nobody"):
        await admin.ok(DEACTIVATE, {"id": world[who].user_id})
    assert await eligible(world, "dev2", image) == before - gone
    for who in ("approver1", "admin2", "nobody"):
        variables = {
            "i": {"pipelineId": world.ids["shop/prod"], "imageId": image, "approverIds": [world[who].user_id]}
        }
        async with unchanged():
            code = await world["dev2"].code(
                "mutation($i: RequestApprovalInput!) { requestApproval(input: $i) { id } }", variables
            )
            assert code == "BAD_USER_INPUT", who


async def test_deactivated_users_past_actions_stay(world):
    """The audit log keeps a deactivated user's actions (as actor), and their approvals still
    count on the requests they approved."""
    image = await world.register_image("dev")
    request = await world.request_approval(image, "shop/prod", who="dev2")
    await world.approve(request, "approver1")
    for who in ("approver1", "dev2"):
        await world["admin"].ok(DEACTIVATE, {"id": world[who].user_id})

    query = """query($a: ID!) { auditEvents(filter: {actorId: $a}, first: 100) {
      edges { node { action objectId actor { email isActive } } } } }"""
    events = (await world["admin"].ok(query, {"a": world["approver1"].user_id}))["auditEvents"]["edges"]
    assert {
        "action": "approve",
        "objectId": request,
        "actor": {"email": "approver1@example.com", "isActive": False},
    } in [e["node"] for e in events]
    events = (await world["admin"].ok(query, {"a": world["dev2"].user_id}))["auditEvents"]["edges"]
    assert "request_approval" in {e["node"]["action"] for e in events}
    assert await AuditEvent.filter(actor_id=pk(world["approver1"].user_id)).count() >= 1

    data = await world["admin"].ok(
        "query($id: ID!) { approvalRequest(id: $id) { state requestedBy { email } approvals { user { email } } } }",
        {"id": request},
    )
    assert data["approvalRequest"] == {
        "state": "PENDING",
        "requestedBy": {"email": "dev2@example.com"},
        "approvals": [{"user": {"email": "approver1@example.com"}}],
    }
    # one more approval completes it: the deactivated user's approval still counts (R12)
    assert (await world.approve(request, "approver2"))["state"] == "APPROVED"


async def test_r14_deactivated_users_requests_stay_cancellable_by_super_admins(world):
    """R14, R15: a deactivated requester's live requests stay live; a super-admin cancels the
    PENDING one and lets the APPROVED one expire; other users still may not."""
    pending = await world.request_approval(await world.register_image("dev"), "shop/prod", who="dev2")
    _, approved = await world.approved_image("shop/prod")  # requested by dev2
    await world["admin"].ok(DEACTIVATE, {"id": world["dev2"].user_id})
    states = dict(await ApprovalRequest.filter(id__in=[pk(pending), pk(approved)]).values_list("id", "state"))
    assert states == {pk(pending): "PENDING", pk(approved): "APPROVED"}

    assert await world["dev"].code(CANCEL, {"id": pending}) == "FORBIDDEN"
    assert (await world["admin2"].ok(CANCEL, {"id": pending}))["cancelApprovalRequest"][
        "state"
    ] == "CANCELLED"
    assert (await world["admin"].ok(EXPIRE, {"id": approved}))["expireApproval"]["state"] == "EXPIRED"
    states = dict(await ApprovalRequest.filter(id__in=[pk(pending), pk(approved)]).values_list("id", "state"))
    assert states == {pk(pending): "CANCELLED", pk(approved): "EXPIRED"}


async def test_reactivation_restores_access_with_roles_kept(world):
    """reactivateUser: the same tokens and JWTs work again, the role bindings and group
    memberships are those of before, and the user approves and is eligible again."""
    admin, approver = world["admin"], world["approver1"]
    group = (await admin.ok('mutation { createGroup(name: "billing") { id } }'))["createGroup"]["id"]
    await admin.ok(
        """mutation($g: ID!) { grantGroupRole(input: {groupId: $g, role: VIEWER, application: "billing"}) {
             id } }""",
        {"g": group},
    )
    await admin.ok(
        "mutation($g: ID!, $u: ID!) { addGroupMember(groupId: $g, userId: $u) { id } }",
        {"g": group, "u": approver.user_id},
    )
    bindings_q = "{ me { roleBindings { id role application environment } } applications { name } }"
    before = await approver.ok(bindings_q)
    assert before["applications"] == [{"name": "billing"}, {"name": "shop"}]
    stored = sorted(await RoleBinding.filter(user_id=pk(approver.user_id)).values_list("id", "role"))

    await admin.ok(DEACTIVATE, {"id": approver.user_id})
    assert await approver.code(ME) == "UNAUTHENTICATED"
    assert sorted(await RoleBinding.filter(user_id=pk(approver.user_id)).values_list("id", "role")) == stored

    data = await admin.ok(REACTIVATE, {"id": approver.user_id})
    assert data["reactivateUser"]["isActive"] is True
    assert await approver.ok(bindings_q) == before
    assert (await Client(world.http, jwt_for("approver1@example.com")).ok(ME))["me"]["isActive"] is True
    image = await world.register_image("dev")
    assert "approver1@example.com" in await eligible(world, "dev2", image)
    request = await world.request_approval(image, "shop/prod", who="dev2", approvers=["approver1"])
    assert (await world.approve(request, "approver1"))["state"] == "PENDING"
    assert await AuditEvent.filter(action="reactivate_user", object_id=pk(approver.user_id)).count() == 1


async def test_deactivation_invalid_states(world, unchanged):
    """INVALID_STATE: deactivating yourself, an already deactivated user, reactivating an active
    one; NOT_FOUND for no such user, BAD_USER_INPUT for a wrong-kind id. Nothing changes."""
    admin = world["admin"]
    await admin.ok(DEACTIVATE, {"id": world["dev"].user_id})
    async with unchanged():
        assert await admin.code(DEACTIVATE, {"id": admin.user_id}) == "INVALID_STATE"
        assert await admin.code(DEACTIVATE, {"id": world["dev"].user_id}) == "INVALID_STATE"
        assert await admin.code(REACTIVATE, {"id": world["dev2"].user_id}) == "INVALID_STATE"
        assert await admin.code(DEACTIVATE, {"id": "User:999999"}) == "NOT_FOUND"
        assert await admin.code(REACTIVATE, {"id": "User:999999"}) == "NOT_FOUND"
        assert await admin.code(DEACTIVATE, {"id": world.ids["shop"]}) == "BAD_USER_INPUT"
    assert (await admin.ok(ME))["me"]["isActive"] is True


async def test_the_last_super_admin_cannot_be_deactivated(world, unchanged):
    """Someone must administer: with admin2 deactivated, admin is the last active user holding
    super-admin itself. A super-admin through a group (whose group role any super-admin may
    revoke, unguarded) does not count, so deactivating admin is INVALID_STATE; admin2, with admin
    still there, could be deactivated."""
    admin = world["admin"]
    group = (await admin.ok('mutation { createGroup(name: "ops") { id } }'))["createGroup"]["id"]
    await admin.ok(
        "mutation($g: ID!) { grantGroupRole(input: {groupId: $g, role: SUPER_ADMIN}) { id } }", {"g": group}
    )
    await admin.ok(
        "mutation($g: ID!, $u: ID!) { addGroupMember(groupId: $g, userId: $u) { id } }",
        {"g": group, "u": world["viewer"].user_id},
    )
    ops = world["viewer"]
    await ops.ok(DEACTIVATE, {"id": world["admin2"].user_id})
    async with unchanged():
        assert await ops.code(DEACTIVATE, {"id": admin.user_id}) == "INVALID_STATE"
        assert await admin.code(DEACTIVATE, {"id": admin.user_id}) == "INVALID_STATE"
    assert (await admin.ok(ME))["me"]["isActive"] is True


async def test_a_deactivated_super_admins_role_can_be_revoked(world):
    """R2: with admin2 deactivated, revoking admin2's super-admin binding leaves admin, an active
    super-admin: it is allowed."""
    admin = world["admin"]
    await admin.ok(DEACTIVATE, {"id": world["admin2"].user_id})
    binding = await RoleBinding.get(user_id=pk(world["admin2"].user_id), role="super-admin")
    await admin.ok("mutation($id: ID!) { revokeRole(id: $id) { id } }", {"id": f"RoleBinding:{binding.id}"})
    assert not await RoleBinding.exists(id=binding.id)


async def test_r2_non_admins_cannot_deactivate_or_reactivate(world, unchanged):
    """R2: deactivateUser and reactivateUser are FORBIDDEN to everyone but super-admins."""
    await world["admin"].ok(DEACTIVATE, {"id": world["approver3"].user_id})
    async with unchanged():
        for who in ("dev", "approver1", "viewer", "nobody", "prod_approver"):
            assert await world[who].code(DEACTIVATE, {"id": world["approver2"].user_id}) == "FORBIDDEN", who
            assert await world[who].code(REACTIVATE, {"id": world["approver3"].user_id}) == "FORBIDDEN", who
        assert await world["dev"].code(DEACTIVATE, {"id": world["dev"].user_id}) == "FORBIDDEN"


# --- API tokens ------------------------------------------------------------------------------------


async def test_users_list_only_their_own_tokens_and_never_a_secret(world, unchanged):
    """apiTokens: a user sees exactly their own tokens (name, owner, created, expires); asking
    for another user's is FORBIDDEN. No field carries the secret, and neither the secrets nor
    the stored hashes appear in any answer."""
    secrets = [world["dev"].token]
    for name, ttl in (("ci", 24), ("laptop", None)):
        secrets.append((await issue(world, "dev", name, ttl))[0])
    data = await world["dev"].ok(TOKENS, {})
    nodes = [e["node"] for e in data["apiTokens"]["edges"]]
    assert data["apiTokens"]["totalCount"] == 3
    assert {n["name"] for n in nodes} == {"tests", "ci", "laptop"}
    assert {n["user"]["email"] for n in nodes} == {"dev@example.com"}
    expiries = {n["name"]: n["expiresAt"] for n in nodes}
    assert expiries["tests"] is None and expiries["laptop"] is None
    ci_expiry = datetime.fromisoformat(expiries["ci"])
    assert timedelta(hours=23) < ci_expiry - datetime.now(UTC) <= timedelta(hours=24)
    own = await world["dev"].ok(TOKENS, {"u": world["dev"].user_id})
    assert own["apiTokens"]["totalCount"] == 3
    assert (await world["nobody"].ok(TOKENS, {}))["apiTokens"]["totalCount"] == 1
    async with unchanged():
        assert await world["dev"].code(TOKENS, {"u": world["approver1"].user_id}) == "FORBIDDEN"

    fields = await world["dev"].ok('{ __type(name: "ApiToken") { fields { name } } }')
    names = {f["name"] for f in fields["__type"]["fields"]}
    assert names == {
        "id",
        "name",
        "user",
        "createdAt",
        "expiresAt",
        "lastUsedAt",
        "revokedAt",
        # a token's limits (scoped tokens)
        "actions",
        "applications",
        "environments",
    }
    hashes = await ApiToken.all().values_list("token_hash", flat=True)
    for client in (world["dev"], world["admin"]):
        text = json.dumps(await client.ok(TOKENS, {"first": 100}))
        for secret in secrets:
            assert secret not in text
        for stored in hashes:
            assert stored not in text


async def test_super_admins_see_every_token_or_one_users(world):
    """apiTokens for super-admins: every token, or one user's by userId; paginated."""
    await issue(world, "approver1", "second")
    data = await world["admin"].ok(TOKENS, {"first": 100})
    total = await ApiToken.all().count()
    assert data["apiTokens"]["totalCount"] == total == len(data["apiTokens"]["edges"])
    assert {e["node"]["user"]["email"] for e in data["apiTokens"]["edges"]} == set(
        await User.all().values_list("email", flat=True)
    )
    data = await world["admin"].ok(TOKENS, {"u": world["approver1"].user_id})
    assert data["apiTokens"]["totalCount"] == 2
    assert {e["node"]["user"]["email"] for e in data["apiTokens"]["edges"]} == {"approver1@example.com"}
    data = await world["admin"].ok(TOKENS, {"first": 5})
    assert len(data["apiTokens"]["edges"]) == 5 and data["apiTokens"]["pageInfo"]["hasNextPage"] is True
    # a super-admin through a group too
    group = (await world["admin"].ok('mutation { createGroup(name: "ops") { id } }'))["createGroup"]["id"]
    await world["admin"].ok(
        "mutation($g: ID!) { grantGroupRole(input: {groupId: $g, role: SUPER_ADMIN}) { id } }", {"g": group}
    )
    await world["admin"].ok(
        "mutation($g: ID!, $u: ID!) { addGroupMember(groupId: $g, userId: $u) { id } }",
        {"g": group, "u": world["nobody"].user_id},
    )
    assert (await world["nobody"].ok(TOKENS, {"first": 100}))["apiTokens"]["totalCount"] == total


async def test_owner_revokes_own_token_but_not_others(world, unchanged):
    """revokeApiToken by the token's owner works (that token is refused at once, the others not);
    another user's token is NOT_FOUND (R1: invisible, exactly like a token that does not exist)
    unless super-admin; revoking twice is INVALID_STATE."""
    secret, token_id = await issue(world, "dev", "ci")
    data = await world["dev"].ok(REVOKE_TOKEN, {"id": token_id})
    assert data["revokeApiToken"]["user"] == {"email": "dev@example.com"}
    assert data["revokeApiToken"]["revokedAt"] is not None
    assert await Client(world.http, secret).code(ME) == "UNAUTHENTICATED"
    assert (await world["dev"].ok(ME))["me"]["email"] == "dev@example.com"
    listed = {
        e["node"]["id"]: e["node"]["revokedAt"]
        for e in (await world["dev"].ok(TOKENS, {}))["apiTokens"]["edges"]
    }
    assert listed[token_id] is not None and sum(v is None for v in listed.values()) == 1
    assert (await ApiToken.get(id=pk(token_id))).revoked_at is not None

    other_secret, other_id = await issue(world, "approver1", "ci")
    async with unchanged():
        assert await world["dev"].code(REVOKE_TOKEN, {"id": other_id}) == "NOT_FOUND"
        assert await world["nobody"].code(REVOKE_TOKEN, {"id": other_id}) == "NOT_FOUND"
        assert await world["dev"].code(REVOKE_TOKEN, {"id": token_id}) == "INVALID_STATE"
        assert await world["dev"].code(REVOKE_TOKEN, {"id": "ApiToken:999999"}) == "NOT_FOUND"
    assert (await Client(world.http, other_secret).ok(ME))["me"]["email"] == "approver1@example.com"
    await world["admin"].ok(REVOKE_TOKEN, {"id": other_id})
    assert await Client(world.http, other_secret).code(ME) == "UNAUTHENTICATED"


async def test_last_used_at_is_set_after_use(world):
    """lastUsedAt is null until the token authenticates a request, then about the time of it."""
    secret, token_id = await issue(world, "viewer", "fresh")

    def node(data):
        return next(e["node"] for e in data["apiTokens"]["edges"] if e["node"]["id"] == token_id)

    assert node(await world["viewer"].ok(TOKENS, {}))["lastUsedAt"] is None
    assert (await ApiToken.get(id=pk(token_id))).last_used_at is None
    started = datetime.now(UTC) - timedelta(seconds=5)
    await Client(world.http, secret).ok(ME)
    used = node(await world["viewer"].ok(TOKENS, {}))["lastUsedAt"]
    assert used is not None
    assert started <= datetime.fromisoformat(used) <= datetime.now(UTC) + timedelta(seconds=5)
    assert (await ApiToken.get(id=pk(token_id))).last_used_at is not None
