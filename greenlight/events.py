"""Publication of state changes to live subscribers (R25), within and across processes.

Workflow functions announce changes through `greenlight.tx`. Within a process,
events reach the local bus once their transaction has committed. On PostgreSQL each
event is also sent with NOTIFY inside the transaction (so it is delivered on commit, or
never), and every process LISTENs and hands events from other processes to its own bus.
Subscribers get every event and decide themselves (through the policy) what their caller
may see.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

log = logging.getLogger("greenlight.events")

CHANNEL = "greenlight_events"
PROCESS_ID = uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class Event:
    kind: str  # "ApprovalRequest" or "Deployment"
    id: int

    def encode(self) -> str:
        return f"{PROCESS_ID}|{self.kind}|{self.id}"


def decode(payload: str) -> tuple[str, Event] | None:
    try:
        origin, kind, object_id = payload.split("|")
        return origin, Event(kind, int(object_id))
    except ValueError:
        return None


class EventBus:
    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[Event]] = set()

    def publish(self, event: Event) -> None:
        for queue in list(self._queues):
            queue.put_nowait(event)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[Event]]:
        queue: asyncio.Queue[Event] = asyncio.Queue()
        self._queues.add(queue)
        try:
            yield queue
        finally:
            self._queues.discard(queue)


bus = EventBus()


def _on_notification(connection, pid, channel, payload: str) -> None:
    decoded = decode(payload)
    if decoded is None:
        log.warning("ignoring malformed event %r", payload)
        return
    origin, event = decoded
    if origin != PROCESS_ID:  # our own events reached the bus at commit already
        bus.publish(event)


async def listen_postgres(database_url: str, retry_seconds: float = 1.0) -> None:
    """LISTEN for other processes' events until cancelled, reconnecting when cut off."""
    url = database_url.replace("postgres://", "postgresql://", 1)
    while True:
        connection = None
        try:
            connection = await asyncpg.connect(url)
            await connection.add_listener(CHANNEL, _on_notification)
            while not connection.is_closed():
                await asyncio.sleep(retry_seconds)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.warning("event listener lost its connection (%s); reconnecting", error)
        finally:
            if connection is not None and not connection.is_closed():
                with contextlib.suppress(Exception):
                    await connection.close()
        await asyncio.sleep(retry_seconds)
