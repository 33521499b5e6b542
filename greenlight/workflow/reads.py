"""What an actor may read, filtered in SQL by the scopes the policy grants (R1)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

from tortoise.expressions import Q, Subquery
from tortoise.queryset import QuerySet

from greenlight.models import (
    ACTIVE_STATUSES,
    Application,
    Approval,
    ApprovalRequest,
    ApprovalState,
    AuditEvent,
    Deployment,
    Environment,
    Group,
    Image,
    Pipeline,
    RoleBinding,
    User,
)
from greenlight.models.visibility import scope_q
from greenlight.policies import Action, Actor, Scope
from greenlight.workflow import validation
from greenlight.workflow.errors import BadUserInput, not_found
from greenlight.workflow.guards import (
    pipeline_scope,
    require_admin,
    visible_application,
    visible_pipeline,
)
from greenlight.workflow.states import effective_state, state_q

T = TypeVar("T")
MAX_PAGE = 100


@dataclass
class Page(Generic[T]):
    items: list[T]
    has_next: bool
    total: int


DEFAULT_PAGE = 20


async def page(query: QuerySet, first: int | None, after_id: int | None) -> Page:
    """Keyset pagination, newest (highest id) first; `after_id` is the last id seen."""
    if first is None:
        first = DEFAULT_PAGE
    if first < 0 or first > MAX_PAGE:
        raise BadUserInput(f"first: must be between 0 and {MAX_PAGE}, got {first}", field="first")
    total = await query.count()
    if after_id is not None:
        query = query.filter(id__lt=after_id)
    rows = await query.order_by("-id").limit(first + 1)
    return Page(items=rows[:first], has_next=len(rows) > first, total=total)


def visible_pipelines_q(actor: Actor, prefix: str = "") -> Q:
    return scope_q(actor.scopes(Action.VIEW), f"{prefix}application__name", f"{prefix}environment__name")


async def applications(actor: Actor) -> list[Application]:
    return await Application.filter(scope_q(actor.scopes(Action.VIEW), "name")).order_by("name")


async def environments(actor: Actor) -> list[Environment]:
    scopes = actor.scopes(Action.VIEW)
    if not scopes:
        return []
    if any(s.environment == "*" for s in scopes):
        return await Environment.all().order_by("name")
    return await Environment.filter(name__in={s.environment for s in scopes}).order_by("name")


async def pipelines_of(actor: Actor, application_id: int) -> list[Pipeline]:
    return (
        await Pipeline.filter(visible_pipelines_q(actor), application_id=application_id)
        .prefetch_related("application", "environment")
        .order_by("id")
    )


async def pipeline(actor: Actor, pipeline_id: int) -> Pipeline:
    """R1: NOT_FOUND alike for a pipeline that does not exist and one the actor cannot see."""
    return await visible_pipeline(actor, pipeline_id)


async def pipeline_for(actor: Actor, application: str, environment: str) -> Pipeline:
    validation.name("application", application)
    validation.name("environment", environment)
    found = await Pipeline.get_or_none(application__name=application, environment__name=environment)
    if found is None:
        raise not_found("pipeline")
    return await visible_pipeline(actor, found.id)


async def images(actor: Actor, application_id: int, first: int | None, after_id: int | None) -> Page:
    application = await visible_application(actor, application_id)
    return await page(Image.filter(application_id=application.id), first, after_id)


async def approval_requests(
    actor: Actor,
    states: list[ApprovalState] | None,
    pipeline_id: int | None,
    awaiting_my_approval: bool,
    first: int | None,
    after_id: int | None,
) -> Page:
    query = ApprovalRequest.filter(visible_pipelines_q(actor, "pipeline__"))
    if states is not None:
        query = query.filter(state_q(states))
    if pipeline_id is not None:
        query = query.filter(pipeline_id=pipeline_id)
    if awaiting_my_approval:
        query = query.filter(
            scope_q(
                actor.scopes(Action.APPROVE),
                "pipeline__application__name",
                "pipeline__environment__name",
            ),
            state_q([ApprovalState.PENDING]),
        ).exclude(
            Q(requested_by_id=actor.id)
            | Q(image__built_by_id=actor.id)
            | Q(id__in=Subquery(Approval.filter(user_id=actor.id).values("request_id")))
        )
    return await page(query, first, after_id)


async def deployments_of(pipeline: Pipeline, first: int | None, after_id: int | None) -> Page:
    return await page(Deployment.filter(pipeline_id=pipeline.id), first, after_id)


async def latest_request_state(actor: Actor, image: Image, pipeline_id: int) -> ApprovalState | None:
    """Image.approvalState: the latest request's effective state; None if never requested."""
    found = await Pipeline.get_or_none(id=pipeline_id).prefetch_related("application", "environment")
    if found is None or not actor.may(Action.VIEW, pipeline_scope(found)):
        return None
    latest = await ApprovalRequest.filter(image_id=image.id, pipeline_id=pipeline_id).order_by("-id").first()
    return effective_state(latest) if latest else None


async def active_on(actor: Actor, image: Image) -> list[Environment]:
    """Environments (that the actor can see) where this image is the active one (R23)."""
    candidates = await Pipeline.filter(
        visible_pipelines_q(actor),
        application_id=image.application_id,
        deployments__image_id=image.id,
        deployments__status__in=list(ACTIVE_STATUSES),
    ).distinct()
    result = []
    for candidate in candidates:
        newest = (
            await Deployment.filter(pipeline_id=candidate.id, status__in=list(ACTIVE_STATUSES))
            .order_by("-id")
            .first()
        )
        if newest is not None and newest.image_id == image.id:
            result.append(await Environment.get(id=candidate.environment_id))
    return sorted(result, key=lambda e: e.name)


def viewer_can_approve(
    actor: Actor,
    request: ApprovalRequest,
    *,
    built_by_id: int,
    approver_ids: set[int],
    application: str,
    environment: str,
) -> bool:
    """Whether the caller may approve the request right now (R4, R10, R11, R15, R16)."""
    return (
        effective_state(request) == ApprovalState.PENDING
        and actor.id not in (request.requested_by_id, built_by_id)
        and actor.id not in approver_ids
        and actor.may(Action.APPROVE, Scope(application, environment))
    )


def _utc(field: str, value: datetime | None) -> datetime | None:
    """A time in UTC within what every database stores (years 1 to 9999)."""
    if value is None:
        return None
    try:
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise BadUserInput(f"{field}: out of range", field=field) from None


async def audit_events(
    actor: Actor,
    *,
    application: str | None,
    environment: str | None,
    actor_id: int | None,
    action: str | None,
    since: datetime | None,
    until: datetime | None,
    first: int | None,
    after_id: int | None,
) -> Page:
    """The audit log (R25), newest first, for super-admins."""
    require_admin(actor, "read the audit log")
    for field, value in (("application", application), ("environment", environment)):
        if value is not None:
            validation.scope_part(field, value)
    if action is not None:
        validation.text("action", action, limit=64)
    since, until = _utc("since", since), _utc("until", until)
    query = AuditEvent.all()
    if application is not None:
        query = query.filter(application=application)
    if environment is not None:
        query = query.filter(environment=environment)
    if actor_id is not None:
        query = query.filter(actor_id=actor_id)
    if action is not None:
        query = query.filter(action=action)
    if since is not None:
        query = query.filter(at__gte=since)
    if until is not None:
        query = query.filter(at__lt=until)
    return await page(query, first, after_id)


async def users(actor: Actor) -> list[User]:
    require_admin(actor, "list users")
    return await User.all().order_by("email")


async def role_bindings_of(actor: Actor, user: User) -> list[RoleBinding]:
    """Visible to the user themself and to super-admins; empty for anyone else."""
    if actor.id != user.id and not actor.is_super_admin:
        return []
    return await RoleBinding.filter(user_id=user.id).order_by("id")


async def group_members(actor: Actor, group: Group, first: int | None, after_id: int | None) -> Page:
    """A group is named wherever it is used (a policy's quorums, its exceptions); who is in
    it, and what it holds, only super-admins see (R2)."""
    require_admin(actor, "see a group's members")
    return await page(User.filter(memberships__group_id=group.id), first, after_id)


async def group_bindings(actor: Actor, group: Group) -> list[RoleBinding]:
    require_admin(actor, "see a group's role bindings")
    return await RoleBinding.filter(group_id=group.id).order_by("id")
