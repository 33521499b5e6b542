"""Tortoise's SQLite client, with statements run on the event loop's own thread.

aiosqlite hands every call to a thread of its own and wakes the event loop with the
result: two thread switches per statement, which cost more than the indexed statements
Greenlight sends (tens of microseconds each), while the process's one connection stays
locked for the transaction in progress. Here a call runs at once, on the calling thread;
only a COMMIT that has something to write still goes to aiosqlite's thread, since it waits
for the disk (SQLite's default `synchronous=FULL`: a committed change survives a power
loss), and other requests' Python work goes on meanwhile; calls made before it has run
wait behind it on that thread.

The connection is still used by one statement at a time: Tortoise's lock serialises them,
and a transaction holds it from BEGIN to COMMIT. Used through the engine
`greenlight.sqlite` (greenlight.db.tortoise_config).

This module is the one place that uses private parts of aiosqlite and of Tortoise's
SQLite client (pinned: aiosqlite 0.22.1, tortoise-orm 1.1.9). `check()` looks for them
once, at start-up: when one is missing, greenlight.db uses Tortoise's own SQLite client
instead (statements on aiosqlite's thread: slower, the same answers) and logs it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import sqlite3
from functools import partial
from pathlib import Path
from typing import Any

import aiosqlite
from tortoise.backends.base.client import ConnectionWrapper
from tortoise.backends.sqlite import client as tortoise_sqlite
from tortoise.connection import get_connections


class InlineConnection(aiosqlite.Connection):
    """Calls run at once, unless a call sent to aiosqlite's thread has not finished there:
    then they queue behind it on that thread, so the order of calls is always kept (a
    request cancelled while its COMMIT waits for the disk releases Tortoise's lock, and the
    next statement must not run before that COMMIT, inside its transaction)."""

    _on_thread: asyncio.Future | None = None  # the last call sent to the thread

    async def _execute(self, fn, *args, **kwargs):
        connection = self._connection
        if not self._running or connection is None:
            raise ValueError("Connection closed")
        behind = self._on_thread is not None and not self._on_thread.done()
        if not behind and not (fn == connection.commit and connection.in_transaction):
            return fn(*args, **kwargs)
        # Done only once the thread has run it: a cancelled caller does not cut the queue.
        done = asyncio.get_running_loop().create_future()
        self._tx.put_nowait((done, partial(fn, *args, **kwargs)))
        self._on_thread = done
        return await asyncio.shield(done)


def connect(database: str, **kwargs: Any) -> InlineConnection:
    """`aiosqlite.connect`, for a connection used from the event loop's thread and, for
    COMMIT, from aiosqlite's: never at the same time (see above)."""
    kwargs["check_same_thread"] = False

    def connector() -> sqlite3.Connection:
        return sqlite3.connect(database, **kwargs)

    return InlineConnection(connector, iter_chunk_size=64)


class _OpeningReleases(ConnectionWrapper):
    """Tortoise takes the connection's lock, then opens the connection; when opening fails
    (a folder that does not exist, a read-only file) its lock stayed taken and every later
    statement waited for it for ever. Here a failed opening gives the lock back and raises."""

    async def __aenter__(self):
        await self._lock.acquire()
        try:
            await self.ensure_connection()
        except BaseException:
            self._lock.release()
            raise
        return self.connection


class _TransactionOpeningReleases(tortoise_sqlite.SqliteTransactionContext):
    """The same for a transaction's first statement (see _OpeningReleases)."""

    async def __aenter__(self):
        await self._trxlock.acquire()
        try:
            await self.ensure_connection()
            self.token = get_connections().set(self.connection_name, self.connection)
        except BaseException:
            self._trxlock.release()
            raise
        try:
            await self.connection.begin()
        except BaseException:
            get_connections().reset(self.token)
            self._trxlock.release()
            raise
        return self.connection


class SqliteClient(tortoise_sqlite.SqliteClient):
    async def create_connection(self, with_db: bool) -> None:
        if not self._connection:
            connection = await connect(self.filename, isolation_level=None)
            try:
                connection._conn.row_factory = sqlite3.Row
                for pragma, value in self.pragmas.items():
                    cursor = await connection.execute(f"PRAGMA {pragma}={value}")
                    await cursor.close()
            except BaseException:
                with contextlib.suppress(Exception):
                    await connection.close()
                raise
            self._connection = connection
            await self._post_connect()

    def acquire_connection(self) -> ConnectionWrapper:
        return _OpeningReleases(self._lock, self)

    def _in_transaction(self):
        return _TransactionOpeningReleases(tortoise_sqlite.SqliteTransactionWrapper(self), self._lock)


client_class = SqliteClient

ENGINE = "greenlight.sqlite"
FALLBACK_ENGINE = "tortoise.backends.sqlite"

log = logging.getLogger("greenlight.sqlite")

# What the classes above use of the libraries' private parts, by the class that has them
# (an attribute set in __init__ is looked for in its code).
EXPECTED: dict[type, tuple[str, ...]] = {
    aiosqlite.Connection: ("_execute", "_connection", "_running", "_tx", "_conn"),
    ConnectionWrapper: ("_lock", "ensure_connection", "connection"),
    tortoise_sqlite.SqliteTransactionContext: (
        "_trxlock",
        "ensure_connection",
        "connection_name",
        "connection",
    ),
    tortoise_sqlite.SqliteClient: (
        "_connection",
        "_lock",
        "_post_connect",
        "_in_transaction",
        "pragmas",
        "filename",
    ),
}

_engine: str | None = None


def _missing() -> list[str]:
    missing = []
    for cls, names in EXPECTED.items():
        code = getattr(cls.__init__, "__code__", None)
        init_names = set(code.co_names) if code is not None else set()
        missing.extend(
            f"{cls.__qualname__}.{name}"
            for name in names
            if not hasattr(cls, name) and name not in init_names
        )
    return missing


def engine() -> str:
    """The Tortoise engine for SQLite: this module's, or Tortoise's own when a private part
    this module uses is missing (checked once, logged once)."""
    global _engine
    if _engine is None:
        missing = _missing()
        _engine = ENGINE if not missing else FALLBACK_ENGINE
        if missing:
            log.warning(
                "aiosqlite or Tortoise lacks %s: SQLite runs through Tortoise's own client "
                "(statements on aiosqlite's thread: slower, the same answers)",
                ", ".join(missing),
            )
    return _engine


class AlreadyServed(RuntimeError):
    """Another live process serves this SQLite file."""


_held: list[int] = []  # the lock files this process holds, open until it exits


def database_path(database_url: str) -> Path | None:
    """The file of a `sqlite://` URL; None for an in-memory database."""
    path = database_url.removeprefix("sqlite://").split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return Path(path)


def hold_exclusively(database: Path) -> Path:
    """One serving process per SQLite file: a second one would share the file's write lock
    and see its writes fail "database is locked". The lock is an flock on
    `<database>.lock`, held until this process exits however it exits, so a file left
    behind by a killed process does not hold anyone off. Returns the lock file's path;
    raises AlreadyServed naming the holder when another live process holds it."""
    lock_path = database.with_name(database.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise AlreadyServed(
            f"{database} is already served by process {holder} (lock {lock_path}); "
            "SQLite takes one server process: stop that one, or use PostgreSQL for several"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    _held.append(fd)
    return lock_path


def unusable(database: Path) -> str | None:
    """Why this process could not write the SQLite file, or None. Checked before opening it:
    SQLite opens a file it may not write read-only, and a server on it would fail at its
    first write rather than at start. The folder must be writable too (SQLite keeps its
    journal, `-wal` and `-shm` files beside the database)."""
    if not database.parent.is_dir():
        return f"the folder of the SQLite database {database} does not exist: create it, or fix GREENLIGHT_DATABASE_URL"
    writable = "it and its folder must be writable by the user running greenlight"
    if database.exists():
        try:
            os.close(os.open(database, os.O_RDWR))
        except OSError as error:
            return f"cannot write the SQLite database {database} ({error.strerror}): {writable}"
    if not os.access(database.parent, os.W_OK | os.X_OK):
        return f"cannot write in the folder of the SQLite database {database}: {writable}"
    return None
