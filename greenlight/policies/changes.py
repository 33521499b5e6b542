"""The change reader: what is stored about who may do what, and the log of its changes.

Every change to who may do what appends a `PolicyVersion` row naming the user or group
whose rules changed, in the transaction that makes the change: the database's triggers
on role bindings, memberships, group names and users' active state write it (migration
0010_house), whoever the writer is. A process reads the latest version and the changes
since the one it applied in one statement, and what is stored now about those users and
groups (R5).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tortoise import connections

# More changes than this since the version a process has applied: it reloads everything.
FULL_RELOAD_AFTER = 1000
# The PostgreSQL advisory lock that serialises changes to who may do what.
POLICY_LOCK = 0x676C_706F_6C69_6379  # "glpolicy"

Bound = tuple[int, str, str, str]  # a binding: id, role (its value), application, environment


@dataclass
class UserData:
    """A user's own bindings and groups as stored (none if the user is deactivated)."""

    bindings: list[Bound]
    groups: dict[int, str]  # group id -> name


@dataclass
class GroupData:
    name: str | None
    bindings: list[Bound]
    members: set[int]  # active members


async def read_changes(
    user_ids: set[int], group_ids: set[int]
) -> tuple[dict[int, UserData], dict[int, GroupData]]:
    """What is stored now about these users and groups (deactivated users hold nothing)."""
    users = {user_id: UserData([], {}) for user_id in user_ids}
    groups = {group_id: GroupData(None, [], set()) for group_id in group_ids}
    if user_ids:
        for user_id, binding_id, role, app, env in await _fetch(USER_BINDINGS, "b.user_id", user_ids):
            users[user_id].bindings.append((binding_id, str(role), app, env))
        for group_id, user_id, name in await _fetch(USER_GROUPS, "m.user_id", user_ids):
            users[user_id].groups[group_id] = name
    if group_ids:
        for group_id, name in await _fetch(GROUP_NAMES, "id", group_ids):
            groups[group_id].name = name
        for group_id, binding_id, role, app, env in await _fetch(GROUP_BINDINGS, "group_id", group_ids):
            groups[group_id].bindings.append((binding_id, str(role), app, env))
        for group_id, user_id in await _fetch(GROUP_MEMBERS, "m.group_id", group_ids):
            groups[group_id].members.add(user_id)
    for user in users.values():
        user.bindings.sort()
    for group in groups.values():
        group.bindings.sort()
    return users, groups


# The reads on every request and every change go around the ORM: its query building costs
# more than the queries themselves (a few hundred microseconds each). Every value put into
# these statements is an integer.
#
# What is read about who may do what, once each: in full by a new process (Rules.load), for
# some users or groups as they change (read_changes). Deactivated users hold nothing.
USER_BINDINGS = (
    "SELECT b.user_id, b.id, b.role, b.application, b.environment FROM role_bindings b"
    " JOIN users u ON u.id = b.user_id WHERE u.is_active"
)
USER_GROUPS = (
    "SELECT m.group_id, m.user_id, g.name FROM group_members m"
    " JOIN users u ON u.id = m.user_id JOIN groups g ON g.id = m.group_id WHERE u.is_active"
)
GROUP_BINDINGS = (
    "SELECT group_id, id, role, application, environment FROM role_bindings WHERE group_id IS NOT NULL"
)
GROUP_MEMBERS = (
    "SELECT m.group_id, m.user_id FROM group_members m JOIN users u ON u.id = m.user_id WHERE u.is_active"
)
GROUP_NAMES = "SELECT id, name FROM groups WHERE TRUE"


async def read_everything() -> tuple[list[tuple], list[tuple], list[tuple], list[tuple]]:
    """Every active user's bindings, every group's bindings, every active membership and
    every group's name (what a new process loads)."""
    return (
        await _fetch(USER_BINDINGS),
        await _fetch(GROUP_BINDINGS),
        await _fetch(GROUP_MEMBERS),
        await _fetch(GROUP_NAMES),
    )


async def _fetch(sql: str, column: str | None = None, among: Iterable[int] = ()) -> list[tuple]:
    """The rows of `sql`, only those whose `column` is one of `among` when given."""
    if column is not None:
        sql = f"{sql} AND {column} IN ({_ids(among)})"
    _, rows = await connections.get("default").execute_query(sql)
    return [tuple(row) for row in rows]


def _ids(values: Iterable[int]) -> str:
    return ", ".join(str(int(value)) for value in sorted(values))


async def changes_since(version: int | None) -> tuple[int, list[tuple[int, int | None, int | None]]]:
    """The latest version (0 for none) and the changes after `version`, oldest first, at
    most FULL_RELOAD_AFTER + 1 of them: one query, on the primary key's index."""
    if version is None:
        return await latest_policy_version(), []
    rows = await _fetch(
        "SELECT 0, MAX(id), NULL, NULL FROM policy_version UNION ALL"
        " SELECT 1, id, user_id, group_id FROM (SELECT id, user_id, group_id FROM policy_version"
        f" WHERE id > {int(version)} ORDER BY id LIMIT {FULL_RELOAD_AFTER + 1}) AS changes"
    )
    latest = next((int(row[1] or 0) for row in rows if row[0] == 0), 0)
    changes = sorted((row[1], row[2], row[3]) for row in rows if row[0] == 1)
    return latest, changes


async def latest_policy_version() -> int:
    """The id of the latest change to who may do what (0 for none): one indexed read."""
    rows = await _fetch("SELECT MAX(id) FROM policy_version")
    return int(rows[0][0] or 0) if rows else 0


async def lock_policy() -> None:
    """Serialise changes to who may do what until the current transaction ends.

    Call inside the transaction. On PostgreSQL a transaction-scoped advisory lock; SQLite
    lets one transaction write at a time already. Holding it until commit is what makes
    change ids follow commit order, so no process skips a change committed late. The
    triggers that write the changes take it too; a workflow function takes it first, before
    the rows it locks, so that two writers never wait for each other's locks."""
    connection = connections.get("default")
    if connection.capabilities.dialect == "postgres":
        await connection.execute_query("SELECT pg_advisory_xact_lock($1)", [POLICY_LOCK])
