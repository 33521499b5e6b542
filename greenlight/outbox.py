"""What the outboxes (webhook deliveries, emails, chat deliveries, the audit sink) share: claiming a due row so that
exactly one process works on it, and recording an attempt with exponential backoff.

A row is claimed with FOR UPDATE SKIP LOCKED inside a short transaction that moves its
`next_attempt_at` past a lease; the slow part (HTTP, SMTP) runs outside any transaction,
and a process that dies mid-attempt only delays the row until the lease runs out.
"""

from __future__ import annotations

import random
from datetime import timedelta

import httpx
from tortoise.models import Model

from greenlight.clock import now
from greenlight.tx import transaction


async def claim(model: type[Model], done_field: str, lease_seconds: float) -> Model | None:
    """The next due row of `model` (not done, not failed), leased to this process."""
    async with transaction():
        due = (
            await model.filter(
                **{f"{done_field}__isnull": True},
                failed_at__isnull=True,
                next_attempt_at__lte=now(),
            )
            .order_by("next_attempt_at", "id")
            .limit(1)
            .select_for_update(skip_locked=True)
        )
        if not due:
            return None
        row = due[0]
        row.next_attempt_at = now() + timedelta(seconds=lease_seconds)
        await row.save(update_fields=["next_attempt_at"])
    return row


# Every outbound HTTP delivery (deploy webhooks, chat, the audit sink) retries the same
# way: doubling up to five minutes, half of each delay random, so the retries of many
# rows after an outage spread out instead of arriving together.
HTTP_MAX_BACKOFF_SECONDS = 300.0
HTTP_BACKOFF_JITTER = 0.5


async def post(client: httpx.AsyncClient, url: str, body: bytes, headers: dict, timeout: float) -> str | None:
    """POST one delivery: None when the receiver accepted it (a 2xx answer), else what went
    wrong, in words for the row's `last_error` (never the body or the headers: they may
    carry secrets)."""
    try:
        response = await client.post(url, content=body, headers=headers, timeout=timeout)
    except httpx.HTTPError as error:
        return f"{type(error).__name__}: {error}"
    if 200 <= response.status_code < 300:
        return None
    return f"HTTP {response.status_code}"


async def record_http_attempt(row: Model, error: str | None, settings) -> None:
    """`record_attempt` for an HTTP delivery, with the webhook settings' attempts and backoff."""
    await record_attempt(
        row,
        "delivered_at",
        error,
        max_attempts=settings.webhook_max_attempts,
        backoff_seconds=settings.webhook_backoff_seconds,
        max_backoff_seconds=HTTP_MAX_BACKOFF_SECONDS,
        jitter=HTTP_BACKOFF_JITTER,
    )


def retry_delay(
    attempts: int, backoff_seconds: float, max_backoff_seconds: float, jitter: float
) -> timedelta:
    """How long to wait after the `attempts`-th failed attempt: `backoff_seconds` doubling
    with each attempt up to `max_backoff_seconds`, with `jitter` (0 to 1) of it random."""
    delay = min(backoff_seconds * 2 ** (attempts - 1), max_backoff_seconds)
    delay -= delay * jitter * random.random()
    return timedelta(seconds=delay)


async def record_attempt(
    row: Model,
    done_field: str,
    error: str | None,
    *,
    max_attempts: int,
    backoff_seconds: float,
    max_backoff_seconds: float,
    also: tuple[str, ...] = (),
    jitter: float = 0.0,
) -> None:
    """Done when `error` is None; else failed after `max_attempts`, or retried later with
    the delay doubling from `backoff_seconds` up to `max_backoff_seconds`; with `jitter`
    (0 to 1) that share of the delay is random, so retries of many rows spread out.
    `also`: other fields of `row` the caller changed, saved in the same statement."""
    row.attempts += 1
    row.last_error = error
    if error is None:
        setattr(row, done_field, now())
    elif row.attempts >= max_attempts:
        row.failed_at = now()
    else:
        row.next_attempt_at = now() + retry_delay(row.attempts, backoff_seconds, max_backoff_seconds, jitter)
    await row.save(
        update_fields=["attempts", "last_error", done_field, "failed_at", "next_attempt_at", *also]
    )
