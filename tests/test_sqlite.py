"""SQLite statements run on the event loop's thread (greenlight.sqlite), except a
COMMIT with something to write, which waits for the disk on aiosqlite's thread."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time

import pytest
from tortoise import connections

from greenlight.models import Application
from greenlight.sqlite import InlineConnection
from greenlight.tx import transaction


@pytest.fixture
async def traced(database, database_url):
    """(statement, thread id) for every statement SQLite runs, from here on."""
    if database != "sqlite":
        pytest.skip("SQLite only")
    client = connections.get("default")
    await client.create_connection(with_db=True)
    connection = client._connection
    assert isinstance(connection, InlineConnection)
    seen: list[tuple[str, int]] = []
    connection._conn.set_trace_callback(lambda sql: seen.append((sql, threading.get_ident())))
    yield seen
    connection._conn.set_trace_callback(None)


async def test_statements_run_on_the_event_loops_thread_and_commits_on_aiosqlites(traced, database_url):
    here = threading.get_ident()
    await Application.filter(name="nothing").count()
    async with transaction():
        await Application.create(name="inline")
    statements = [(sql.split()[0].upper(), thread) for sql, thread in traced]
    kinds = [kind for kind, _ in statements]  # SQLite reports the counting triggers' writes too
    assert kinds[:3] == ["SELECT", "BEGIN", "INSERT"] and kinds[-1] == "COMMIT", traced
    assert kinds.count("COMMIT") == 1
    assert all(thread == here for kind, thread in statements if kind != "COMMIT")
    (commit_thread,) = [thread for kind, thread in statements if kind == "COMMIT"]
    assert commit_thread != here  # the disk is waited for off the event loop
    # committed: another connection sees it
    other = sqlite3.connect(database_url.removeprefix("sqlite://"))
    try:
        assert other.execute("SELECT count(*) FROM applications WHERE name = 'inline'").fetchone() == (1,)
    finally:
        other.close()


async def test_concurrent_transactions_and_reads_all_land(traced):
    """Many requests at once on the one connection: every transaction commits whole."""

    async def write(n: int) -> None:
        async with transaction():
            await Application.create(name=f"app-{n}")
            await asyncio.sleep(0)  # let the others try to cut in
            await Application.filter(name=f"app-{n}").update(name=f"app-{n}-done")

    async def read() -> int:
        return await Application.all().count()

    results = await asyncio.gather(*(write(n) for n in range(40)), *(read() for _ in range(40)))
    assert all(isinstance(count, int) for count in results[40:])
    names = set(await Application.filter(name__startswith="app-").values_list("name", flat=True))
    assert names == {f"app-{n}-done" for n in range(40)}


async def test_a_request_cancelled_while_its_commit_waits_for_the_disk_cuts_no_queue(traced, database_url):
    """A client goes away while its COMMIT waits on aiosqlite's thread: Tortoise releases
    its lock at once, but the next statement still runs after that COMMIT, outside its
    transaction, and the write is kept (found by review: it ran inline, inside it)."""
    client = connections.get("default")
    connection = client._connection
    queued = asyncio.Event()

    async def write() -> None:
        async with transaction():
            await Application.create(name="committing")
            connection._tx.put_nowait((None, lambda: time.sleep(0.3)))  # a slow disk
            queued.set()

    writer = asyncio.create_task(write())
    await queued.wait()
    await asyncio.sleep(0.05)  # its COMMIT waits behind the slow disk
    writer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await writer
    assert await Application.filter(name="committing").count() == 1
    assert not connection._conn.in_transaction
    other = sqlite3.connect(database_url.removeprefix("sqlite://"))
    try:
        assert other.execute("SELECT count(*) FROM applications WHERE name = 'committing'").fetchone() == (1,)
    finally:
        other.close()
