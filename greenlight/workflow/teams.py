"""Permission groups: super-admins make teams, add and remove members, and grant roles to
a team on a scope exactly as to a user; members inherit them through Casbin (R2, R5)."""

from __future__ import annotations

from greenlight.errors import Conflict, InvalidState, not_found
from greenlight.models import ApprovalException, Group, GroupMember, GroupQuorum, Role, RoleBinding, User
from greenlight.policies import Actor
from greenlight.policies.authorizer import lock_policy
from greenlight.tx import access_transaction, transaction
from greenlight.workflow import audit, validation
from greenlight.workflow.guards import require_admin
from greenlight.workflow.identity import create_binding, delete_binding
from greenlight.workflow.reads import Page, page


async def create_group(actor: Actor, name: str) -> Group:
    require_admin(actor, "create groups")
    validation.name("name", name)
    async with transaction():
        existing = await Group.get_or_none(name=name)
        if existing is not None:
            raise Conflict(f"group {name} exists", existing=existing)
        group = await Group.create(name=name)
        await audit.record("create_group", group, actor_id=actor.id, after={"name": name})
    return group


async def _group_and_user(group_id: int, user_id: int) -> tuple[Group, User]:
    group = await Group.get_or_none(id=group_id)
    if group is None:
        raise not_found("group")
    user = await User.get_or_none(id=user_id)
    if user is None:
        raise not_found("user")
    return group, user


async def add_member(actor: Actor, group_id: int, user_id: int) -> Group:
    require_admin(actor, "change group members")
    async with access_transaction(actor):
        await lock_policy()  # first, as every change to who may do what takes it: no deadlock
        group, user = await _group_and_user(group_id, user_id)
        if await GroupMember.exists(group_id=group.id, user_id=user.id):
            raise Conflict(f"{user.email} is a member of {group.name} already", existing=group)
        await GroupMember.create(group=group, user=user)
        await audit.record("add_group_member", group, actor_id=actor.id, after={"user": user.id})
    return group


async def remove_member(actor: Actor, group_id: int, user_id: int) -> Group:
    """Takes effect on the member's next request, on every process (R5)."""
    require_admin(actor, "change group members")
    async with access_transaction(actor):
        await lock_policy()  # first, as every change to who may do what takes it: no deadlock
        group, user = await _group_and_user(group_id, user_id)
        removed = await GroupMember.filter(group_id=group.id, user_id=user.id).delete()
        if not removed:
            raise InvalidState(f"{user.email} is not a member of {group.name}")
        await audit.record("remove_group_member", group, actor_id=actor.id, before={"user": user.id})
    return group


async def grant_group_role(
    actor: Actor, group_id: int, role: Role, application: str | None, environment: str | None
) -> RoleBinding:
    """Members inherit it through Casbin (R5)."""
    return await create_binding(actor, "group", group_id, role, application, environment)


async def revoke_group_role(actor: Actor, binding_id: int) -> RoleBinding:
    return await delete_binding(actor, "group", binding_id)


async def delete_group(actor: Actor, group_id: int) -> Group:
    """R2, R5: the group goes with its memberships and role bindings; its members lose the
    roles they had through it on their next request, on every process. A group the approval
    policy of a pipeline names (a quorum, an exception) is refused: change the policy first,
    so no policy changes by the way."""
    require_admin(actor, "delete groups")
    async with access_transaction(actor):
        await lock_policy()  # first, as every change to who may do what takes it: no deadlock
        group = await Group.select_for_update().get_or_none(id=group_id)
        if group is None:
            raise not_found("group")
        used = await GroupQuorum.filter(group_id=group.id).values_list(
            "pipeline_id", flat=True
        ) + await ApprovalException.filter(group_id=group.id).values_list("pipeline_id", flat=True)
        if used:
            raise InvalidState(
                f"group {group.name} is named in the approval policy of pipeline "
                f"{', '.join(f'Pipeline:{p}' for p in sorted(set(used)))}: remove it there first"
            )
        members = sorted(await GroupMember.filter(group_id=group.id).values_list("user_id", flat=True))
        bindings = await RoleBinding.filter(group_id=group.id).order_by("id")
        before = {
            "name": group.name,
            "members": members,
            "roleBindings": [
                {"role": Role(b.role).value, "scope": f"{b.application}/{b.environment}"} for b in bindings
            ],
        }
        await GroupMember.filter(group_id=group.id).delete()
        await RoleBinding.filter(group_id=group.id).delete()
        deleted_id = group.id
        await group.delete()
        group.id = deleted_id
        await audit.record("delete_group", group, actor_id=actor.id, before=before)
    return group


async def groups(actor: Actor, first: int | None, after_id: int | None) -> Page:
    require_admin(actor, "list groups")
    return await page(Group.all(), first, after_id)


async def group(actor: Actor, group_id: int) -> Group:
    require_admin(actor, "read groups")
    found = await Group.get_or_none(id=group_id)
    if found is None:
        raise not_found("group")
    return found


async def group_role_binding(actor: Actor, binding_id: int) -> RoleBinding:
    """A group's role binding, as Group.roleBindings shows it: to super-admins (R2)."""
    require_admin(actor, "see a group's role bindings")
    found = await RoleBinding.get_or_none(id=binding_id, group_id__isnull=False)
    if found is None:
        raise not_found("group role binding")
    return found


async def users_page(actor: Actor, first: int | None, after_id: int | None) -> Page:
    require_admin(actor, "list users")
    return await page(User.all(), first, after_id)


async def role_bindings_page(
    actor: Actor, user_id: int | None, first: int | None, after_id: int | None
) -> Page:
    require_admin(actor, "list role bindings")
    query = RoleBinding.filter(user_id__isnull=False)
    if user_id is not None:
        query = query.filter(user_id=user_id)
    return await page(query, first, after_id)
