"""The periodic work of every server process: finish rollouts, send webhooks and emails,
and write the expiry of requests whose time has passed."""

from __future__ import annotations

import asyncio
import logging

import httpx

from greenlight.notifications import dispatcher
from greenlight.rollout import simulator, webhook
from greenlight.workflow import approvals

log = logging.getLogger("greenlight.jobs")


async def run_once(settings, client: httpx.AsyncClient | None = None) -> None:
    await simulator.finish_due_rollouts()
    if settings.deployer == "webhook" and client is not None:
        await webhook.deliver_due(settings, client)
    await approvals.sweep_expired()
    if settings.email_enabled:
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
