"""Whole answers to queries, kept while nothing in the database has changed.

A request reads the change counter (greenlight.cache.changes) before anything else, before
even its credentials. An answer computed afterwards is no older than that version; it is
kept under the user, the query text, the operation name and the variables, and given
again to the same user asking the same thing while the counter still reads the same, for
at most `GREENLIGHT_RESPONSE_CACHE_SECONDS`. Any committed write, by any process, moves the
counter: role bindings, group memberships, deactivations and token revocations included,
so a changed answer is never given from here after the write commits.

Only what does not come from the database can outlive a write-free moment: the clock. A
request passing its expiry (R15), a freeze window opening or closing, a simulated rollout
moving to its next step show in a cached answer at most that many seconds late. Mutations
are never cached and decide everything on the database at their own moment, so a late
answer can only lead to a refusal, never to a wrong "yes". `GREENLIGHT_RESPONSE_CACHE_SECONDS=0`
turns the cache off.

While an answer is being computed, requests asking the same question at the same version
wait for it rather than compute it again, so an answer expiring under load is computed
once, not by every request in flight.

Not cached: mutations, subscriptions, answers with any error, requests whose
authentication wrote (a token's first use in a minute, a JWT's groups, a new user), keys
over MAX_KEY_CHARS, and anything while some table's writes are not counted (checked with
every reading of the counter: a database migrated by other means than `greenlight
migrate`, a trigger dropped or disabled).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from graphql import ExecutionResult as GraphQLExecutionResult
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from greenlight import db
from greenlight.cache import changes
from greenlight.workflow.clock import now

log = logging.getLogger("greenlight.cache")

Key = tuple[int, str, str | None, str]


@dataclass(frozen=True)
class Entry:
    version: int
    expires: datetime  # by the workflow's clock, the one expiries and freezes are read by
    data: dict[str, Any]


@dataclass(frozen=True)
class Stamp:
    """The change counter as a request read it first, and when (by the workflow's clock)."""

    version: int
    at: datetime
    policy_version: int  # read in the same statement (greenlight.policies.Authorizer.refresh)
    generation: int = 0  # the cache's; it moves each time a reading finds writes uncounted


# A key longer than this (a long document, or large variables, used or not) is not kept:
# entries are counted, and a few large keys must not make them hold much memory.
MAX_KEY_CHARS = 16_384
# How long a request waits for another one computing the same answer before computing it too.
WAIT_SECONDS = 10.0


class ResponseCache:
    """One per server process; a bounded store, least recently used out first."""

    def __init__(self, seconds: float, entries: int) -> None:
        self.seconds = seconds
        self.capacity = entries
        self._entries: OrderedDict[Key, Entry] = OrderedDict()
        self._computing: dict[Key, Flight] = {}
        self._generation = 0
        self._trusted = True  # what the last reading said, to log changes only
        self.hits = 0
        self.misses = 0
        self.computed = 0  # answers computed to be kept (one per key and version at a time)

    @property
    def enabled(self) -> bool:
        return self.seconds > 0 and self.capacity > 0

    async def stamp(self) -> Stamp | None:
        """The change counter now, or None when nothing may be cached for this request:
        the cache is off, or some table's writes are not counted (checked on every
        reading, in the same statement)."""
        if not self.enabled:
            return None
        at = now()
        try:
            reading = await changes.read()
        except Exception as error:
            if db.is_unavailable(error):
                raise
            reading = None  # no counter table: a database migrated by other means
        trusted = reading is not None and reading.trusted
        if trusted != self._trusted:
            self._trusted = trusted
            if trusted:
                log.info("response cache on: every table counts its writes")
            else:
                log.warning(
                    "response cache off: some table's writes are not counted; run `greenlight migrate`"
                )
        if not trusted:
            # Nothing computed before can be trusted: neither kept, nor waited for, nor kept
            # once computed (a write uncounted meanwhile leaves the version as it was).
            self._generation += 1
            self._entries.clear()
            for flight in self._computing.values():
                if not flight.answer.done():
                    flight.answer.set_result(None)
            self._computing.clear()
            return None
        return Stamp(reading.version, at, reading.policy_version, self._generation)

    def get(self, key: Key, stamp: Stamp) -> dict[str, Any] | None:
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        if entry.version != stamp.version or entry.expires <= stamp.at:
            del self._entries[key]
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry.data

    def put(self, key: Key, stamp: Stamp, data: dict[str, Any]) -> None:
        """Keep an answer computed after `stamp` was read; it lives `seconds` from then."""
        if not keeps(key) or stamp.generation != self._generation:
            return
        current = self._entries.get(key)
        if current is not None and current.version > stamp.version:
            return  # a newer answer is there already
        self._entries[key] = Entry(stamp.version, stamp.at + timedelta(seconds=self.seconds), data)
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    # One answer computed at a time per key and version: requests asking the same while it
    # is computed wait for it rather than compute it again (a cache stampede when a kept
    # answer expires under load). A waiter's stamp has the same version, and its request
    # began within the answer's lifetime, exactly as for a kept answer.

    def computing(self, key: Key, stamp: Stamp) -> Flight | None:
        """The computation of this key at this version in progress, if a waiter may use it."""
        flight = self._computing.get(key)
        if flight is None or flight.stamp.version != stamp.version:
            return None
        if flight.stamp.generation != stamp.generation:
            return None
        if flight.stamp.at + timedelta(seconds=self.seconds) <= stamp.at:
            return None
        return flight

    def begin(self, key: Key, stamp: Stamp) -> Flight | None:
        """Register this request as computing the key's answer, unless one is already (or
        the key's answers are not kept)."""
        if key in self._computing or not keeps(key):
            return None
        flight = self._computing[key] = Flight(stamp, asyncio.get_running_loop().create_future())
        self.computed += 1
        return flight

    def end(self, key: Key, flight: Flight, data: dict[str, Any] | None) -> None:
        """The computation is over: `data` is its answer, or None if it is not to be shared
        (an error, or the request was cancelled)."""
        if self._computing.get(key) is flight:
            del self._computing[key]
        if not flight.answer.done():
            flight.answer.set_result(data)
        if data is not None:
            self.put(key, flight.stamp, data)


@dataclass(frozen=True)
class Flight:
    stamp: Stamp
    answer: asyncio.Future  # the data, or None


def keeps(key: Key) -> bool:
    """Whether answers under this key are kept (see MAX_KEY_CHARS)."""
    return len(key[1]) + len(key[3]) <= MAX_KEY_CHARS


def key_of(user_id: int, query: str, operation_name: str | None, variables: dict | None) -> Key:
    return (user_id, query, operation_name, json.dumps(variables or {}, sort_keys=True, default=str))


class CachedResponses(SchemaExtension):
    """Answers a query from the cache, or keeps its answer there. Listed after every check
    that may refuse an operation (credentials, limits), so those run on every request."""

    async def on_execute(self) -> AsyncIterator[None]:
        execution = self.execution_context
        context = execution.context
        cache: ResponseCache | None = getattr(context, "response_cache", None)
        stamp: Stamp | None = getattr(context, "change_stamp", None)
        actor = getattr(context, "actor_or_none", None)
        if not (
            cache is not None
            and stamp is not None
            and actor is not None
            and execution.result is None
            and execution.operation_type == OperationType.QUERY
            and execution.query is not None
        ):
            yield
            return
        key = key_of(actor.id, execution.query, execution.operation_name, execution.variables)
        data = cache.get(key, stamp)
        if data is None:
            computing = cache.computing(key, stamp)
            if computing is not None:
                with contextlib.suppress(TimeoutError):  # None, or too long: compute it here
                    data = await asyncio.wait_for(asyncio.shield(computing.answer), WAIT_SECONDS)
        if data is not None:
            execution.result = GraphQLExecutionResult(data=data, errors=None)
            yield
            return
        flight = cache.begin(key, stamp)
        answer = None
        try:
            yield
            result = execution.result
            if result is not None and not result.errors and result.data is not None:
                answer = result.data
        finally:
            if flight is not None:
                cache.end(key, flight, answer)
            elif answer is not None:
                cache.put(key, stamp, answer)
