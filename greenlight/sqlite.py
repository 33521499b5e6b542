"""Tortoise's SQLite client, with statements run on the event loop's own thread (issue 8).

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
"""

from __future__ import annotations

import asyncio
import sqlite3
from functools import partial
from typing import Any

import aiosqlite
from tortoise.backends.sqlite import client as tortoise_sqlite


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


class SqliteClient(tortoise_sqlite.SqliteClient):
    async def create_connection(self, with_db: bool) -> None:
        if not self._connection:
            self._connection = await connect(self.filename, isolation_level=None)
            self._connection._conn.row_factory = sqlite3.Row
            for pragma, value in self.pragmas.items():
                cursor = await self._connection.execute(f"PRAGMA {pragma}={value}")
                await cursor.close()
            await self._post_connect()


client_class = SqliteClient
