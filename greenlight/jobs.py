"""The periodic work of every server process: finish rollouts, send webhooks and emails,
write the expiry of requests whose time has passed, remind and escalate pending requests,
put new audit events in commit order (fanning out their chat notices), send chat notices
and feed the audit sink.

An entry point, as the resolvers are: the adapters (the rollout drivers, notifications)
never call the workflow; the work they find is handed to the workflow from here (a
simulated rollout whose time is up, a CD system that never accepted a deployment's
start).

Each kind of work runs in a task of its own, on its own clock: a peer that hangs (an SMTP
server that accepts and never greets, a webhook receiver that never answers) holds up only
its own kind, within that kind's time limits (GREENLIGHT_SMTP_TIMEOUT_SECONDS,
GREENLIGHT_WEBHOOK_TIMEOUT_SECONDS), never a rollout or an expiry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import httpx

from greenlight.notifications import audit_stream, chat, dispatcher
from greenlight.observability.tracing import job_span
from greenlight.policies import Authorizer
from greenlight.rollout import simulator, webhook
from greenlight.workflow import approvals, deployments, reminders

log = logging.getLogger("greenlight.jobs")

Job = Callable[[], Awaitable[object]]


def kinds(settings, client: httpx.AsyncClient | None) -> dict[str, Job]:
    """Each kind of periodic work this process does, by name."""
    authorizer = Authorizer()  # R24 after a freeze deploys with the requester's rights of now
    work: dict[str, Job] = {
        "finish_rollouts": finish_due_rollouts,
        "sweep_expired": approvals.sweep_expired,
        "deploy_after_freezes": lambda: deployments.deploy_after_freezes(authorizer),
        "sequence_audit": audit_stream.sequence,
    }
    if settings.deployer == "webhook" and client is not None:
        work["deliver_webhooks"] = lambda: deliver_webhooks(settings, client)
    if settings.email_enabled:
        work["deliver_emails"] = lambda: dispatcher.deliver_due(settings)
        work["send_reminders"] = lambda: reminders.send_due(authorizer)
    if client is not None:
        work["deliver_chat"] = lambda: chat.deliver_due(settings, client)
        if settings.audit_webhook_url:
            work["deliver_audit_sink"] = lambda: audit_stream.deliver_sink(settings, client)
    return work


async def finish_due_rollouts(rollout_seconds: float | None = None) -> int:
    """R23: the simulator's rollouts whose time is up, ended by the workflow."""
    return await simulator.finish_due_rollouts(deployments.finish_rollout, rollout_seconds)


async def deliver_webhooks(settings, client: httpx.AsyncClient) -> int:
    """The deploy webhooks that are due; a deployment whose start the CD system never
    accepted ends FAILED through the workflow."""
    return await webhook.deliver_due(settings, client, deployments.finish_rollout)


async def _round(name: str, job: Job) -> None:
    """One round of a job, in a root span of its own (no request caused it)."""
    with job_span(name):
        await job()


async def run_once(settings, client: httpx.AsyncClient | None = None) -> None:
    """Every kind once, one after another (for tests and scripts)."""
    for name, job in kinds(settings, client).items():
        await _round(name, job)


async def _repeat(name: str, job: Job, pause: float) -> None:
    """Runs until cancelled; a failing round is logged and the next one tries again."""
    while True:
        try:
            await _round(name, job)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("periodic job %s failed; retrying", name)
        await asyncio.sleep(pause)


async def run_forever(settings) -> None:
    """Every kind in a task of its own, until cancelled."""
    async with httpx.AsyncClient() as client:
        tasks = [
            asyncio.create_task(_repeat(name, job, settings.rollout_poll_seconds), name=f"greenlight {name}")
            for name, job in kinds(settings, client).items()
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
