"""The simulator's plan for each strategy, and the progress of its steps at a moment.

Steps are derived from the stored start time, the rollout time fixed at start and the
deployment's status, so every process (and a restarted one) shows the same progress.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from greenlight.models import Deployment, DeploymentStatus, DeploymentStrategy

STEPS: dict[DeploymentStrategy, tuple[str, ...]] = {
    DeploymentStrategy.ROLLING: ("rolling update",),
    DeploymentStrategy.RECREATE: ("stop old version", "start new version"),
    DeploymentStrategy.BLUE_GREEN: ("deploy green", "switch traffic to green", "retire blue"),
    DeploymentStrategy.CANARY: ("canary 10%", "canary 50%", "canary 100%"),
}


class StepStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"


@dataclass(frozen=True)
class Step:
    name: str
    status: StepStatus


def steps(deployment: Deployment, now: datetime) -> list[Step]:
    """The simulator's steps and where the rollout stands; [] for other drivers."""
    if deployment.driver != "simulator" or deployment.rollout_seconds is None:
        return []
    names = STEPS[DeploymentStrategy(deployment.strategy)]
    status = DeploymentStatus(deployment.status)
    if status == DeploymentStatus.HEALTHY or (
        status == DeploymentStatus.DEGRADED and deployment.failed_step is None
    ):
        return [Step(name, StepStatus.DONE) for name in names]
    if status in (DeploymentStatus.FAILED, DeploymentStatus.DEGRADED):
        failed = deployment.failed_step or 0
        return [
            Step(
                name,
                StepStatus.DONE if i < failed else StepStatus.FAILED if i == failed else StepStatus.SKIPPED,
            )
            for i, name in enumerate(names)
        ]
    end = deployment.finished_at or now
    elapsed = (end - deployment.started_at).total_seconds()
    per_step = (deployment.rollout_seconds or 0) / len(names)
    current = len(names) if per_step <= 0 else int(elapsed // per_step)
    current = min(current, len(names) - 1)
    here = StepStatus.RUNNING if status == DeploymentStatus.PROGRESSING else StepStatus.SKIPPED
    return [
        Step(
            name,
            StepStatus.DONE
            if i < current
            else here
            if i == current
            else StepStatus.SKIPPED
            if status == DeploymentStatus.SUPERSEDED
            else StepStatus.PENDING,
        )
        for i, name in enumerate(names)
    ]


@dataclass(frozen=True)
class Outcome:
    status: DeploymentStatus
    failed_step: int | None
    message: str | None


def outcome(strategy: DeploymentStrategy, failure_rate: float, rng: random.Random) -> Outcome:
    """How a simulated rollout ends: HEALTHY, or with `failure_rate` DEGRADED or FAILED."""
    if rng.random() >= failure_rate:
        return Outcome(DeploymentStatus.HEALTHY, None, None)
    names = STEPS[strategy]
    if rng.random() < 0.5:
        return Outcome(
            DeploymentStatus.DEGRADED, None, "rolled out, but health checks are failing (simulated)"
        )
    failed = rng.randrange(len(names))
    return Outcome(DeploymentStatus.FAILED, failed, f"failed at step '{names[failed]}' (simulated)")
