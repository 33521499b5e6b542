"""A counter of committed changes to the database, kept by the database itself.

Every table but the counter's own (and Tortoise's list of applied migrations) has
triggers that add one to `change_counter.version` when a row is inserted, updated or
deleted, in the writing transaction, whoever writes: a mutation, a background job, another
process, an administrator's psql. A reader that reads the version before it reads anything
else knows its answer is no older than that version, and still true while the version has
not moved (greenlight.cache.responses).

On PostgreSQL the triggers are deferred to commit and count once per transaction: the
counter's row is locked only while a transaction commits, so writers do not queue on it
while they work, nor deadlock through it (it is the last lock a transaction takes).
"""

from __future__ import annotations

from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

COUNTER = "change_counter"
UNTRACKED = frozenset({COUNTER, "tortoise_migrations"})
TRIGGER = "greenlight_count_changes"
INSTALL_LOCK = 0x67_6C_63_63  # "glcc": one installer at a time

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


def _dialect(connection: BaseDBAsyncClient) -> str:
    return connection.capabilities.dialect


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
            "SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE t.tgname = $1 AND n.nspname = current_schema()",
            [TRIGGER],
        )
        return {row[0] for row in rows}
    _, rows = await connection.execute_query(
        "SELECT tbl_name, count(*) FROM sqlite_master WHERE type = 'trigger' AND name LIKE ?"
        " GROUP BY tbl_name",
        [f"{TRIGGER}_%"],
    )
    return {row[0] for row in rows if row[1] == 3}


async def install(connection: BaseDBAsyncClient | None = None) -> list[str]:
    """Create the counter and the triggers of every table that has none yet; returns the
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
                f' CREATE CONSTRAINT TRIGGER {TRIGGER} AFTER INSERT OR UPDATE OR DELETE ON "{table}"'
                f" DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {TRIGGER}();"
            )
            continue
        for event in ("INSERT", "UPDATE", "DELETE"):
            name = f"{TRIGGER}_{table}_{event.lower()}"
            await connection.execute_script(
                f'DROP TRIGGER IF EXISTS "{name}";'
                f' CREATE TRIGGER "{name}" AFTER {event} ON "{table}"'
                f" BEGIN UPDATE {COUNTER} SET version = version + 1 WHERE id = 1; END;"
            )
    return added


async def untracked_tables(connection: BaseDBAsyncClient | None = None) -> list[str]:
    """Tables written without counting (a database migrated without `install`): nothing
    may be cached while there are any."""
    connection = connection or connections.get("default")
    tables = await _all_tables(connection)
    if COUNTER not in tables:
        return sorted(tables - UNTRACKED)
    return sorted(tables - UNTRACKED - await _tracked(connection))


async def version() -> int:
    """How many transactions have changed the database (on SQLite: rows): one indexed read."""
    _, rows = await connections.get("default").execute_query(f"SELECT version FROM {COUNTER} WHERE id = 1")
    return int(rows[0][0])
