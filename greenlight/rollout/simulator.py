"""The built-in rollout simulator and the other periodic jobs of a server process.

State lives in the database only: a deployment is PROGRESSING until the simulator sees
that `GREENLIGHT_ROLLOUT_SECONDS` have passed since it started, so a restarted server
finishes whatever it finds still progressing.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from greenlight.models import Deployment, DeploymentStatus
from greenlight.workflow import approvals, deployments
from greenlight.workflow.clock import now
from greenlight.workflow.errors import InvalidState

log = logging.getLogger("greenlight.rollout")


async def finish_due_rollouts(rollout_seconds: float) -> int:
    """Mark HEALTHY every PROGRESSING deployment whose rollout time is up (R23)."""
    cutoff = now() - timedelta(seconds=rollout_seconds)
    due = await Deployment.filter(status=DeploymentStatus.PROGRESSING, started_at__lte=cutoff).values_list(
        "id", flat=True
    )
    finished = 0
    for deployment_id in due:
        try:
            await deployments.finish_rollout(deployment_id, DeploymentStatus.HEALTHY)
            finished += 1
        except InvalidState:
            pass  # superseded or finished meanwhile
    return finished


async def run_periodic_jobs(rollout_seconds: float, poll_seconds: float) -> None:
    """Runs until cancelled; a failing round is logged and the next one tries again."""
    while True:
        try:
            await finish_due_rollouts(rollout_seconds)
            await approvals.sweep_expired()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("periodic jobs failed; retrying")
        await asyncio.sleep(poll_seconds)
