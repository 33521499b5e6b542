"""Permission groups: members inherit a group's roles through Casbin (R1, R4, R5, R9),
only super-admins manage groups (R2), and users, groups, members and bindings are paginated."""

from __future__ import annotations

import httpx

from greenlight.app import create_app
from greenlight.models import Approval, Group, GroupMember, Image, RoleBinding, User

from ..conftest import Client

CREATE_GROUP = "mutation($n: String!) { createGroup(name: $n) { id name } }"
ADD_MEMBER = """mutation($g: ID!, $u: ID!) {
  addGroupMember(groupId: $g, userId: $u) { id members(first: 100) { totalCount edges { node { email } } } }
}"""
REMOVE_MEMBER = """mutation($g: ID!, $u: ID!) {
  removeGroupMember(groupId: $g, userId: $u) { id members(first: 100) { totalCount edges { node { email } } } }
}"""
GRANT_GROUP = """mutation($i: GroupRoleBindingInput!) {
  grantGroupRole(input: $i) { id role application environment group { id name } }
}"""
REVOKE_GROUP = "mutation($id: ID!) { revokeGroupRole(id: $id) { id role } }"
GROUP_Q = """query($id: ID!) { group(id: $id) {
  id name members(first: 100) { totalCount edges { node { email } } }
  roleBindings { id role application environment }
} }"""
PIPELINE_Q = "query($id: ID!) { pipeline(id: $id) { id } }"
APPROVE_M = "mutation($id: ID!) { approveRequest(id: $id) { id state approvals { user { email } } } }"
ELIGIBLE_Q = "query($p: ID!, $i: ID!) { eligibleApprovers(pipelineId: $p, imageId: $i) { email } }"
REGISTER_M = "mutation($i: RegisterImageInput!) { registerImage(input: $i) { id builtBy { email } } }"
REQUEST_M = "mutation($i: RequestApprovalInput!) { requestApproval(input: $i) { id } }"


def pk(global_id: str) -> int:
    return int(global_id.split(":")[1])


async def make_group(world, name: str, role: str | None = None, app: str = "*", env: str = "*") -> dict:
    """A group made by admin, optionally with one role; returns {"id", "binding"}."""
    group = (await world["admin"].ok(CREATE_GROUP, {"n": name}))["createGroup"]
    out = {"id": group["id"], "binding": None}
    if role:
        data = await world["admin"].ok(
            GRANT_GROUP, {"i": {"groupId": group["id"], "role": role, "application": app, "environment": env}}
        )
        out["binding"] = data["grantGroupRole"]["id"]
    return out


async def add(world, group_id: str, who: str) -> dict:
    return (await world["admin"].ok(ADD_MEMBER, {"g": group_id, "u": world[who].user_id}))["addGroupMember"]


async def remove(world, group_id: str, who: str) -> dict:
    data = await world["admin"].ok(REMOVE_MEMBER, {"g": group_id, "u": world[who].user_id})
    return data["removeGroupMember"]


async def visible(client: Client, pipeline_id: str) -> bool:
    """R1: a pipeline is visible, or null / NOT_FOUND."""
    body = await client.execute(PIPELINE_Q, {"id": pipeline_id})
    if body.get("errors"):
        assert [e["extensions"]["code"] for e in body["errors"]] == ["NOT_FOUND"], body
        return False
    return body["data"]["pipeline"] is not None


async def eligible(world, who: str, pipeline: str, image: str) -> set[str]:
    data = await world[who].ok(ELIGIBLE_Q, {"p": world.ids[pipeline], "i": image})
    return {u["email"] for u in data["eligibleApprovers"]}


def image_input(n: int | str, application: str = "shop") -> dict:
    return {
        "application": application,
        "repository": f"registry.example.com/acme/{application}",
        "tag": f"group-{n}",
        "digest": "sha256:" + f"{n:0>64}"[-64:],
    }


# --- inheritance end to end ------------------------------------------------------------------------


async def test_r5_r9_member_inherits_group_role_approves_and_loses_it_on_removal(world):
    """R1, R4, R5, R9: a user with no role, added to a group holding image-approver on shop/prod,
    sees shop/prod (only), is an eligible approver, can be named, and approves; once removed, the
    very next request is refused (NOT_FOUND: the scope is invisible again) and they leave
    eligibleApprovers."""
    group = await make_group(world, "prod-approvers", "IMAGE_APPROVER", "shop", "prod")
    nobody = world["nobody"]
    assert not await visible(nobody, world.ids["shop/prod"])

    added = await add(world, group["id"], "nobody")
    assert added["members"]["edges"] == [{"node": {"email": "nobody@example.com"}}]
    assert await GroupMember.filter(group_id=pk(group["id"]), user_id=pk(nobody.user_id)).count() == 1
    # the role comes through the group: no direct binding appears
    assert await RoleBinding.filter(user_id=pk(nobody.user_id)).count() == 0

    # R1: exactly the group's scope is visible
    assert await visible(nobody, world.ids["shop/prod"])
    assert not await visible(nobody, world.ids["shop/staging"])
    assert not await visible(nobody, world.ids["billing/prod"])
    data = await nobody.ok(
        "{ applications { name pipelines { environment { name } } } environments { name } }"
    )
    assert data == {
        "applications": [{"name": "shop", "pipelines": [{"environment": {"name": "prod"}}]}],
        "environments": [{"name": "prod"}],
    }

    # R9: eligible, and nameable (R8)
    image = await world.register_image("dev")
    assert "nobody@example.com" in await eligible(world, "dev2", "shop/prod", image)
    request = await world.request_approval(image, "shop/prod", who="dev2", approvers=["nobody"])

    # R4: the member approves; with approver1 the request is APPROVED (R12)
    data = await nobody.ok(APPROVE_M, {"id": request})
    assert data["approveRequest"]["state"] == "PENDING"
    assert data["approveRequest"]["approvals"] == [{"user": {"email": "nobody@example.com"}}]
    assert (await world.approve(request, "approver1"))["state"] == "APPROVED"
    assert await Approval.filter(request_id=pk(request), user_id=pk(nobody.user_id)).count() == 1

    # removal: refused on the very next request
    image2 = await world.register_image("dev")
    request2 = await world.request_approval(image2, "shop/prod", who="dev2")
    removed = await remove(world, group["id"], "nobody")
    assert removed["members"] == {"totalCount": 0, "edges": []}
    assert await nobody.code(APPROVE_M, {"id": request2}) == "NOT_FOUND"
    assert await Approval.filter(request_id=pk(request2)).count() == 0
    assert not await visible(nobody, world.ids["shop/prod"])
    assert (await nobody.ok("{ applications { name } }"))["applications"] == []
    # ... and gone from eligible approvers; naming them is BAD_USER_INPUT (R8)
    image3 = await world.register_image("dev")
    assert "nobody@example.com" not in await eligible(world, "dev2", "shop/prod", image3)
    code = await world["dev2"].code(
        REQUEST_M,
        {"i": {"pipelineId": world.ids["shop/prod"], "imageId": image3, "approverIds": [nobody.user_id]}},
    )
    assert code == "BAD_USER_INPUT"
    assert await GroupMember.filter(group_id=pk(group["id"])).count() == 0


async def test_r1_member_who_still_sees_the_scope_is_forbidden_after_removal(world):
    """R1, R4, R5: viewer (viewer on shop/*) approves through a group; once removed it still sees
    the request, so approving is FORBIDDEN (not NOT_FOUND), and nothing is recorded."""
    group = await make_group(world, "shop-approvers", "IMAGE_APPROVER", "shop", "*")
    await add(world, group["id"], "viewer")
    image = await world.register_image("dev")
    request = await world.request_approval(image, "shop/prod", who="dev2")
    assert "viewer@example.com" in await eligible(world, "dev2", "shop/prod", image)
    assert (await world.approve(request, "viewer"))["state"] == "PENDING"

    await remove(world, group["id"], "viewer")
    request2 = await world.request_approval(await world.register_image("dev"), "shop/prod", who="dev2")
    assert await world["viewer"].code(APPROVE_M, {"id": request2}) == "FORBIDDEN"
    assert await Approval.filter(request_id=pk(request2)).count() == 0
    assert await visible(world["viewer"], world.ids["shop/prod"])  # the direct role is untouched
    assert "viewer@example.com" not in await eligible(world, "dev2", "shop/prod", image)


async def test_r5_revoking_the_groups_role_applies_on_the_next_request(world):
    """R3, R5: members of a group with build-and-deploy on shop/* register images; once the group's
    role is revoked, the next registerImage is refused, the membership itself stays."""
    group = await make_group(world, "shop-builders", "BUILD_AND_DEPLOY", "shop", "*")
    await add(world, group["id"], "nobody")
    await add(world, group["id"], "billing_dev")
    data = await world["nobody"].ok(REGISTER_M, {"i": image_input(1)})
    assert data["registerImage"]["builtBy"]["email"] == "nobody@example.com"
    data = await world["billing_dev"].ok(REGISTER_M, {"i": image_input(2)})
    assert data["registerImage"]["builtBy"]["email"] == "billing_dev@example.com"

    data = await world["admin"].ok(REVOKE_GROUP, {"id": group["binding"]})
    assert data["revokeGroupRole"] == {"id": group["binding"], "role": "BUILD_AND_DEPLOY"}
    assert await world["nobody"].code(REGISTER_M, {"i": image_input(3)}) == "NOT_FOUND"
    assert await world["billing_dev"].code(REGISTER_M, {"i": image_input(4)}) == "NOT_FOUND"
    # billing_dev keeps its own role
    await world["billing_dev"].ok(REGISTER_M, {"i": image_input(5, "billing")})
    assert await Image.filter(application__name="shop").count() == 2
    assert await GroupMember.filter(group_id=pk(group["id"])).count() == 2
    assert await RoleBinding.filter(group_id=pk(group["id"])).count() == 0
    data = await world["admin"].ok(GROUP_Q, {"id": group["id"]})
    assert data["group"]["roleBindings"] == []
    assert data["group"]["members"]["totalCount"] == 2
    # revoking it again: it is gone
    assert await world["admin"].code(REVOKE_GROUP, {"id": group["binding"]}) == "NOT_FOUND"


async def test_r5_group_role_and_membership_are_both_needed_and_independent_of_order(world):
    """R5: a member added before the group holds any role gets it the moment the role is
    granted; a second group on another scope adds to (not replaces) what a user sees."""
    group = await make_group(world, "late")
    await add(world, group["id"], "nobody")
    assert not await visible(world["nobody"], world.ids["billing/prod"])
    await world["admin"].ok(
        GRANT_GROUP,
        {"i": {"groupId": group["id"], "role": "VIEWER", "application": "billing", "environment": "*"}},
    )
    assert await visible(world["nobody"], world.ids["billing/prod"])
    assert not await visible(world["nobody"], world.ids["shop/staging"])
    other = await make_group(world, "staging-viewers", "VIEWER", "*", "staging")
    await add(world, other["id"], "nobody")
    assert await visible(world["nobody"], world.ids["shop/staging"])
    assert await visible(world["nobody"], world.ids["billing/prod"])
    assert not await visible(world["nobody"], world.ids["shop/prod"])


async def test_r2_super_admin_through_a_group_administers(world):
    """R2, R9: super-admin granted to a group makes its members super-admins (administer, default
    approvers); removal ends it on the next request."""
    group = await make_group(world, "platform", "SUPER_ADMIN")
    await add(world, group["id"], "nobody")
    data = await world["nobody"].ok("{ me { isSuperAdmin } users { email } }")
    assert data["me"]["isSuperAdmin"] is True
    assert len(data["users"]) == await User.all().count()
    image = await world.register_image("dev")
    assert "nobody@example.com" in await eligible(world, "dev2", "shop/prod", image)
    await remove(world, group["id"], "nobody")
    assert await world["nobody"].code("{ users { email } }") == "FORBIDDEN"
    assert "nobody@example.com" not in await eligible(world, "dev2", "shop/prod", image)


async def test_r2_super_admin_is_granted_to_groups_only_on_every_scope(world, unchanged):
    """R2: super-admin is global for groups as for users: a narrower scope is BAD_USER_INPUT;
    unknown application / group is NOT_FOUND; nothing is written."""
    group = await make_group(world, "g")
    async with unchanged():
        code = await world["admin"].code(
            GRANT_GROUP,
            {"i": {"groupId": group["id"], "role": "SUPER_ADMIN", "application": "shop", "environment": "*"}},
        )
        assert code == "BAD_USER_INPUT"
        code = await world["admin"].code(
            GRANT_GROUP,
            {"i": {"groupId": group["id"], "role": "VIEWER", "application": "nosuch", "environment": "*"}},
        )
        assert code == "NOT_FOUND"
        code = await world["admin"].code(GRANT_GROUP, {"i": {"groupId": "Group:999999", "role": "VIEWER"}})
        assert code == "NOT_FOUND"
        code = await world["admin"].code(GRANT_GROUP, {"i": {"groupId": world.ids["shop"], "role": "VIEWER"}})
        assert code == "BAD_USER_INPUT"
        code = await world["admin"].code(ADD_MEMBER, {"g": group["id"], "u": "User:999999"})
        assert code == "NOT_FOUND"
        assert await world["admin"].code(GROUP_Q, {"id": "Group:999999"}) == "NOT_FOUND"
        assert await world["admin"].code(CREATE_GROUP, {"n": "Not A Name"}) == "BAD_USER_INPUT"


# --- several processes -----------------------------------------------------------------------------


async def test_r5_membership_changed_in_one_process_applies_in_another(world, settings):
    """R5: a second app (its own Authorizer, like another server process) enforces a membership
    added, and then removed, through the first on its very next request."""
    group = await make_group(world, "prod-approvers", "IMAGE_APPROVER", "shop", "prod")
    app_b = create_app(settings, manage_database=False)
    transport = httpx.ASGITransport(app=app_b)
    async with httpx.AsyncClient(transport=transport, base_url="http://b.greenlight.test") as http_b:
        nobody_b = Client(http_b, world["nobody"].token, world["nobody"].user_id)
        dev2_b = Client(http_b, world["dev2"].token, world["dev2"].user_id)
        image = await world.register_image("dev")
        request = await world.request_approval(image, "shop/prod", who="dev2")
        # B has loaded the policy and refuses
        assert await nobody_b.code(APPROVE_M, {"id": request}) == "NOT_FOUND"
        eligible_b = ELIGIBLE_Q, {"p": world.ids["shop/prod"], "i": image}
        assert "nobody@example.com" not in {
            u["email"] for u in (await dev2_b.ok(*eligible_b))["eligibleApprovers"]
        }

        await add(world, group["id"], "nobody")  # through A
        assert "nobody@example.com" in {
            u["email"] for u in (await dev2_b.ok(*eligible_b))["eligibleApprovers"]
        }
        data = await nobody_b.ok(APPROVE_M, {"id": request})
        assert data["approveRequest"]["approvals"] == [{"user": {"email": "nobody@example.com"}}]

        await remove(world, group["id"], "nobody")  # through A
        request2 = await world.request_approval(await world.register_image("dev"), "shop/prod", who="dev2")
        assert await nobody_b.code(APPROVE_M, {"id": request2}) == "NOT_FOUND"
        assert "nobody@example.com" not in {
            u["email"] for u in (await dev2_b.ok(*eligible_b))["eligibleApprovers"]
        }

        # a group role revoked through A is enforced by B as well
        await add(world, group["id"], "nobody")
        assert await visible(nobody_b, world.ids["shop/prod"])
        await world["admin"].ok(REVOKE_GROUP, {"id": group["binding"]})
        assert not await visible(nobody_b, world.ids["shop/prod"])
    assert await Approval.filter(request_id=pk(request2)).count() == 0


# --- administration: super-admins only, no duplicates ----------------------------------------------


async def test_r2_group_administration_is_forbidden_to_others(world, unchanged):
    """R2: every group, user-list and binding-list operation is FORBIDDEN to non-super-admins, even
    for members of the group concerned, and changes nothing."""
    group = await make_group(world, "shop-approvers", "IMAGE_APPROVER", "shop", "*")
    await add(world, group["id"], "approver1")
    operations = [
        (CREATE_GROUP, {"n": "mine"}),
        (ADD_MEMBER, {"g": group["id"], "u": world["nobody"].user_id}),
        (ADD_MEMBER, {"g": group["id"], "u": world["dev"].user_id}),
        (REMOVE_MEMBER, {"g": group["id"], "u": world["approver1"].user_id}),
        (GRANT_GROUP, {"i": {"groupId": group["id"], "role": "SUPER_ADMIN"}}),
        (REVOKE_GROUP, {"id": group["binding"]}),
        ("{ groups { totalCount edges { node { id } } } }", None),
        (GROUP_Q, {"id": group["id"]}),
        ("{ userConnection { totalCount } }", None),
        ("{ roleBindingConnection { totalCount } }", None),
        ("query($u: ID!) { roleBindingConnection(userId: $u) { totalCount } }", {"u": world["dev"].user_id}),
    ]
    async with unchanged():
        for who in ("dev", "approver1", "viewer", "prod_approver", "nobody"):
            for query, variables in operations:
                body = await world[who].execute(query, variables)
                assert body.get("errors"), (who, query, body)
                assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN", (who, query, body)
    assert await Group.filter(name="mine").count() == 0


async def test_duplicate_group_member_and_binding_are_conflicts(world, unchanged):
    """CONFLICT (api.graphql): a second group of one name (existingId names the first), a member
    added twice, a role granted twice to one group on one scope; nothing changes."""
    group = await make_group(world, "shop-approvers", "IMAGE_APPROVER", "shop", "*")
    await add(world, group["id"], "nobody")
    admin = world["admin"]
    async with unchanged():
        error = await admin.fails(CREATE_GROUP, {"n": "shop-approvers"})
        assert error["extensions"]["code"] == "CONFLICT"
        assert error["extensions"]["existingId"] == group["id"]
        error = await admin.fails(ADD_MEMBER, {"g": group["id"], "u": world["nobody"].user_id})
        assert error["extensions"]["code"] == "CONFLICT"
        grant = {"groupId": group["id"], "role": "IMAGE_APPROVER", "application": "shop", "environment": "*"}
        error = await admin.fails(GRANT_GROUP, {"i": grant})
        assert error["extensions"]["code"] == "CONFLICT"
    assert await Group.filter(name="shop-approvers").count() == 1
    assert await GroupMember.filter(group_id=pk(group["id"])).count() == 1
    # the same role on another scope, or another role on the same scope, is no duplicate
    await admin.ok(GRANT_GROUP, {"i": {**grant, "environment": "prod"}})
    await admin.ok(GRANT_GROUP, {"i": {**grant, "role": "VIEWER"}})
    # a user binding and a group binding of the same shape are different things
    await admin.ok(
        "mutation($i: RoleBindingInput!) { grantRole(input: $i) { id } }",
        {"i": {"userId": world["nobody"].user_id, "role": "IMAGE_APPROVER", "application": "shop"}},
    )
    assert await RoleBinding.filter(group_id=pk(group["id"])).count() == 3


async def test_duplicate_group_binding_conflict_names_the_existing_group_binding(world):
    """CONFLICT: extensions.existingId names the existing group binding, usable as such."""
    group = await make_group(world, "shop-approvers", "IMAGE_APPROVER", "shop", "*")
    grant = {"groupId": group["id"], "role": "IMAGE_APPROVER", "application": "shop", "environment": "*"}
    error = await world["admin"].fails(GRANT_GROUP, {"i": grant})
    assert error["extensions"]["code"] == "CONFLICT"
    assert error["extensions"]["existingId"] == group["binding"]
    await world["admin"].ok(REVOKE_GROUP, {"id": error["extensions"]["existingId"]})


# --- pagination ------------------------------------------------------------------------------------


async def walk(client: Client, query: str, path: list[str], first: int, variables: dict | None = None):
    """Every page of a connection; returns (pages, node ids in order)."""
    pages, after, ids = [], None, []
    while True:
        data = await client.ok(query, {**(variables or {}), "first": first, "after": after})
        for key in path:
            data = data[key]
        pages.append(data)
        ids += [edge["node"]["id"] for edge in data["edges"]]
        assert len(data["edges"]) <= first
        if data["edges"]:
            assert data["pageInfo"]["endCursor"] == data["edges"][-1]["cursor"]
        if not data["pageInfo"]["hasNextPage"]:
            return pages, ids
        assert len(pages) < 50, "pagination does not end"
        after = data["pageInfo"]["endCursor"]


def check_pages(pages: list[dict], ids: list[str], expected: set[str], first: int) -> None:
    """Every item once, newest (highest id) first, full pages but the last, totalCount = all."""
    assert len(ids) == len(set(ids)) == len(expected)
    assert set(ids) == expected
    assert [pk(i) for i in ids] == sorted((pk(i) for i in ids), reverse=True)
    assert all(p["totalCount"] == len(expected) for p in pages)
    assert all(len(p["edges"]) == first for p in pages[:-1])
    assert len(pages) == max(1, -(-len(expected) // first))


PAGE_ARGS = "$first: Int, $after: String"
CONNECTION = "totalCount pageInfo { hasNextPage endCursor } edges { cursor node { id } }"
GROUPS_Q = f"query({PAGE_ARGS}) {{ groups(first: $first, after: $after) {{ {CONNECTION} }} }}"
USERS_Q = f"query({PAGE_ARGS}) {{ userConnection(first: $first, after: $after) {{ {CONNECTION} }} }}"
BINDINGS_Q = f"""query($u: ID, {PAGE_ARGS}) {{
  roleBindingConnection(userId: $u, first: $first, after: $after) {{ {CONNECTION} }} }}"""
MEMBERS_Q = f"""query($g: ID!, {PAGE_ARGS}) {{
  group(id: $g) {{ members(first: $first, after: $after) {{ {CONNECTION} }} }} }}"""


async def test_groups_users_bindings_and_members_are_paginated(world):
    """Listing users, groups, role bindings and group members is paginated: newest
    first, `after` takes the previous endCursor, totalCount counts all."""
    admin = world["admin"]
    created = {(await make_group(world, f"team-{n:02}"))["id"] for n in range(23)}
    pages, ids = await walk(admin, GROUPS_Q, ["groups"], 10)
    check_pages(pages, ids, created, 10)

    users = {f"User:{u}" for u in await User.all().values_list("id", flat=True)}
    pages, ids = await walk(admin, USERS_Q, ["userConnection"], 5)
    check_pages(pages, ids, users, 5)

    # role bindings of users only (group bindings are GroupRoleBindings), all or by user
    group = await make_group(world, "with-binding", "VIEWER", "shop", "*")
    for env in ("staging", "prod"):
        await admin.ok(
            "mutation($i: RoleBindingInput!) { grantRole(input: $i) { id } }",
            {
                "i": {
                    "userId": world["dev"].user_id,
                    "role": "VIEWER",
                    "application": "billing",
                    "environment": env,
                }
            },
        )
    direct = {
        f"RoleBinding:{b}"
        for b in await RoleBinding.filter(user_id__isnull=False).values_list("id", flat=True)
    }
    pages, ids = await walk(admin, BINDINGS_Q, ["roleBindingConnection"], 4)
    check_pages(pages, ids, direct, 4)
    assert pk(group["binding"]) not in {pk(i) for i in ids}
    devs = {
        f"RoleBinding:{b}"
        for b in await RoleBinding.filter(user_id=pk(world["dev"].user_id)).values_list("id", flat=True)
    }
    assert len(devs) == 3
    pages, ids = await walk(admin, BINDINGS_Q, ["roleBindingConnection"], 2, {"u": world["dev"].user_id})
    check_pages(pages, ids, devs, 2)

    # members of a group with every user of the world
    for name in world.clients:
        await add(world, group["id"], name)
    members = {c.user_id for c in world.clients.values()}
    pages, ids = await walk(admin, MEMBERS_Q, ["group", "members"], 5, {"g": group["id"]})
    check_pages(pages, ids, members, 5)

    # first=0: only the count; out of range or a bad cursor: BAD_USER_INPUT
    data = await admin.ok(GROUPS_Q, {"first": 0})
    assert data["groups"]["totalCount"] == 24 and data["groups"]["edges"] == []
    assert data["groups"]["pageInfo"]["hasNextPage"] is True
    for query, extra in ((GROUPS_Q, {}), (USERS_Q, {}), (BINDINGS_Q, {}), (MEMBERS_Q, {"g": group["id"]})):
        assert await admin.code(query, {**extra, "first": 101}) == "BAD_USER_INPUT"
        assert await admin.code(query, {**extra, "first": -1}) == "BAD_USER_INPUT"
        assert await admin.code(query, {**extra, "first": 5, "after": "nonsense"}) == "BAD_USER_INPUT"
