"""Connecting to the database and applying migrations."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from dataclasses import dataclass
from typing import Any

from tortoise import Tortoise, connections
from tortoise.backends.base.config_generator import expand_db_url
from tortoise.backends.base.executor import EXECUTOR_CACHE
from tortoise.migrations.api import migrate as tortoise_migrate
from tortoise.migrations.executor import MigrationExecutor

from greenlight import internals, sqlite


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


@dataclass(frozen=True)
class Timeouts:
    """How long a PostgreSQL connection may take to open, and one statement to answer
    (GREENLIGHT_DATABASE_CONNECT_TIMEOUT_SECONDS, _STATEMENT_TIMEOUT_SECONDS): a database
    behind a partition (packets dropped, no reset) fails requests UNAVAILABLE in bounded
    time instead of holding them for the whole outage."""

    connect: float = 5.0
    statement: float = 15.0
    ready: float = 2.0  # GREENLIGHT_READY_TIMEOUT_SECONDS: how long ping() waits


_timeouts = Timeouts()


def configure(settings) -> None:
    global _timeouts
    _timeouts = Timeouts(
        settings.database_connect_timeout_seconds,
        settings.database_statement_timeout_seconds,
        settings.ready_timeout_seconds,
    )


def _postgres_url(database_url: str) -> str:
    if database_url.startswith("postgresql://"):
        return "postgres://" + database_url.removeprefix("postgresql://")
    return database_url


def tortoise_config(database_url: str) -> dict[str, Any]:
    database_url = _postgres_url(database_url)
    connection: str | dict[str, Any] = database_url
    if database_url.startswith("postgres://"):
        connection = expand_db_url(database_url)
        connection["credentials"]["reset"] = _release
        connection["credentials"].setdefault("timeout", _timeouts.connect)
        connection["credentials"].setdefault("command_timeout", _timeouts.statement)
    elif database_url.startswith("sqlite://"):
        connection = expand_db_url(database_url)
        connection["engine"] = sqlite.engine()  # statements on the event loop's thread
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


async def pending_migrations(database_url: str) -> list[str]:
    """The migrations not yet applied to this database, in the order they would run
    ("models.0003_policy_versions"); [] when its schema is current. Only reads."""
    config = tortoise_config(database_url)
    await Tortoise.init(config=config, init_connections=False)
    try:
        executor = MigrationExecutor(connections.get("default"), config["apps"])
        steps = await executor.plan()
        return [f"{s.migration.app_label}.{s.migration.name}" for s in steps if not s.backward]
    finally:
        await Tortoise.close_connections()


async def connect(database_url: str) -> None:
    # Tortoise caches SQL per connection name, not per dialect: a process that moves
    # between SQLite and PostgreSQL (the test suite does) must start from a clean cache.
    EXECUTOR_CACHE.clear()
    internals.check()  # the ORM's private parts greenlight uses, looked for once
    await Tortoise.init(config=tortoise_config(database_url), _enable_global_fallback=True)


async def close() -> None:
    await Tortoise.close_connections()


async def ping() -> bool:
    """Whether the database answers a trivial query right now, within
    GREENLIGHT_READY_TIMEOUT_SECONDS: behind a partition a query gets no answer at all, and
    readiness must say so quickly."""
    try:
        async with asyncio.timeout(_timeouts.ready):
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
        if isinstance(current, unreachable) or _is_dropped_while_idle(current) or _is_locked(current):
            return True
        if isinstance(current, OSError) and current.errno is not None:
            return True
        current = current.__cause__ or current.__context__
    return False


def _is_locked(error: BaseException) -> bool:
    """SQLite's busy timeout ran out while another process held the file's write lock: the
    database cannot be used right now, as when a server is unreachable."""
    return isinstance(error, sqlite3.OperationalError) and str(error).startswith(
        ("database is locked", "database table is locked")
    )


def _is_dropped_while_idle(error: BaseException) -> bool:
    """A pooled PostgreSQL connection whose server ended it while it sat idle (failover,
    pg_terminate_backend) gets the server's FATAL message before the socket's end. asyncpg
    meets a message it expects no answer for and marks the protocol busy; until the end of
    the socket arrives, moments later, a statement on it fails with this InternalClientError
    instead of ConnectionDoesNotExistError. It is the same dropped connection: the pool
    replaces it once closed."""
    import asyncpg

    return isinstance(error, asyncpg.exceptions.InternalClientError) and "another operation" in str(error)


def start_problem(error: BaseException, database_url: str) -> str | None:
    """One line saying what is wrong with the database at start, and what to do; None when
    the error is not one of reaching or opening the database (a bug: the traceback stays)."""
    import asyncpg

    from greenlight.sqlite import database_path

    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__

    def first(kind):
        return next((e for e in chain if isinstance(e, kind)), None)

    if database_url.startswith("sqlite://"):
        path = database_path(database_url)
        opened = first(sqlite3.Error)
        if path is None or opened is None:
            return None
        text = str(opened)
        if not path.parent.is_dir():
            return f"the folder of the SQLite database {path} does not exist: create it, or fix GREENLIGHT_DATABASE_URL"
        if "readonly" in text or "read-only" in text or "unable to open" in text:
            return (
                f"cannot write the SQLite database {path}: it and its folder must be writable "
                "by the user running greenlight"
            )
        if _is_locked(opened):
            return f"the SQLite database {path} is locked by another process: stop it, then start again"
        return f"cannot use the SQLite database {path}: {text}"
    credentials = expand_db_url(_postgres_url(database_url))["credentials"]
    where = f"{credentials.get('host')}:{credentials.get('port')}"
    name, user = credentials.get("database"), credentials.get("user")
    if first(asyncpg.exceptions.InvalidCatalogNameError) is not None:
        return (
            f'PostgreSQL database "{name}" does not exist on {where}: create it '
            f"(createdb -h {credentials.get('host')} -p {credentials.get('port')} -U {user} {name}, "
            f'or CREATE DATABASE "{name}"), then start again'
        )
    refused_user = first(asyncpg.exceptions.InvalidAuthorizationSpecificationError)
    if refused_user is not None:  # a wrong password, an unknown role, a pg_hba.conf rule
        return (
            f'PostgreSQL on {where} refused user "{user}" ({refused_user}): check the user and '
            "password in GREENLIGHT_DATABASE_URL and the server's pg_hba.conf"
        )
    if first(ConnectionRefusedError) is not None:
        return f"nothing is listening on {where}: is PostgreSQL running there, and is GREENLIGHT_DATABASE_URL right?"
    if first(TimeoutError) is not None:
        return (
            f"PostgreSQL on {where} did not answer within {_timeouts.connect:g} s: is the host "
            "reachable (network, firewall)? (GREENLIGHT_DATABASE_CONNECT_TIMEOUT_SECONDS)"
        )
    resolving = first(OSError)
    if resolving is not None and resolving.__class__.__name__ == "gaierror":
        return (
            f"cannot resolve the PostgreSQL host {credentials.get('host')!r}: check GREENLIGHT_DATABASE_URL"
        )
    refused = first(asyncpg.exceptions.PostgresError)
    if refused is not None:
        return f"PostgreSQL on {where} refused: {refused}"
    if resolving is not None:
        return f"cannot reach PostgreSQL on {where}: {resolving.strerror or resolving}"
    return None
