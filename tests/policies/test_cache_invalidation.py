"""Cached authorization decisions are forgotten on every change, on every process (R5).

Two apps share one database, as two server processes do: A (the `world` fixture's) and B
(built here, with its own Authorizer and so its own decision cache). Each test first has
both processes decide (and cache) what a user may do, then changes it through one of them
- a grant, a revocation, a group's binding granted or revoked, a membership added or
removed, a deactivation - and the user's very next request is answered the new way on both.
"""

from __future__ import annotations

import asyncio

import pytest
from tortoise.transactions import in_transaction

from greenlight.models import PolicyVersion, User
from greenlight.policies import Action, Scope
from greenlight.policies.authorizer import changes_since

from ..conftest import Client, Cluster

CAN = 'query($a: Action!) { canI(action: $a, application: "shop", environment: "prod") { allowed } }'
PIPELINE_Q = "query($id: ID!) { pipeline(id: $id) { id } }"
GRANT = "mutation($i: RoleBindingInput!) { grantRole(input: $i) { id } }"
REVOKE = "mutation($id: ID!) { revokeRole(id: $id) { id } }"
BINDINGS = "query($u: ID!) { roleBindingConnection(userId: $u, first: 100) { edges { node { id } } } }"
CREATE_GROUP = "mutation($n: String!) { createGroup(name: $n) { id } }"
ADD_MEMBER = "mutation($g: ID!, $u: ID!) { addGroupMember(groupId: $g, userId: $u) { id } }"
REMOVE_MEMBER = "mutation($g: ID!, $u: ID!) { removeGroupMember(groupId: $g, userId: $u) { id } }"
GRANT_GROUP = "mutation($i: GroupRoleBindingInput!) { grantGroupRole(input: $i) { id } }"
REVOKE_GROUP = "mutation($id: ID!) { revokeGroupRole(id: $id) { id } }"
DEACTIVATE = "mutation($id: ID!) { deactivateUser(id: $id) { id } }"
REACTIVATE = "mutation($id: ID!) { reactivateUser(id: $id) { id } }"
EXPLAIN = """query($u: ID!) {
  explainAccess(userId: $u, action: DEPLOY, application: "shop", environment: "prod") { allowed }
}"""


SHOP_PROD = Scope("shop", "prod")


def pk(global_id: str) -> int:
    return int(global_id.split(":")[1])


async def may(client: Client, action: str) -> bool:
    return (await client.ok(CAN, {"a": action}))["canI"]["allowed"]


async def sees_shop_prod(cluster: Cluster, client: Client) -> bool:
    body = await client.execute(PIPELINE_Q, {"id": cluster.world.ids["shop/prod"]})
    if body.get("errors"):
        assert [e["extensions"]["code"] for e in body["errors"]] == ["NOT_FOUND"], body
        return False
    return body["data"]["pipeline"] is not None


async def decided_everywhere(cluster: Cluster, who: str, action: str, expected: bool) -> None:
    """Each process answers the user (twice: the second answer is the cached one), and the
    answer is in both caches."""
    for name, client in cluster.clients(who).items():
        for _ in range(2):
            assert await may(client, action) is expected, (name, who, action)
    assert cluster.cached(who, Action[action]) == {"A": expected, "B": expected}


async def answered_everywhere(cluster: Cluster, who: str, action: str, expected: bool) -> None:
    """The user's very next request on each process, B first, is answered `expected`."""
    for name in ("B", "A"):
        client = cluster.clients(who)[name]
        assert await may(client, action) is expected, (name, who, action)


async def make_group(cluster: Cluster, name: str) -> str:
    return (await cluster.world["admin"].ok(CREATE_GROUP, {"n": name}))["createGroup"]["id"]


async def grant_group(client: Client, group: str, role: str) -> str:
    data = await client.ok(
        GRANT_GROUP, {"i": {"groupId": group, "role": role, "application": "shop", "environment": "*"}}
    )
    return data["grantGroupRole"]["id"]


# --- grant and revoke ------------------------------------------------------------------------------


async def test_a_grant_through_a_is_enforced_on_the_next_request_on_b(cluster):
    await decided_everywhere(cluster, "nobody", "DEPLOY", False)
    assert not await sees_shop_prod(cluster, cluster.on_b("nobody"))

    user = cluster.world["nobody"].user_id
    await cluster.on_a("admin").ok(
        GRANT, {"i": {"userId": user, "role": "BUILD_AND_DEPLOY", "application": "shop", "environment": "*"}}
    )
    await answered_everywhere(cluster, "nobody", "DEPLOY", True)
    assert await sees_shop_prod(cluster, cluster.on_b("nobody"))
    assert await sees_shop_prod(cluster, cluster.on_a("nobody"))


async def test_a_revocation_through_b_is_enforced_on_the_next_request_on_a(cluster):
    await decided_everywhere(cluster, "dev", "DEPLOY", True)
    assert await sees_shop_prod(cluster, cluster.on_a("dev"))

    data = await cluster.on_b("admin").ok(BINDINGS, {"u": cluster.world["dev"].user_id})
    (binding,) = [edge["node"]["id"] for edge in data["roleBindingConnection"]["edges"]]
    await cluster.on_b("admin").ok(REVOKE, {"id": binding})
    for name in ("A", "B"):  # A first this time: the change was made through B
        assert await may(cluster.clients("dev")[name], "DEPLOY") is False, name
        assert not await sees_shop_prod(cluster, cluster.clients("dev")[name]), name


async def test_a_super_admin_grant_and_revocation_reach_the_other_process(cluster):
    """The cached super-admin check (Actor.is_super_admin, on every administrative call)."""
    user = cluster.world["viewer"].user_id
    assert await cluster.on_b("viewer").code(CREATE_GROUP, {"n": "early"}) == "FORBIDDEN"
    binding = (
        await cluster.on_a("admin").ok(
            GRANT, {"i": {"userId": user, "role": "SUPER_ADMIN", "application": "*", "environment": "*"}}
        )
    )["grantRole"]["id"]
    assert await cluster.on_b("viewer").ok(CREATE_GROUP, {"n": "granted"})
    await cluster.on_a("admin").ok(REVOKE, {"id": binding})
    assert await cluster.on_b("viewer").code(CREATE_GROUP, {"n": "revoked"}) == "FORBIDDEN"


# --- groups --------------------------------------------------------------------------------------


async def test_a_group_binding_granted_and_revoked_reaches_members_on_every_process(cluster):
    group = await make_group(cluster, "deployers")
    await cluster.on_a("admin").ok(ADD_MEMBER, {"g": group, "u": cluster.world["nobody"].user_id})
    await decided_everywhere(cluster, "nobody", "DEPLOY", False)

    binding = await grant_group(cluster.on_a("admin"), group, "BUILD_AND_DEPLOY")
    await answered_everywhere(cluster, "nobody", "DEPLOY", True)
    await decided_everywhere(cluster, "nobody", "DEPLOY", True)

    await cluster.on_a("admin").ok(REVOKE_GROUP, {"id": binding})
    await answered_everywhere(cluster, "nobody", "DEPLOY", False)
    assert not await sees_shop_prod(cluster, cluster.on_b("nobody"))


async def test_a_membership_added_and_removed_reaches_every_process(cluster):
    group = await make_group(cluster, "approvers")
    await grant_group(cluster.on_a("admin"), group, "IMAGE_APPROVER")
    await decided_everywhere(cluster, "nobody", "APPROVE", False)

    await cluster.on_b("admin").ok(ADD_MEMBER, {"g": group, "u": cluster.world["nobody"].user_id})
    await answered_everywhere(cluster, "nobody", "APPROVE", True)
    await decided_everywhere(cluster, "nobody", "APPROVE", True)

    await cluster.on_a("admin").ok(REMOVE_MEMBER, {"g": group, "u": cluster.world["nobody"].user_id})
    await answered_everywhere(cluster, "nobody", "APPROVE", False)
    assert not await sees_shop_prod(cluster, cluster.on_b("nobody"))


# --- deactivation ----------------------------------------------------------------------------------


async def test_a_deactivated_user_is_refused_on_the_next_request_on_every_process(cluster):
    dev = pk(cluster.world["dev"].user_id)
    await decided_everywhere(cluster, "dev", "DEPLOY", True)

    await cluster.on_a("admin").ok(DEACTIVATE, {"id": cluster.world["dev"].user_id})
    for name in ("B", "A"):
        client = cluster.clients("dev")[name]
        assert await client.code(CAN, {"a": "DEPLOY"}) == "UNAUTHENTICATED", name
        # decisions about the user made for others (R9, R24) are refused too
        explained = await cluster.clients("admin")[name].ok(EXPLAIN, {"u": cluster.world["dev"].user_id})
        assert explained["explainAccess"]["allowed"] is False, name
    for authorizer in (cluster.a, cluster.b):
        # the cached True was forgotten; explainAccess decided (and cached) again
        assert authorizer.cached(dev, Action.DEPLOY, SHOP_PROD) is False
        assert authorizer.may(dev, Action.DEPLOY, SHOP_PROD) is False
        assert dev not in authorizer.users_with(Action.DEPLOY, SHOP_PROD)

    await cluster.on_b("admin").ok(REACTIVATE, {"id": cluster.world["dev"].user_id})
    await answered_everywhere(cluster, "dev", "DEPLOY", True)


# --- what is forgotten -------------------------------------------------------------------------------


async def test_a_change_forgets_only_the_decisions_it_can_change(cluster):
    """A user's grant forgets that user's decisions; a group's, its members'; the others stay
    cached (and so cost no Casbin evaluation)."""
    group = await make_group(cluster, "viewers")
    await cluster.on_a("admin").ok(ADD_MEMBER, {"g": group, "u": cluster.world["approver1"].user_id})
    for who in ("nobody", "dev", "approver1"):
        await decided_everywhere(cluster, who, "VIEW", who != "nobody")

    await cluster.on_a("admin").ok(
        GRANT,
        {
            "i": {
                "userId": cluster.world["nobody"].user_id,
                "role": "VIEWER",
                "application": "shop",
                "environment": "prod",
            }
        },
    )
    await cluster.on_b("dev").ok("{ me { id } }")  # B's next request applies the change
    assert cluster.cached("nobody", Action.VIEW)["B"] is None
    assert cluster.cached("dev", Action.VIEW)["B"] is True
    assert cluster.cached("approver1", Action.VIEW)["B"] is True

    await grant_group(cluster.on_a("admin"), group, "VIEWER")
    await cluster.on_b("dev").ok("{ me { id } }")
    assert cluster.cached("approver1", Action.VIEW)["B"] is None
    assert cluster.cached("dev", Action.VIEW)["B"] is True


async def test_nothing_changed_nothing_is_forgotten(cluster):
    """Requests that change nothing leave every cached decision in place."""
    await decided_everywhere(cluster, "dev", "DEPLOY", True)
    version = cluster.b.version
    for _ in range(3):
        await cluster.on_b("viewer").ok("{ me { id } }")
    assert cluster.b.version == version
    assert cluster.cached("dev", Action.DEPLOY) == {"A": True, "B": True}


# --- the change log --------------------------------------------------------------------------------


async def test_changes_are_numbered_in_commit_order(database):
    """Writers hold the policy lock until they commit (the triggers that record a change
    take it, whoever writes), so a change committed later always has the larger id: no
    process can read past a change that commits after it looked (on PostgreSQL, where
    transactions run side by side)."""
    if database != "postgres":
        pytest.skip("SQLite runs one writing transaction at a time")
    one = await User.create(email="one@example.com", name="one")
    two = await User.create(email="two@example.com", name="two")
    holding = asyncio.Event()
    release = asyncio.Event()

    def grant(user: User) -> str:
        return (
            "INSERT INTO role_bindings (user_id, role, application, environment, created_at)"
            f" VALUES ({user.id}, 'viewer', '*', '*', CURRENT_TIMESTAMP)"
        )

    async def first() -> None:
        async with in_transaction() as connection:
            await connection.execute_query(grant(one))
            holding.set()
            await release.wait()

    async def second() -> None:
        async with in_transaction() as connection:
            await connection.execute_query(grant(two))

    task1 = asyncio.create_task(first())
    await holding.wait()
    task2 = asyncio.create_task(second())
    await asyncio.sleep(0.3)
    assert not task2.done()  # waiting for the first to commit
    latest, changes = await changes_since(0)
    assert changes == [] and latest == 0  # nothing committed yet
    release.set()
    await asyncio.gather(task1, task2)
    rows = await PolicyVersion.all().order_by("id").values_list("user_id", flat=True)
    assert rows == [one.id, two.id]
