"""In-process publication of state changes to live subscribers (R25).

Workflow functions announce changes through `greenlight.workflow.tx`, which hands them
here only once their transaction has committed. Subscribers get every event and decide
themselves (through the policy) what their caller may see.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    kind: str  # "ApprovalRequest" or "Deployment"
    id: int


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
