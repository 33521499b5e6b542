"""One transaction per workflow action; events are published only if it commits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar

from tortoise import connections
from tortoise.transactions import in_transaction

from greenlight import db
from greenlight.errors import OutcomeUnknown
from greenlight.events import CHANNEL, Event, bus

_pending: ContextVar[list[Event] | None] = ContextVar("greenlight_pending_events", default=None)


@asynccontextmanager
async def transaction() -> AsyncIterator[None]:
    outer = _pending.get()
    if outer is not None:  # nested: the outermost transaction publishes
        async with in_transaction():
            yield
        return
    events: list[Event] = []
    token = _pending.set(events)
    committing = False
    try:
        async with in_transaction():
            yield
            committing = True
    except Exception as error:
        if committing and _may_have_committed(error):
            raise OutcomeUnknown(
                "the connection to the database failed while this change was being committed: "
                "it may or may not have been made; read it back before retrying"
            ) from error
        raise
    finally:
        _pending.reset(token)
    for event in dict.fromkeys(events):
        bus.publish(event)


def _may_have_committed(error: Exception) -> bool:
    """A PostgreSQL COMMIT that failed for want of the connection (cut, timed out) may have
    reached the server and been applied before its answer was lost. SQLite commits in this
    process: a failed COMMIT there changed nothing."""
    return db.is_unavailable(error) and connections.get("default").capabilities.dialect == "postgres"


@asynccontextmanager
async def access_transaction(actor) -> AsyncIterator[None]:
    """transaction() for a change to who may do what (role bindings, memberships, active
    state): once it commits, this process's rules are brought up to date, so the change's
    own answer (say reactivateUser's isSuperAdmin) is already right (R5)."""
    async with transaction():
        yield
    await actor.authorizer.refresh()


async def announce(kind: str, object_id: int) -> None:
    """Queue an event for this process's subscribers, published when the current
    transaction commits; on PostgreSQL also NOTIFY the other processes, delivered by
    PostgreSQL on commit too."""
    event = Event(kind, object_id)
    events = _pending.get()
    if events is None:
        bus.publish(event)
    else:
        events.append(event)
    connection = connections.get("default")
    if connection.capabilities.dialect == "postgres":
        await connection.execute_query("SELECT pg_notify($1, $2)", [CHANNEL, event.encode()])
