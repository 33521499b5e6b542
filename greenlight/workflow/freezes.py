"""Deploy freezes: windows in which deploys to an environment, or to one
pipeline, are refused with DEPLOY_FROZEN unless a super-admin overrides with a reason.

A window is one-off (`startsAt` to `endsAt`) or weekly, from a day and time to a day and
time on the wall clock of a named time zone: "FRIDAY 18:00 to MONDAY 08:00 Europe/Berlin"
ends at 07:00 UTC in winter and 06:00 UTC in summer. Windows are half-open: frozen from
the start, open again at the end.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tortoise.expressions import Q

from greenlight.clock import now
from greenlight.errors import BadUserInput, DeployFrozen, Forbidden, not_found
from greenlight.models import DeployFreeze, Environment, Pipeline, Weekday
from greenlight.policies import Action, Actor
from greenlight.tx import transaction
from greenlight.workflow import audit, validation
from greenlight.workflow.guards import pipeline_scope, require_admin, sees_environment, visible_pipeline

TIME_RE = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")
WEEK = 7 * 24 * 3600


@dataclass(frozen=True)
class WeeklyWindow:
    time_zone: str
    start_day: Weekday
    start_time: str
    end_day: Weekday
    end_time: str


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadUserInput(
            f"weekly.timeZone: {name!r} is not a time zone name (such as Europe/Berlin)",
            field="weekly.timeZone",
        ) from None


def _second_of_week(day: int, hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return day * 86400 + int(hours) * 3600 + int(minutes) * 60


def window_end(freeze: DeployFreeze, at: datetime) -> datetime | None:
    """When the window that holds `at` ends; None when `at` is outside it."""
    if freeze.time_zone is None:
        return freeze.ends_at if freeze.starts_at <= at < freeze.ends_at else None
    zone = ZoneInfo(freeze.time_zone)
    local = at.astimezone(zone)
    x = local.weekday() * 86400 + local.hour * 3600 + local.minute * 60 + local.second
    x += local.microsecond / 1_000_000
    start = _second_of_week(freeze.start_day, freeze.start_time)
    end = _second_of_week(freeze.end_day, freeze.end_time)
    inside = start <= x < end if start < end else (x >= start or x < end)
    if not inside:
        return None
    # Count forward on the wall clock, then find that wall-clock time's instant.
    wall_end = local.replace(tzinfo=None) + timedelta(seconds=(end - x) % WEEK)
    return wall_end.replace(tzinfo=zone).astimezone(UTC)


def frozen_until(freezes: list[DeployFreeze], at: datetime) -> datetime | None:
    """The moment no window holds any more (windows may overlap or follow each other);
    None when none holds `at`."""
    moment = at
    for _ in range(len(freezes) + 1):
        ends = [end for freeze in freezes if (end := window_end(freeze, moment)) is not None]
        if not ends:
            break
        moment = max(ends)
    return None if moment == at else moment


def _covering(environment_ids: Iterable[int], pipeline_ids: Iterable[int]) -> Q:
    """Freezes on any of these environments or pipelines."""
    return Q(environment_id__in=list(set(environment_ids))) | Q(pipeline_id__in=list(pipeline_ids))


async def of_pipeline(pipeline: Pipeline) -> list[DeployFreeze]:
    """The pipeline's own freezes and its environment's."""
    return await DeployFreeze.filter(_covering([pipeline.environment_id], [pipeline.id])).order_by("id")


async def of_pipelines(pipeline_ids: list[int]) -> dict[int, list[DeployFreeze]]:
    """of_pipeline for several pipelines in two statements."""
    environment_of = dict(await Pipeline.filter(id__in=pipeline_ids).values_list("id", "environment_id"))
    if not environment_of:
        return {}
    found = await DeployFreeze.filter(_covering(environment_of.values(), pipeline_ids)).order_by("id")
    return {
        pid: [f for f in found if f.pipeline_id == pid or f.environment_id == env]
        for pid, env in environment_of.items()
    }


async def pipeline_frozen_until(pipeline: Pipeline) -> datetime | None:
    return frozen_until(await of_pipeline(pipeline), now())


async def check_deploy(actor: Actor | None, pipeline: Pipeline, override_reason: str | None) -> str | None:
    """Refuse a deploy while frozen (DEPLOY_FROZEN), unless a super-admin gives a reason.

    Returns the reason when a freeze was overridden, None when nothing was frozen.
    `actor` None is the system deploying on its own (R24), which never overrides.
    """
    until = await pipeline_frozen_until(pipeline)
    if until is None:
        return None
    scope = pipeline_scope(pipeline)
    if override_reason is None or actor is None:
        hint = " (a super-admin may override with freezeOverrideReason)" if actor is not None else ""
        raise DeployFrozen(
            f"deploys to {scope.domain} are frozen until {until.isoformat()}{hint}",
            frozenUntil=until.isoformat(),
        )
    if not actor.is_super_admin:
        raise Forbidden("only super-admins may override a deploy freeze")
    return override_reason


def override_reason(value: str | None) -> str | None:
    """freezeOverrideReason: absent, or a non-blank text."""
    if value is None:
        return None
    return validation.text("freezeOverrideReason", value, required=True)


# --- managing freezes (super-admins) -------------------------------------------------------


def validate_window(
    starts_at: datetime | None, ends_at: datetime | None, weekly: WeeklyWindow | None
) -> None:
    one_off = starts_at is not None or ends_at is not None
    if one_off == (weekly is not None):
        raise BadUserInput("give either startsAt and endsAt, or weekly", field="weekly")
    if one_off:
        if starts_at is None or ends_at is None:
            raise BadUserInput("a one-off freeze needs both startsAt and endsAt", field="endsAt")
        if starts_at.tzinfo is None or ends_at.tzinfo is None:
            raise BadUserInput("startsAt and endsAt need a time zone offset", field="startsAt")
        if starts_at >= ends_at:
            raise BadUserInput("endsAt must be after startsAt", field="endsAt")
        return
    _zone(weekly.time_zone)
    for name, value in (("startTime", weekly.start_time), ("endTime", weekly.end_time)):
        if not TIME_RE.fullmatch(value):
            raise BadUserInput(
                f"weekly.{name}: {value!r} is not HH:MM (00:00 to 23:59)", field=f"weekly.{name}"
            )
    start = _second_of_week(weekly.start_day.number, weekly.start_time)
    end = _second_of_week(weekly.end_day.number, weekly.end_time)
    if start == end:
        raise BadUserInput("weekly: the window starts and ends at the same moment", field="weekly")


async def create_freeze(
    actor: Actor,
    name: str,
    environment_id: int | None,
    pipeline_id: int | None,
    starts_at: datetime | None,
    ends_at: datetime | None,
    weekly: WeeklyWindow | None,
) -> DeployFreeze:
    """R2: super-admins define freezes on an environment or on one pipeline."""
    require_admin(actor, "define deploy freezes")
    name = validation.text("name", name, required=True, limit=200)
    if (environment_id is None) == (pipeline_id is None):
        raise BadUserInput("give exactly one of environmentId and pipelineId", field="environmentId")
    validate_window(starts_at, ends_at, weekly)
    async with transaction():
        environment = pipeline = None
        if environment_id is not None:
            environment = await Environment.get_or_none(id=environment_id)
            if environment is None:
                raise not_found("environment")
        else:
            pipeline = await visible_pipeline(actor, pipeline_id)
        freeze = await DeployFreeze.create(
            name=name,
            environment=environment,
            pipeline=pipeline,
            starts_at=starts_at.astimezone(UTC) if starts_at else None,
            ends_at=ends_at.astimezone(UTC) if ends_at else None,
            time_zone=weekly.time_zone if weekly else None,
            start_day=weekly.start_day.number if weekly else None,
            start_time=weekly.start_time if weekly else None,
            end_day=weekly.end_day.number if weekly else None,
            end_time=weekly.end_time if weekly else None,
            created_by_id=actor.id,
        )
        await audit.record(
            "create_deploy_freeze",
            freeze,
            actor_id=actor.id,
            after=describe(freeze),
            application=pipeline.application.name if pipeline else None,
            environment=(environment or pipeline.environment).name,
        )
    return freeze


async def delete_freeze(actor: Actor, freeze_id: int) -> DeployFreeze:
    require_admin(actor, "remove deploy freezes")
    async with transaction():
        freeze = await DeployFreeze.select_for_update().get_or_none(id=freeze_id)
        if freeze is None:
            raise not_found("deploy freeze")
        await freeze.fetch_related("environment", "pipeline__application", "pipeline__environment")
        pipeline = freeze.pipeline
        await audit.record(
            "delete_deploy_freeze",
            freeze,
            actor_id=actor.id,
            before=describe(freeze),
            application=pipeline.application.name if pipeline else None,
            environment=(freeze.environment or pipeline.environment).name,
        )
        await freeze.delete()
    return freeze


def describe(freeze: DeployFreeze) -> dict:
    if freeze.time_zone is None:
        window = {"startsAt": freeze.starts_at.isoformat(), "endsAt": freeze.ends_at.isoformat()}
    else:
        days = list(Weekday)
        window = {
            "weekly": f"{days[freeze.start_day].value} {freeze.start_time} to "
            f"{days[freeze.end_day].value} {freeze.end_time} {freeze.time_zone}"
        }
    return {"name": freeze.name, **window}


async def visible_freezes(
    actor: Actor, environment_id: int | None = None, pipeline_id: int | None = None
) -> list[DeployFreeze]:
    """The freezes on environments and pipelines the caller can see (R1)."""
    query = DeployFreeze.all().prefetch_related(
        "environment", "pipeline__application", "pipeline__environment"
    )
    if pipeline_id is not None:
        pipeline = await visible_pipeline(actor, pipeline_id)
        return await of_pipeline(pipeline)
    if environment_id is not None:
        query = query.filter(environment_id=environment_id)
    return [freeze for freeze in await query.order_by("id") if _sees(actor, freeze)]


def _sees(actor: Actor, freeze: DeployFreeze) -> bool:
    """R1: a pipeline's freeze with the pipeline, an environment's with the environment."""
    if freeze.pipeline is not None:
        return actor.may(Action.VIEW, pipeline_scope(freeze.pipeline))
    return sees_environment(actor, freeze.environment.name)


async def visible_freeze(actor: Actor, freeze_id: int) -> DeployFreeze:
    """One of `visible_freezes`, or NOT_FOUND (R1)."""
    found = (
        await DeployFreeze.filter(id=freeze_id)
        .prefetch_related("environment", "pipeline__application", "pipeline__environment")
        .first()
    )
    if found is None or not _sees(actor, found):
        raise not_found("deploy freeze")
    return found
