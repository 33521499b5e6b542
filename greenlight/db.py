"""Connecting to the database and applying migrations."""

from __future__ import annotations

import os
from typing import Any

from tortoise import Tortoise, connections
from tortoise.backends.base.config_generator import expand_db_url
from tortoise.backends.base.executor import EXECUTOR_CACHE
from tortoise.migrations.api import migrate as tortoise_migrate


async def _release(connection) -> None:
    """What a PostgreSQL connection needs before going back to the pool, beyond what asyncpg
    always does (roll back an open transaction, drop listeners): nothing.

    asyncpg's default also sends `RESET ALL; UNLISTEN *; CLOSE ALL; SELECT
    pg_advisory_unlock_all()` on every release, and Tortoise takes a connection from the
    pool for each statement outside a transaction: a second round trip per statement.
    Greenlight sets no session state, holds advisory locks only for a transaction
    (pg_advisory_xact_lock) and LISTENs on a connection of its own (greenlight.events).
    """


SQLITE_CACHE_KIB = 65_536


def tortoise_config(database_url: str) -> dict[str, Any]:
    if database_url.startswith("postgresql://"):
        database_url = "postgres://" + database_url.removeprefix("postgresql://")
    connection: str | dict[str, Any] = database_url
    if database_url.startswith("postgres://"):
        connection = expand_db_url(database_url)
        connection["credentials"]["reset"] = _release
    elif database_url.startswith("sqlite://"):
        connection = expand_db_url(database_url)
        connection["engine"] = "greenlight.sqlite"  # statements on the event loop's thread
        # SQLite keeps 2 MiB of pages by default; the one connection a process has may keep
        # SQLITE_CACHE_KIB of them (a `?cache_size=` in the URL wins).
        connection["credentials"].setdefault("cache_size", -SQLITE_CACHE_KIB)
    return {
        "connections": {"default": connection},
        "apps": {
            "models": {
                "models": ["greenlight.models"],
                "migrations": "greenlight.migrations",
                "default_connection": "default",
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


# Used by Tortoise's own CLI (`tortoise makemigrations`), see pyproject.toml.
TORTOISE_ORM = tortoise_config(os.environ.get("GREENLIGHT_DATABASE_URL", "sqlite://:memory:"))


async def migrate(database_url: str) -> None:
    """Apply every pending migration, then leave the connections closed."""
    try:
        await tortoise_migrate(config=tortoise_config(database_url))
    finally:
        await Tortoise.close_connections()


async def connect(database_url: str) -> None:
    # Tortoise caches SQL per connection name, not per dialect: a process that moves
    # between SQLite and PostgreSQL (the test suite does) must start from a clean cache.
    EXECUTOR_CACHE.clear()
    await Tortoise.init(config=tortoise_config(database_url), _enable_global_fallback=True)


async def close() -> None:
    await Tortoise.close_connections()


def is_postgres() -> bool:
    return connections.get("default").capabilities.dialect == "postgres"


async def ping() -> bool:
    """Whether the database answers a trivial query right now."""
    try:
        await connections.get("default").execute_query("SELECT 1")
    except Exception:
        return False
    return True


def is_unavailable(error: BaseException) -> bool:
    """Whether an error means the database cannot be reached right now (rather than a bug
    or a refused statement): the server answers UNAVAILABLE and recovers by itself."""
    import asyncpg
    from tortoise.exceptions import DBConnectionError

    unreachable = (
        ConnectionError,
        TimeoutError,
        DBConnectionError,
        asyncpg.exceptions.PostgresConnectionError,
        asyncpg.exceptions.InterfaceError,
        asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, crash shutdown
        asyncpg.exceptions.CannotConnectNowError,
    )
    seen = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, unreachable) or _is_dropped_while_idle(current):
            return True
        if isinstance(current, OSError) and current.errno is not None:
            return True
        current = current.__cause__ or current.__context__
    return False


def _is_dropped_while_idle(error: BaseException) -> bool:
    """A pooled PostgreSQL connection whose server ended it while it sat idle (failover,
    pg_terminate_backend) gets the server's FATAL message before the socket's end. asyncpg
    meets a message it expects no answer for and marks the protocol busy; until the end of
    the socket arrives, moments later, a statement on it fails with this InternalClientError
    instead of ConnectionDoesNotExistError. It is the same dropped connection: the pool
    replaces it once closed."""
    import asyncpg

    return isinstance(error, asyncpg.exceptions.InternalClientError) and "another operation" in str(error)
