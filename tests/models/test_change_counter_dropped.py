"""Migration 0004: the change counter's triggers and table go with the response cache.

A database migrated by an earlier version has a trigger on every table that moves
`change_counter` on every write (installed by `greenlight migrate` itself, after the
migrations). Migrating to this version drops them all, and writes go on working."""

from __future__ import annotations

from tortoise import connections

from greenlight import db
from greenlight.models import Application

TRIGGER = "greenlight_count_changes"


async def _install_old_counter(postgres: bool) -> None:
    """What earlier versions' `greenlight migrate` left in the database, for two tables."""
    conn = connections.get("default")
    await conn.execute_script(
        "CREATE TABLE change_counter (id INT PRIMARY KEY, version BIGINT NOT NULL);"
        " INSERT INTO change_counter (id, version) VALUES (1, 1);"
    )
    for table in ("applications", "images"):
        if postgres:
            await conn.execute_script(
                f"CREATE OR REPLACE FUNCTION {TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $$"
                f" BEGIN UPDATE change_counter SET version = version + 1 WHERE id = 1; RETURN NULL; END $$;"
                f' CREATE CONSTRAINT TRIGGER {TRIGGER} AFTER INSERT OR UPDATE OR DELETE ON "{table}"'
                f" DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {TRIGGER}();"
                f' CREATE TRIGGER greenlight_count_truncates AFTER TRUNCATE ON "{table}"'
                f" FOR EACH STATEMENT EXECUTE FUNCTION {TRIGGER}();"
            )
            continue
        for event in ("INSERT", "UPDATE", "DELETE"):
            await conn.execute_script(
                f'CREATE TRIGGER "{TRIGGER}_{table}_{event.lower()}" AFTER {event} ON "{table}"'
                " BEGIN UPDATE change_counter SET version = version + 1 WHERE id = 1; END;"
            )
    await conn.execute_script("DELETE FROM tortoise_migrations WHERE name = '0004_drop_change_counter'")


async def _leftovers(postgres: bool) -> list[str]:
    conn = connections.get("default")
    if postgres:
        _, rows = await conn.execute_query(
            "SELECT tgname FROM pg_trigger WHERE tgname LIKE 'greenlight_count_%'"
            " UNION ALL SELECT tablename FROM pg_tables WHERE tablename = 'change_counter'"
            " UNION ALL SELECT proname FROM pg_proc WHERE proname = 'greenlight_count_changes'"
        )
    else:
        _, rows = await conn.execute_query(
            "SELECT name FROM sqlite_master WHERE name GLOB 'greenlight_count_*' OR name = 'change_counter'"
        )
    return sorted(row[0] for row in rows)


async def test_migrate_drops_the_change_counter_and_its_triggers(database, database_url):
    postgres = database == "postgres"
    await _install_old_counter(postgres)
    assert await _leftovers(postgres)
    await db.close()
    await db.migrate(database_url)
    await db.connect(database_url)
    assert await _leftovers(postgres) == []
    await Application.create(name="after-migration")
    assert await Application.filter(name="after-migration").exists()
