"""Deleting a group (editing what was created): its memberships and role bindings go with
it, audited; its members lose those roles on their next request, on every process (R2, R5)."""

from __future__ import annotations

from greenlight.models import AuditEvent, GroupMember, RoleBinding

from .test_groups import add, make_group, pk, visible

DELETE = "mutation($id: ID!) { deleteGroup(id: $id) { id name } }"
UPDATE_POLICY = """mutation($p: ID!, $i: PipelineUpdateInput!) { updatePipeline(id: $p, input: $i) { id } }"""


async def test_r5_deleting_a_group_takes_its_roles_from_members_at_once(world, cluster):
    """R5: a member sees billing through the group; after deleteGroup, on either process, they
    no longer do; memberships and bindings are gone and an audit event keeps what was there."""
    group = await make_group(world, "billing-viewers", "VIEWER", "billing", "*")
    await add(world, group["id"], "nobody")
    billing = world.ids["billing/prod"]
    for client in cluster.clients("nobody").values():
        assert await visible(client, billing)
    deleted = await world["admin"].ok(DELETE, {"id": group["id"]})
    assert deleted["deleteGroup"] == {"id": group["id"], "name": "billing-viewers"}
    for client in cluster.clients("nobody").values():
        assert not await visible(client, billing)
    assert not await GroupMember.filter(group_id=pk(group["id"])).exists()
    assert not await RoleBinding.filter(group_id=pk(group["id"])).exists()
    event = await AuditEvent.get(action="delete_group", object_id=pk(group["id"]))
    assert event.before["name"] == "billing-viewers"
    assert event.before["members"] == [pk(world["nobody"].user_id)]
    assert event.before["roleBindings"] == [{"role": "viewer", "scope": "billing/*"}]
    assert (
        await world["admin"].code("query($id: ID!) { group(id: $id) { id } }", {"id": group["id"]})
        == "NOT_FOUND"
    )


async def test_r2_only_super_admins_delete_groups_and_a_group_in_a_policy_stays(world, unchanged):
    """R2: others get FORBIDDEN; a group named by a pipeline's policy (an exception) is
    INVALID_STATE, naming the pipeline; an unknown group is NOT_FOUND; nothing changes."""
    group = await make_group(world, "hotfix", "BUILD_AND_DEPLOY", "shop", "*")
    await world["admin"].ok(
        UPDATE_POLICY, {"p": world.ids["shop/prod"], "i": {"exceptionGroupIds": [group["id"]]}}
    )
    async with unchanged():
        assert await world["dev"].code(DELETE, {"id": group["id"]}) == "FORBIDDEN"
        error = await world["admin"].fails(DELETE, {"id": group["id"]})
        assert error["extensions"]["code"] == "INVALID_STATE"
        assert world.ids["shop/prod"] in error["message"]
        assert await world["admin"].code(DELETE, {"id": "Group:999999"}) == "NOT_FOUND"
