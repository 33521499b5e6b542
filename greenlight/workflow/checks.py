"""Checks before approval, and promotion.

- CI reports results about an image (`report_image_check`): one row per (image, check
  name), the latest report winning; every report is in the audit log.
- A pipeline may require named checks to have PASSED before one of its requests is
  approved and before a deploy (`required_checks`): what is missing, FAILED or PENDING is
  computed here (`unmet`), and refused as CHECKS_NOT_PASSED by greenlight.workflow.decisions.
- A pipeline may require that the image has been HEALTHY on another environment of its
  application before it may be requested (`requires_healthy_on`): PROMOTION_REQUIRED.

Races: approving and deploying lock the pipeline, then the request, then (here) the image's
required check rows; a report locks the image's row, then its check row, and nothing else.
So a report racing an approval or a deploy waits for it or is seen by it: the outcome is one
of the two serial orders (R17).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from greenlight.clock import now
from greenlight.errors import BadUserInput, Forbidden, not_found
from greenlight.models import (
    CheckStatus,
    Deployment,
    DeploymentStatus,
    Environment,
    Image,
    ImageCheck,
    Pipeline,
)
from greenlight.policies import Action, Actor
from greenlight.tx import transaction
from greenlight.workflow import audit, images, validation
from greenlight.workflow.guards import find_image, sees_image

CHECK_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
MAX_REQUIRED_CHECKS = 20
MAX_SUMMARY = 2000


def check_name(field: str, value: str) -> str:
    if not CHECK_NAME_RE.fullmatch(value):
        raise BadUserInput(
            f"{field}: {value!r} is not a check name (1 to 63 lowercase letters, digits, '.', '_' "
            "or '-', starting with a letter or digit)",
            field=field,
        )
    return value


def required_checks_setting(names: Sequence[str]) -> list[str]:
    """A pipeline's requiredChecks, as given (each name once, in the order given)."""
    if len(names) > MAX_REQUIRED_CHECKS:
        raise BadUserInput(
            f"requiredChecks: at most {MAX_REQUIRED_CHECKS}, got {len(names)}", field="requiredChecks"
        )
    return list(dict.fromkeys(check_name("requiredChecks", n) for n in names))


def required(pipeline: Pipeline) -> list[str]:
    return list(pipeline.required_checks or ())


# --- reporting ---------------------------------------------------------------------------------


def _may_report(actor: Actor, application: str) -> bool:
    """Whoever may register the application's images (build-and-deploy on a scope covering
    some pipeline of it) or a super-admin: the action is its own, so a token can be
    limited to it."""
    return any(s.covers_application(application) for s in actor.scopes(Action.REPORT_IMAGE_CHECK))


def _described(check: ImageCheck) -> dict:
    return {
        "name": check.name,
        "status": CheckStatus(check.status).value,
        "url": check.url,
        "summary": check.summary,
    }


async def report_image_check(
    actor: Actor,
    image_id: int,
    name: str,
    status: CheckStatus,
    url: str | None,
    summary: str | None,
) -> ImageCheck:
    """reportImageCheck: R1 (an image one cannot see is NOT_FOUND), then the right to report
    (FORBIDDEN); a second report of a name updates the check; each one is audited with the
    check before and after (R25)."""
    check_name("name", name)
    status = CheckStatus(status)
    url = None if url is None else images.http_url("url", url)
    summary = validation.text("summary", summary, limit=MAX_SUMMARY)
    image = await find_image(image_id)
    if not sees_image(actor, image):
        raise not_found("image")
    application = image.application.name
    if not _may_report(actor, application):
        raise Forbidden(f"you may not report checks on images of {application}")
    async with transaction():
        # the image's row first: two first reports of one name wait for each other
        await Image.select_for_update().filter(id=image.id).first()
        check = await ImageCheck.select_for_update().get_or_none(image_id=image.id, name=name)
        before = None if check is None else _described(check)
        if check is None:
            check = ImageCheck(image_id=image.id, name=name)
        check.status = status
        check.url = url
        check.summary = summary
        check.reported_by_id = actor.id
        check.reported_at = now()
        await check.save()
        await audit.record(
            "report_image_check",
            check,
            actor_id=actor.id,
            before=before,
            after={**_described(check), "image": image.id},
            application=application,
        )
    return check


async def visible_check(actor: Actor, check_id: int) -> ImageCheck:
    """R1: a check is seen with its image."""
    check = await ImageCheck.get_or_none(id=check_id)
    if check is None or not sees_image(actor, await find_image(check.image_id)):
        raise not_found("image check")
    return check


# --- required checks ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Unmet:
    """The required checks that have not PASSED, by why."""

    missing: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.missing or self.failed or self.pending)

    def words(self) -> str:
        """ "tests FAILED, vulnerability-scan not reported" """
        parts = [f"{n} FAILED" for n in self.failed]
        parts += [f"{n} PENDING" for n in self.pending]
        parts += [f"{n} not reported" for n in self.missing]
        return ", ".join(parts)

    def extensions(self) -> dict:
        return {
            "missingChecks": list(self.missing),
            "failedChecks": list(self.failed),
            "pendingChecks": list(self.pending),
        }


def unmet(names: Iterable[str], rows: Iterable[ImageCheck]) -> Unmet:
    """Which of the required `names` have not PASSED, given the image's check rows."""
    status = {row.name: CheckStatus(row.status) for row in rows}
    names = list(names)
    return Unmet(
        missing=tuple(n for n in names if n not in status),
        failed=tuple(n for n in names if status.get(n) == CheckStatus.FAILED),
        pending=tuple(n for n in names if status.get(n) == CheckStatus.PENDING),
    )


async def unmet_for(pipeline: Pipeline, image_id: int, *, lock: bool = False) -> Unmet:
    """`unmet` for the pipeline's required checks on the image; no statement when the
    pipeline requires none. `lock` locks the check rows (the caller's transaction, after the
    pipeline and the request)."""
    names = required(pipeline)
    if not names:
        return Unmet()
    query = ImageCheck.filter(image_id=image_id, name__in=names)
    if lock:
        query = query.select_for_update()
    return unmet(names, await query)


async def passed_of(images: Sequence[Image], pipelines: Sequence[Pipeline]) -> set[tuple[int, str]]:
    """(image id, check name) of the PASSED checks the pipelines require, among `images`;
    one statement, none when no pipeline requires checks."""
    names = {n for p in pipelines for n in required(p)}
    if not names or not images:
        return set()
    rows = await ImageCheck.filter(
        image_id__in=[i.id for i in images], name__in=names, status=CheckStatus.PASSED
    ).values_list("image_id", "name")
    return set(rows)


# --- promotion ---------------------------------------------------------------------------------


async def promotion_missing(pipeline: Pipeline, image: Image) -> Environment | None:
    """The environment the image must have been HEALTHY on first, when it has not been
    (a deployment of it on that environment's pipeline of the same application that ended
    HEALTHY); None when the pipeline requires none or the image has been."""
    if pipeline.requires_healthy_on_id is None:
        return None
    healthy = await Deployment.filter(
        image_id=image.id,
        status=DeploymentStatus.HEALTHY,
        pipeline__application_id=pipeline.application_id,
        pipeline__environment_id=pipeline.requires_healthy_on_id,
    ).exists()
    if healthy:
        return None
    return await Environment.get(id=pipeline.requires_healthy_on_id)


# --- the pipeline's settings -------------------------------------------------------------------


async def apply_settings(
    pipeline: Pipeline,
    required_checks: Sequence[str] | None,
    requires_healthy_on_id: int | None,
    clear_requires_healthy_on: bool,
) -> None:
    """Sets what is given on the locked pipeline (None keeps the value); validated before
    anything is written. The environment must be another one with a pipeline of the same
    application."""
    if required_checks is not None:
        pipeline.required_checks = required_checks_setting(required_checks)
    if requires_healthy_on_id is not None and clear_requires_healthy_on:
        raise BadUserInput(
            "requiresHealthyOn: give an environment or clearRequiresHealthyOn, not both",
            field="requiresHealthyOn",
        )
    if clear_requires_healthy_on:
        pipeline.requires_healthy_on_id = None
    elif requires_healthy_on_id is not None:
        environment = await Environment.get_or_none(id=requires_healthy_on_id)
        if environment is None:
            raise BadUserInput("requiresHealthyOn: no such environment", field="requiresHealthyOn")
        if environment.id == pipeline.environment_id:
            raise BadUserInput(
                "requiresHealthyOn: a pipeline cannot promote from its own environment",
                field="requiresHealthyOn",
            )
        if not await Pipeline.filter(
            application_id=pipeline.application_id, environment_id=environment.id
        ).exists():
            raise BadUserInput(
                f"requiresHealthyOn: the application has no pipeline on {environment.name}",
                field="requiresHealthyOn",
            )
        pipeline.requires_healthy_on_id = environment.id
