"""The built-in rollout simulator (GREENLIGHT_DEPLOYER=simulator, the default).

It plays each strategy's steps (greenlight.rollout.plan) over the rollout time fixed
when the deployment started, then ends it HEALTHY, or with the configured failure rate
DEGRADED or FAILED. Its only state is in the database: a restarted process, or any other
process, finishes what it finds still progressing; the row lock in `finish_rollout`
(the workflow's, through greenlight.jobs) lets exactly one of them end each deployment.
"""

from __future__ import annotations

import random
from datetime import timedelta

from greenlight.clock import now
from greenlight.errors import InvalidState
from greenlight.models import Deployment, DeploymentStatus, DeploymentStrategy
from greenlight.rollout import drivers, plan
from greenlight.rollout.drivers import Finish

_rng = random.Random()


async def finish_due_rollouts(finish: Finish, rollout_seconds: float | None = None) -> int:
    """End, through `finish` (the workflow's, given by greenlight.jobs), every simulated
    deployment whose rollout time is up (R23); returns how many.

    `rollout_seconds` overrides the time each deployment fixed at its start.
    """
    at = now()
    progressing = await Deployment.filter(status=DeploymentStatus.PROGRESSING, driver="simulator").values(
        "id", "started_at", "rollout_seconds", "strategy"
    )
    finished = 0
    for row in progressing:
        seconds = rollout_seconds if rollout_seconds is not None else row["rollout_seconds"] or 0
        if row["started_at"] + timedelta(seconds=seconds) > at:
            continue
        end = plan.outcome(DeploymentStrategy(row["strategy"]), drivers.current().failure_rate, _rng)
        try:
            await finish(row["id"], end.status, message=end.message, failed_step=end.failed_step)
            finished += 1
        except InvalidState:
            pass  # superseded, or ended by another process meanwhile
    return finished
