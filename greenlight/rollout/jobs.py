"""The periodic work of every server process: finish rollouts, send webhooks and emails,
and write the expiry of requests whose time has passed."""

from __future__ import annotations

import asyncio
import logging

import httpx

from greenlight.notifications import dispatcher
from greenlight.observability.tracing import job_span
from greenlight.rollout import simulator, webhook
from greenlight.workflow import approvals

log = logging.getLogger("greenlight.jobs")


async def run_once(settings, client: httpx.AsyncClient | None = None) -> None:
    """One round of each job, each in a root span of its own (no request caused it)."""
    with job_span("finish_rollouts"):
        await simulator.finish_due_rollouts()
    if settings.deployer == "webhook" and client is not None:
        with job_span("deliver_webhooks"):
            await webhook.deliver_due(settings, client)
    with job_span("sweep_expired"):
        await approvals.sweep_expired()
    if settings.email_enabled:
        with job_span("deliver_emails"):
            await dispatcher.deliver_due(settings)


async def run_forever(settings) -> None:
    """Runs until cancelled; a failing round is logged and the next one tries again."""
    async with httpx.AsyncClient() as client:
        while True:
            try:
                await run_once(settings, client)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("periodic jobs failed; retrying")
            await asyncio.sleep(settings.rollout_poll_seconds)
