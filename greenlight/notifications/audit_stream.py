"""The audit log leaving the building: in commit order, from a cursor.

Every outcome writes its AuditEvent in the transaction that made it. Ids are handed out when
a row is inserted, and concurrent transactions commit in another order (id 11 can be
visible before id 10 is), so reading "ids after the last one seen" would skip an event for
good. `sequence` therefore gives each committed event its place in commit order,
`AuditEvent.seq`, once: under the lock of the `sequence` cursor, the events without one get
the next numbers, and anything committing later gets later ones. Read by `seq`, the log is a
list that only grows at its end; `greenlight audit export --since CURSOR` and the audit sink
read it so.

In the transaction that sequences an event, its chat deliveries are written
(greenlight.notifications.chat.fan_out): each event is fanned out exactly once.

The sink (GREENLIGHT_AUDIT_WEBHOOK_URL) POSTs each event, in `seq` order, signed the
Standard Webhooks way with GREENLIGHT_AUDIT_WEBHOOK_SECRET; the next event is not sent
before the receiver accepted the one before it. Its cursor (the `sink` row) keeps how far it
got and the retry state (exponential backoff from GREENLIGHT_WEBHOOK_BACKOFF_SECONDS, up to
300 s, jittered); it never gives up nor skips, so the receiver gets every event, in order,
each with the same `webhook-id` ("AuditEvent:<n>") on every attempt for deduplication.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import timedelta

import httpx

from greenlight import outbox
from greenlight.clock import now
from greenlight.models import AuditCursor, AuditEvent, User
from greenlight.notifications import chat
from greenlight.signing import standard_headers
from greenlight.tx import transaction

log = logging.getLogger("greenlight.audit")

SEQUENCE, SINK = "sequence", "sink"
BATCH = 500


async def sequence(*, wait: bool = False) -> int:
    """Give every committed event without a place its place in commit order, and fan out its
    chat deliveries; returns how many. With `wait` False another process already at it
    makes this round do nothing (it will have done the work)."""
    done = 0
    while True:
        async with transaction():
            cursor = await AuditCursor.filter(name=SEQUENCE).select_for_update(skip_locked=not wait).first()
            if cursor is None:
                return done
            events = await AuditEvent.filter(seq__isnull=True).order_by("id").limit(BATCH)
            if not events:
                return done
            for event in events:
                cursor.position += 1
                event.seq = cursor.position
            await AuditEvent.bulk_update(events, fields=["seq"])
            await cursor.save(update_fields=["position"])
            await chat.fan_out(events)
        done += len(events)
        if len(events) < BATCH:
            return done


def record_of(event: AuditEvent, actor: User | None) -> dict:
    """One event as the export and the sink give it; `cursor` resumes just after it."""
    return {
        "cursor": str(event.seq),
        "id": f"AuditEvent:{event.id}",
        "at": event.at.isoformat(),
        "action": event.action,
        "actor": None if actor is None else {"id": f"User:{actor.id}", "email": actor.email},
        "objectType": event.object_type,
        "objectId": f"{event.object_type}:{event.object_id}",
        "application": event.application,
        "environment": event.environment,
        "before": event.before,
        "after": event.after,
    }


def line_of(record: dict) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


async def _after(position: int, limit: int) -> list[dict]:
    """The records of the first `limit` sequenced events after `position`, in order."""
    events = await AuditEvent.filter(seq__gt=position).order_by("seq").limit(limit)
    actor_ids = {e.actor_id for e in events if e.actor_id is not None}
    actors = {u.id: u for u in await User.filter(id__in=actor_ids)} if actor_ids else {}
    return [record_of(e, actors.get(e.actor_id)) for e in events]


def parse_cursor(text: str | None) -> int:
    """A cursor an export printed (a whole number, 0 or more); None: from the start."""
    if text is None or text == "":
        return 0
    if not text.isdigit():
        raise ValueError(f"--since: {text!r} is not a cursor (a whole number an export printed)")
    return int(text)


async def export(since: int, write: Callable[[str], object]) -> int:
    """Write every event after cursor `since` as JSON lines, in commit order; returns how
    many. Events committed until now are sequenced first, so the export misses none."""
    await sequence(wait=True)
    count, position = 0, since
    while records := await _after(position, BATCH):
        for record in records:
            write(line_of(record) + "\n")
        count += len(records)
        position = int(records[-1]["cursor"])
    return count


# --- the sink ---------------------------------------------------------------------------------


async def _claim_next(lease_seconds: float) -> dict | None:
    """The next event for the sink, with the sink's cursor leased to this process; None
    when there is none, the next attempt is not due, or another process holds it."""
    async with transaction():
        cursor = await AuditCursor.filter(name=SINK).select_for_update(skip_locked=True).first()
        if cursor is None or (cursor.next_attempt_at is not None and cursor.next_attempt_at > now()):
            return None
        records = await _after(cursor.position, 1)
        if not records:
            return None
        cursor.next_attempt_at = now() + timedelta(seconds=lease_seconds)
        await cursor.save(update_fields=["next_attempt_at"])
    return records[0]


async def _record(settings, record: dict, error: str | None) -> None:
    async with transaction():
        cursor = await AuditCursor.select_for_update().get(name=SINK)
        if error is None:
            cursor.position = max(cursor.position, int(record["cursor"]))
            cursor.attempts, cursor.last_error, cursor.next_attempt_at = 0, None, None
        else:
            cursor.attempts += 1
            cursor.last_error = error
            cursor.next_attempt_at = now() + outbox.retry_delay(
                cursor.attempts,
                settings.webhook_backoff_seconds,
                outbox.HTTP_MAX_BACKOFF_SECONDS,
                outbox.HTTP_BACKOFF_JITTER,
            )
        await cursor.save(update_fields=["position", "attempts", "last_error", "next_attempt_at"])


async def _post(settings, client: httpx.AsyncClient, record: dict) -> str | None:
    body = line_of(record).encode()
    headers = {
        "Content-Type": "application/json",
        **standard_headers(settings.audit_webhook_secret, record["id"], body),
        "X-Greenlight-Event": "audit.event",
    }
    return await outbox.post(
        client, settings.audit_webhook_url, body, headers, settings.webhook_timeout_seconds
    )


async def deliver_sink(settings, client: httpx.AsyncClient) -> int:
    """Send the sink its events, in order, until one fails or none is left; returns how
    many it accepted."""
    delivered = 0
    lease = settings.webhook_timeout_seconds + 30
    while (record := await _claim_next(lease)) is not None:
        error = await _post(settings, client, record)
        await _record(settings, record, error)
        if error is not None:
            log.warning("audit sink: %s not accepted (%s); retried later", record["id"], error)
            return delivered
        delivered += 1
    return delivered
