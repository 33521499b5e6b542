"""R5 cannot be forgotten: the database itself records every change to who may do what.

Each test writes role bindings, group memberships, group names and users' active state
with raw SQL, around the workflow and the ORM, as a new writer that forgot R5 would, and
another process's authorizer (one that decided, and cached, before the write) applies the
change on its next refresh.
"""

from __future__ import annotations

import re

from tortoise import connections

from greenlight.models import Group
from greenlight.policies import Action, Authorizer, Scope
from greenlight.policies import authorizer as authorizer_module

SHOP_PROD = Scope("shop", "prod")


def pk(global_id: str) -> int:
    return int(global_id.split(":")[1])


async def sql(statement: str) -> list[tuple]:
    _, rows = await connections.get("default").execute_query(statement)
    return [tuple(row) for row in rows]


async def other_process() -> Authorizer:
    authorizer = Authorizer()
    await authorizer.refresh()
    return authorizer


async def decided(authorizer: Authorizer, user_id: int, action: Action, expected: bool) -> None:
    """The authorizer is up to date, answers `expected`, and has the answer cached."""
    await authorizer.refresh()
    assert authorizer.may(user_id, action, SHOP_PROD) is expected
    assert authorizer.cached(user_id, action, SHOP_PROD) is expected


async def test_r5_a_binding_written_around_the_workflow_is_in_force_on_other_processes(world):
    """R5: a grant, a change of scope and a revocation made with raw SQL."""
    nobody = pk(world["nobody"].user_id)
    b = await other_process()
    await decided(b, nobody, Action.DEPLOY, False)

    await sql(
        "INSERT INTO role_bindings (user_id, role, application, environment, created_at)"
        f" VALUES ({nobody}, 'build-and-deploy', 'shop', 'prod', CURRENT_TIMESTAMP)"
    )
    await decided(b, nobody, Action.DEPLOY, True)

    await sql(f"UPDATE role_bindings SET environment = 'staging' WHERE user_id = {nobody}")
    await decided(b, nobody, Action.DEPLOY, False)

    await sql(f"UPDATE role_bindings SET environment = '*' WHERE user_id = {nobody}")
    await decided(b, nobody, Action.DEPLOY, True)

    await sql(f"DELETE FROM role_bindings WHERE user_id = {nobody}")
    await decided(b, nobody, Action.DEPLOY, False)


async def test_r5_memberships_and_group_bindings_written_around_the_workflow(world):
    """R5: a group's binding, a membership added, moved and removed, a group renamed."""
    nobody, viewer = pk(world["nobody"].user_id), pk(world["viewer"].user_id)
    team = await Group.create(name="raw-team")  # a group with no binding changes no one
    other = await Group.create(name="raw-other")
    b = await other_process()
    await decided(b, nobody, Action.APPROVE, False)

    await sql(
        f"INSERT INTO group_members (group_id, user_id, created_at) VALUES ({team.id}, {nobody}, CURRENT_TIMESTAMP)"
    )
    await decided(b, nobody, Action.APPROVE, False)  # the team holds nothing yet

    await sql(
        "INSERT INTO role_bindings (group_id, role, application, environment, created_at)"
        f" VALUES ({team.id}, 'image-approver', 'shop', '*', CURRENT_TIMESTAMP)"
    )
    await decided(b, nobody, Action.APPROVE, True)
    assert [g.group for g in b.explain(nobody, Action.APPROVE, SHOP_PROD).grants] == ["raw-team"]

    await sql(f"UPDATE groups SET name = 'raw-renamed' WHERE id = {team.id}")
    await b.refresh()
    assert [g.group for g in b.explain(nobody, Action.APPROVE, SHOP_PROD).grants] == ["raw-renamed"]

    await decided(b, viewer, Action.APPROVE, False)
    await sql(f"UPDATE group_members SET user_id = {viewer} WHERE group_id = {team.id}")
    await decided(b, nobody, Action.APPROVE, False)
    await decided(b, viewer, Action.APPROVE, True)

    await sql(f"UPDATE group_members SET group_id = {other.id} WHERE user_id = {viewer}")
    await decided(b, viewer, Action.APPROVE, False)

    await sql(f"UPDATE group_members SET group_id = {team.id} WHERE user_id = {viewer}")
    await decided(b, viewer, Action.APPROVE, True)
    await sql(f"DELETE FROM group_members WHERE user_id = {viewer}")
    await decided(b, viewer, Action.APPROVE, False)


async def test_r5_a_deactivation_written_around_the_workflow(world):
    """R5: a user deactivated and reactivated with raw SQL loses and regains their roles."""
    dev = pk(world["dev"].user_id)
    b = await other_process()
    await decided(b, dev, Action.DEPLOY, True)

    await sql(f"UPDATE users SET is_active = FALSE WHERE id = {dev}")
    await decided(b, dev, Action.DEPLOY, False)

    await sql(f"UPDATE users SET name = 'renamed' WHERE id = {dev}")  # not a change of roles
    latest = b.version
    await b.refresh()
    assert b.version == latest

    await sql(f"UPDATE users SET is_active = TRUE WHERE id = {dev}")
    await decided(b, dev, Action.DEPLOY, True)


async def test_r5_every_table_the_rules_are_read_from_records_its_changes(database):
    """R5: a table the authorizer's rules are read from, with no trigger recording its
    changes, would let a writer change who may do what unseen; this names it."""
    statements = [
        authorizer_module.USER_BINDINGS,
        authorizer_module.USER_GROUPS,
        authorizer_module.GROUP_BINDINGS,
        authorizer_module.GROUP_MEMBERS,
        authorizer_module.GROUP_NAMES,
    ]
    tables = {name for sql_text in statements for name in re.findall(r"(?:FROM|JOIN) (\w+)", sql_text)}
    assert tables == {"role_bindings", "group_members", "groups", "users"}
    if database == "postgres":
        rows = await sql("SELECT DISTINCT event_object_table FROM information_schema.triggers")
    else:
        rows = await sql("SELECT DISTINCT tbl_name FROM sqlite_master WHERE type = 'trigger'")
    assert tables <= {row[0] for row in rows}
