"""A counter of committed changes to the database, kept by the database itself.

Every table but the counter's own (and Tortoise's list of applied migrations) has
triggers that add one to `change_counter.version` when rows are inserted, updated,
deleted or (PostgreSQL) truncated, in the writing transaction, whoever writes: a mutation,
a background job, another process, an administrator's psql. A reader that reads the
version before it reads anything else knows its answer is no older than that version,
and still true while the version has not moved (greenlight.cache.responses).

On PostgreSQL the row triggers are deferred to commit and count once per transaction: the
counter's row is locked only while a transaction commits, so writers do not queue on it
while they work, nor deadlock through it (it is the last lock a transaction takes). They
are enabled ALWAYS, so writes under `session_replication_role = replica` (pg_restore,
logical replication) count too.

Every read of the counter also counts the triggers in place: a table added without them,
a trigger dropped or disabled, and the reader is told the counter cannot be trusted.
"""

from __future__ import annotations

from dataclasses import dataclass

from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

COUNTER = "change_counter"
UNTRACKED = frozenset({COUNTER, "tortoise_migrations"})
TRIGGER = "greenlight_count_changes"
TRUNCATE_TRIGGER = "greenlight_count_truncates"  # PostgreSQL: TRUNCATE fires no row trigger
POLICY_VERSIONS = "policy_version"  # greenlight.policies.authorizer's change log
INSTALL_LOCK = 0x67_6C_63_63  # "glcc": one installer at a time
_SQLITE_EVENTS = ("INSERT", "UPDATE", "DELETE")

_PG_FUNCTION = f"""
CREATE OR REPLACE FUNCTION {TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('greenlight.counted', true), '') <> 'yes' THEN
        PERFORM set_config('greenlight.counted', 'yes', true);
        UPDATE {COUNTER} SET version = version + 1 WHERE id = 1;
    END IF;
    RETURN NULL;
END $$
"""
_UNTRACKED_SQL = ", ".join(f"'{name}'" for name in sorted(UNTRACKED))

# One statement: the version, the triggers in place (enabled ALWAYS on PostgreSQL), the
# tables that need them, and the latest change to who may do what (greenlight.policies:
# a process whose roles are at that version reads nothing more about them).
_PG_READ = f"""
SELECT c.version,
  (SELECT count(*) FROM pg_trigger t JOIN pg_class r ON r.oid = t.tgrelid
     JOIN pg_namespace n ON n.oid = r.relnamespace
   WHERE n.nspname = current_schema() AND t.tgenabled = 'A'
     AND t.tgname IN ('{TRIGGER}', '{TRUNCATE_TRIGGER}')),
  (SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()
     AND tablename NOT IN ({_UNTRACKED_SQL})),
  (SELECT max(id) FROM {POLICY_VERSIONS})
FROM {COUNTER} c WHERE c.id = 1
"""
_SQLITE_READ = f"""
SELECT (SELECT version FROM {COUNTER} WHERE id = 1),
  (SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name GLOB '{TRIGGER}_*'),
  (SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'
     AND name NOT IN ({_UNTRACKED_SQL})),
  (SELECT max(id) FROM {POLICY_VERSIONS})
"""


@dataclass(frozen=True)
class Reading:
    version: int
    trusted: bool  # every table has its triggers, enabled
    policy_version: int  # the latest change to who may do what (0 for none)


def _dialect(connection: BaseDBAsyncClient) -> str:
    return connection.capabilities.dialect


async def read() -> Reading:
    """The counter now, and whether every write is counted: one statement."""
    connection = connections.get("default")
    postgres = _dialect(connection) == "postgres"
    _, rows = await connection.execute_query(_PG_READ if postgres else _SQLITE_READ)
    version, triggers, tables, policy_version = rows[0][0], rows[0][1], rows[0][2], rows[0][3]
    per_table = 2 if postgres else len(_SQLITE_EVENTS)
    trusted = version is not None and triggers == per_table * tables
    return Reading(int(version or 0), trusted, int(policy_version or 0))


async def version() -> int:
    return (await read()).version


async def _all_tables(connection: BaseDBAsyncClient) -> set[str]:
    if _dialect(connection) == "postgres":
        sql = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    _, rows = await connection.execute_query(sql)
    return {row[0] for row in rows}


async def _tracked(connection: BaseDBAsyncClient) -> set[str]:
    """The tables whose every write is counted."""
    if _dialect(connection) == "postgres":
        _, rows = await connection.execute_query(
            "SELECT r.relname FROM pg_trigger t JOIN pg_class r ON r.oid = t.tgrelid"
            " JOIN pg_namespace n ON n.oid = r.relnamespace"
            f" WHERE t.tgname IN ('{TRIGGER}', '{TRUNCATE_TRIGGER}') AND t.tgenabled = 'A'"
            " AND n.nspname = current_schema() GROUP BY r.relname HAVING count(*) = 2"
        )
        return {row[0] for row in rows}
    _, rows = await connection.execute_query(
        f"SELECT tbl_name, count(*) FROM sqlite_master WHERE type = 'trigger' AND name GLOB '{TRIGGER}_*'"
        " GROUP BY tbl_name"
    )
    return {row[0] for row in rows if row[1] == len(_SQLITE_EVENTS)}


async def install(connection: BaseDBAsyncClient | None = None) -> list[str]:
    """Create the counter and the triggers of every table that lacks them; returns the
    tables it started to track. Idempotent: `greenlight migrate` runs it after every
    migration, so tables that later migrations add are tracked too. On PostgreSQL it runs
    in one transaction under an advisory lock, so instances starting together do not
    trip over each other."""
    connection = connection or connections.get("default")
    if _dialect(connection) != "postgres":
        return await _install(connection, postgres=False)
    async with in_transaction(connection.connection_name) as transaction:
        await transaction.execute_query("SELECT pg_advisory_xact_lock($1)", [INSTALL_LOCK])
        return await _install(transaction, postgres=True)


async def _install(connection: BaseDBAsyncClient, *, postgres: bool) -> list[str]:
    await connection.execute_script(
        f"CREATE TABLE IF NOT EXISTS {COUNTER} (id INT PRIMARY KEY, version BIGINT NOT NULL);"
        f" INSERT INTO {COUNTER} (id, version) SELECT 1, 1"
        f" WHERE NOT EXISTS (SELECT 1 FROM {COUNTER} WHERE id = 1);"
    )
    if postgres:
        await connection.execute_script(_PG_FUNCTION)
    added = sorted(await _all_tables(connection) - UNTRACKED - await _tracked(connection))
    for table in added:
        if postgres:
            await connection.execute_script(
                f'DROP TRIGGER IF EXISTS {TRIGGER} ON "{table}";'
                f' DROP TRIGGER IF EXISTS {TRUNCATE_TRIGGER} ON "{table}";'
                f' CREATE CONSTRAINT TRIGGER {TRIGGER} AFTER INSERT OR UPDATE OR DELETE ON "{table}"'
                f" DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {TRIGGER}();"
                f' CREATE TRIGGER {TRUNCATE_TRIGGER} AFTER TRUNCATE ON "{table}"'
                f" FOR EACH STATEMENT EXECUTE FUNCTION {TRIGGER}();"
                f' ALTER TABLE "{table}" ENABLE ALWAYS TRIGGER {TRIGGER};'
                f' ALTER TABLE "{table}" ENABLE ALWAYS TRIGGER {TRUNCATE_TRIGGER};'
            )
            continue
        for event in _SQLITE_EVENTS:
            name = f"{TRIGGER}_{table}_{event.lower()}"
            await connection.execute_script(
                f'DROP TRIGGER IF EXISTS "{name}";'
                f' CREATE TRIGGER "{name}" AFTER {event} ON "{table}"'
                f" BEGIN UPDATE {COUNTER} SET version = version + 1 WHERE id = 1; END;"
            )
    if added:  # what the tables held while untracked may differ from any answer kept
        await connection.execute_script(f"UPDATE {COUNTER} SET version = version + 1 WHERE id = 1;")
    return added


async def untracked_tables(connection: BaseDBAsyncClient | None = None) -> list[str]:
    """Tables written without counting (a database migrated without `install`, a trigger
    dropped or disabled)."""
    connection = connection or connections.get("default")
    tables = await _all_tables(connection)
    if COUNTER not in tables:
        return sorted(tables - UNTRACKED)
    return sorted(tables - UNTRACKED - await _tracked(connection))
