"""R5 cannot be forgotten: the database records every change to who may do what.

Triggers on `role_bindings`, `group_members` and `users.is_active` append the
`policy_version` rows that every process reads before its next request (R5): a binding
granted, revoked or changed names its user or group, a membership added, removed or
changed names its user, a deactivation or reactivation names the user, a group renamed
names the group (its name is the "why" of its members' grants). Every writer
(a mutation, the SSO groups claim, bootstrap, a script with raw SQL) is covered alike,
so no write path has to remember to record the change.

On PostgreSQL the triggers run once per statement over its transition tables (a bulk
insert of many bindings is one trigger call) and first take the advisory lock that
`greenlight.policies.changes.lock_policy` takes, held until commit, so version ids follow
commit order. SQLite runs one writing transaction at a time already.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops

# greenlight.policies.changes.POLICY_LOCK ("glpolicy"), written out: a migration is history.
POLICY_LOCK = 7452455107253855097
PREFIX = "greenlight_policy_change"

# (table, event, what each changed row records: user_id and group_id, from OLD or NEW)
SQLITE_TRIGGERS = {
    "role_bindings_insert": (
        "AFTER INSERT ON role_bindings",
        "INSERT INTO policy_version (user_id, group_id, created_at) VALUES (NEW.user_id, NEW.group_id, {now});",
    ),
    "role_bindings_delete": (
        "AFTER DELETE ON role_bindings",
        "INSERT INTO policy_version (user_id, group_id, created_at) VALUES (OLD.user_id, OLD.group_id, {now});",
    ),
    "role_bindings_update": (
        "AFTER UPDATE ON role_bindings",
        "INSERT INTO policy_version (user_id, group_id, created_at) VALUES (OLD.user_id, OLD.group_id, {now});"
        " INSERT INTO policy_version (user_id, group_id, created_at) SELECT NEW.user_id, NEW.group_id, {now}"
        " WHERE NEW.user_id IS NOT OLD.user_id OR NEW.group_id IS NOT OLD.group_id;",
    ),
    "group_members_insert": (
        "AFTER INSERT ON group_members",
        "INSERT INTO policy_version (user_id, group_id, created_at) VALUES (NEW.user_id, NULL, {now});",
    ),
    "group_members_delete": (
        "AFTER DELETE ON group_members",
        "INSERT INTO policy_version (user_id, group_id, created_at) VALUES (OLD.user_id, NULL, {now});",
    ),
    "group_members_update": (
        "AFTER UPDATE ON group_members",
        "INSERT INTO policy_version (user_id, group_id, created_at) VALUES (OLD.user_id, NULL, {now});"
        " INSERT INTO policy_version (user_id, group_id, created_at) SELECT NEW.user_id, NULL, {now}"
        " WHERE NEW.user_id IS NOT OLD.user_id;",
    ),
    "groups_name": (
        "AFTER UPDATE OF name ON groups WHEN NEW.name IS NOT OLD.name",
        "INSERT INTO policy_version (user_id, group_id, created_at) VALUES (NULL, NEW.id, {now});",
    ),
    "users_active": (
        "AFTER UPDATE OF is_active ON users WHEN NEW.is_active IS NOT OLD.is_active",
        "INSERT INTO policy_version (user_id, group_id, created_at) VALUES (NEW.id, NULL, {now});",
    ),
}
# The text Tortoise stores a datetime as on SQLite.
SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f+00:00', 'now')"

# What each statement's changed rows record, by table and operation.
POSTGRES_CHANGES = {
    "role_bindings": {
        "INSERT": "SELECT user_id, group_id FROM new_rows",
        "DELETE": "SELECT user_id, group_id FROM old_rows",
        "UPDATE": "SELECT user_id, group_id FROM old_rows UNION SELECT user_id, group_id FROM new_rows",
    },
    "group_members": {
        "INSERT": "SELECT user_id, NULL::int FROM new_rows",
        "DELETE": "SELECT user_id, NULL::int FROM old_rows",
        "UPDATE": "SELECT user_id, NULL::int FROM old_rows UNION SELECT user_id, NULL::int FROM new_rows",
    },
    "groups": {
        "UPDATE": "SELECT NULL::int, n.id FROM new_rows n JOIN old_rows o ON o.id = n.id"
        " WHERE n.name IS DISTINCT FROM o.name",
    },
    "users": {
        "UPDATE": "SELECT n.id, NULL::int FROM new_rows n JOIN old_rows o ON o.id = n.id"
        " WHERE n.is_active IS DISTINCT FROM o.is_active",
    },
}


def _postgres_script() -> str:
    statements = []
    for table, changes in POSTGRES_CHANGES.items():
        function = f"{PREFIX}_{table}"
        # The lock first (and only when some row changed), then the versions.
        branches = " ELSIF ".join(
            f"TG_OP = '{op}' THEN"
            f" PERFORM pg_advisory_xact_lock({POLICY_LOCK}) FROM ({select}) AS changed LIMIT 1;"
            " INSERT INTO policy_version (user_id, group_id, created_at)"
            f" SELECT changed.*, now() FROM ({select}) AS changed;"
            for op, select in changes.items()
        )
        statements.append(
            f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$"
            f" BEGIN IF {branches} END IF; RETURN NULL; END $$;"
        )
        for op in changes:
            transition = {
                "INSERT": "NEW TABLE AS new_rows",
                "DELETE": "OLD TABLE AS old_rows",
                "UPDATE": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
            }[op]
            statements.append(
                f'CREATE TRIGGER {PREFIX}_{table}_{op.lower()} AFTER {op} ON "{table}"'
                f" REFERENCING {transition} FOR EACH STATEMENT EXECUTE FUNCTION {function}();"
            )
    return "\n".join(statements)


async def install(apps, schema_editor) -> None:
    client = schema_editor.client
    if client.capabilities.dialect == "postgres":
        await client.execute_script(_postgres_script())
        return
    for name, (when, body) in SQLITE_TRIGGERS.items():
        await client.execute_script(
            f"CREATE TRIGGER {PREFIX}_{name} {when} BEGIN {body.format(now=SQLITE_NOW)} END;"
        )


async def uninstall(apps, schema_editor) -> None:
    client = schema_editor.client
    if client.capabilities.dialect == "postgres":
        await client.execute_script(
            " ".join(f"DROP FUNCTION IF EXISTS {PREFIX}_{table}() CASCADE;" for table in POSTGRES_CHANGES)
        )
        return
    for name in SQLITE_TRIGGERS:
        await client.execute_script(f"DROP TRIGGER IF EXISTS {PREFIX}_{name}")


class Migration(migrations.Migration):
    dependencies = [("models", "0009_checks")]

    initial = False

    operations = [ops.RunPython(install, reverse_code=uninstall)]
