"""One transaction per workflow action; events are published only after it commits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar

from tortoise.transactions import in_transaction

from greenlight.events import Event, bus

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
    try:
        async with in_transaction():
            yield
    finally:
        _pending.reset(token)
    for event in dict.fromkeys(events):
        bus.publish(event)


def announce(kind: str, object_id: int) -> None:
    """Queue an event for subscribers, to go out when the current transaction commits."""
    events = _pending.get()
    if events is None:
        bus.publish(Event(kind, object_id))
    else:
        events.append(Event(kind, object_id))
