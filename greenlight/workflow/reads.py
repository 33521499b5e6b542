"""What an actor may read, filtered in SQL by the scopes the policy grants (R1)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

from tortoise.expressions import Q, Subquery
from tortoise.functions import Count, Max
from tortoise.models import Model
from tortoise.queryset import QuerySet

from greenlight.errors import BadUserInput, not_found
from greenlight.models import (
    Application,
    Approval,
    ApprovalRequest,
    ApprovalState,
    AuditEvent,
    Deployment,
    Environment,
    GroupMember,
    Image,
    Pipeline,
    RoleBinding,
    User,
)
from greenlight.models.visibility import scope_q
from greenlight.policies import Action, Actor, Scope
from greenlight.workflow import validation
from greenlight.workflow.guards import (
    require_admin,
    sees_environment,
    visible_application,
    visible_pipeline,
)
from greenlight.workflow.states import active_deployments, effective_state, state_q

T = TypeVar("T")
MAX_PAGE = 100


@dataclass
class Page(Generic[T]):
    """One page of a list. Its total is counted only when asked (`totalCount`), or known
    already when the page was read with others."""

    items: list[T]
    has_next: bool
    total: int | None = None
    counted: QuerySet | None = None
    earlier: QuerySet | None = None  # the items before the cursor, when read after one
    previous: bool | None = None  # whether there are any, when already known

    async def count(self) -> int:
        if self.total is None:
            self.total = await self.counted.count() if self.counted is not None else len(self.items)
        return self.total

    async def has_previous(self) -> bool:
        """Whether items come before this page: those at or above the cursor (newer ones;
        the cursor's own item was on the previous page)."""
        if self.previous is None:
            self.previous = self.earlier is not None and await self.earlier.exists()
        return self.previous


DEFAULT_PAGE = 20


def _first(first: int | None) -> int:
    if first is None:
        return DEFAULT_PAGE
    if first < 0 or first > MAX_PAGE:
        raise BadUserInput(f"first: must be between 0 and {MAX_PAGE}, got {first}", field="first")
    return first


async def page(query: QuerySet, first: int | None, after_id: int | None) -> Page:
    """Keyset pagination, newest (highest id) first; `after_id` is the last id seen."""
    first = _first(first)
    counted, earlier = query, None
    if after_id is not None:
        query, earlier = query.filter(id__lt=after_id), query.filter(id__gte=after_id)
    rows = await query.order_by("-id").limit(first + 1)
    return Page(items=rows[:first], has_next=len(rows) > first, counted=counted, earlier=earlier)


async def pages_of(
    model: type[Model],
    key_field: str,
    keys: list[int],
    first: int | None,
    after_id: int | None,
    item_field: str = "id",
) -> dict[int, Page]:
    """`page` for the rows of many parents at once (a pipeline's deployments, a group's
    members), in two statements: a window function numbers each parent's rows newest
    first. Every value put into the SQL is an int."""
    first = _first(first)
    result = {key: Page(items=[], has_next=False, total=0, previous=False) for key in keys}
    if not keys:
        return result
    table = model._meta.db_table
    after = f' AND "{item_field}" < {int(after_id)}' if after_id is not None else ""
    listed = ",".join(str(int(k)) for k in keys)
    sql = (
        f'SELECT * FROM (SELECT "{table}".*, ROW_NUMBER() OVER (PARTITION BY "{key_field}" '
        f'ORDER BY "{item_field}" DESC) AS "row_number" FROM "{table}" '
        f'WHERE "{key_field}" IN ({listed}){after}) AS "numbered" WHERE "row_number" <= {first + 1} '
        f'ORDER BY "{key_field}", "{item_field}" DESC'
    )
    rows: dict[int, list[Model]] = {}
    for row in await model.raw(sql):
        rows.setdefault(getattr(row, key_field), []).append(row)
    counts = {"total": Count("id")}
    if after_id is not None:  # in the same statement: the rows before the cursor (hasPreviousPage)
        counts["earlier"] = Count("id", _filter=Q(**{f"{item_field}__gte": after_id}))
    totals = (
        await model.filter(**{f"{key_field}__in": keys})
        .annotate(**counts)
        .group_by(key_field)
        .values(key_field, *counts)
    )
    for row in totals:
        found = rows.get(row[key_field], [])
        result[row[key_field]] = Page(
            items=found[:first],
            has_next=len(found) > first,
            total=row["total"],
            previous=row.get("earlier", 0) > 0,
        )
    return result


def pipelines_q(actor: Actor, action: Action = Action.VIEW) -> Q:
    """The pipelines on which the actor may do `action` (by default: see them, R1)."""
    return scope_q(actor.scopes(action), "application__name", "environment__name")


def pipelines_in(actor: Actor, action: Action) -> Subquery:
    """The ids of the pipelines on which the actor may do `action`, for `pipeline_id__in`.

    A subquery rather than a filter across joins: with joins, SQLite walks a table of rows
    on every pipeline newest first, looking for the actor's (a cost that grows with what
    the actor cannot see); with the subquery it reads the actor's rows by index."""
    return Subquery(Pipeline.filter(pipelines_q(actor, action)).values("id"))


def _archived_shown(actor: Actor, include_archived: bool):
    """Archived applications and environments are left out of lists unless a super-admin
    asks for them (`includeArchived`); asked for by id they stay readable (history kept)."""
    if include_archived:
        require_admin(actor, "list archived applications and environments")
        return {}
    return {"archived_at__isnull": True}


async def applications(actor: Actor, include_archived: bool = False) -> list[Application]:
    shown = _archived_shown(actor, include_archived)
    return await Application.filter(scope_q(actor.scopes(Action.VIEW), "name"), **shown).order_by("name")


async def environments(actor: Actor, include_archived: bool = False) -> list[Environment]:
    shown = _archived_shown(actor, include_archived)
    scopes = actor.scopes(Action.VIEW)
    if not scopes:
        return []
    if any(s.every_environment for s in scopes):
        return await Environment.filter(**shown).order_by("name")
    return await Environment.filter(name__in={s.environment for s in scopes}, **shown).order_by("name")


async def environment(actor: Actor, environment_id: int) -> Environment:
    """R1: one of `environments`, or NOT_FOUND."""
    found = await Environment.get_or_none(id=environment_id)
    if found is None or not sees_environment(actor, found.name):
        raise not_found("environment")
    return found


async def pipelines_of(actor: Actor, application_ids: list[int]) -> dict[int, list[Pipeline]]:
    """Application.pipelines for several applications in one statement (R1)."""
    found = await Pipeline.filter(pipelines_q(actor), application_id__in=application_ids).order_by("id")
    result: dict[int, list[Pipeline]] = {a: [] for a in application_ids}
    for pipeline in found:
        result[pipeline.application_id].append(pipeline)
    return result


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


async def images(
    actor: Actor, application_id: int, first: int | None, after_id: int | None, image_filter: Q | None = None
) -> Page:
    """`image_filter`: a WHERE on the images (greenlight.workflow.images.ImageFilter)."""
    application = await visible_application(actor, application_id)
    query = Image.filter(application_id=application.id)
    if image_filter is not None:
        query = query.filter(image_filter)
    return await page(query, first, after_id)


async def approval_requests(
    actor: Actor,
    states: list[ApprovalState] | None,
    pipeline_id: int | None,
    awaiting_my_approval: bool,
    first: int | None,
    after_id: int | None,
) -> Page:
    query = ApprovalRequest.filter(pipeline_id__in=pipelines_in(actor, Action.VIEW))
    if states is not None:
        query = query.filter(state_q(states))
    if pipeline_id is not None:
        query = query.filter(pipeline_id=pipeline_id)
    if awaiting_my_approval:
        query = query.filter(
            state_q([ApprovalState.PENDING]), pipeline_id__in=pipelines_in(actor, Action.APPROVE)
        ).exclude(
            Q(requested_by_id=actor.id)
            | Q(image__built_by_id=actor.id)
            | Q(id__in=Subquery(Approval.filter(user_id=actor.id).values("request_id")))
        )
    return await page(query, first, after_id)


async def deployments_of(pipeline_ids: list[int], first: int | None, after_id: int | None) -> dict[int, Page]:
    """Pipeline.deployments for several pipelines at once, newest first."""
    return await pages_of(Deployment, "pipeline_id", pipeline_ids, first, after_id)


async def latest_request_states(actor: Actor, pairs: list[tuple[int, int]]) -> list[ApprovalState | None]:
    """Image.approvalState for (image id, pipeline id) pairs: the latest request's effective
    state, None if never requested or the pipeline is not visible (R1). Two statements."""
    rows = await Pipeline.filter(id__in={p for _, p in pairs}).values_list(
        "id", "application__name", "environment__name"
    )
    visible = [pid for pid, app, env in rows if actor.may(Action.VIEW, Scope(app, env))]
    images = {i for i, p in pairs if p in visible}
    latest: dict[tuple[int, int], ApprovalState] = {}
    if visible and images:
        newest = (
            ApprovalRequest.filter(pipeline_id__in=visible, image_id__in=images)
            .annotate(newest=Max("id"))
            .group_by("image_id", "pipeline_id")
            .values("newest")
        )
        for request in await ApprovalRequest.filter(id__in=Subquery(newest)):
            latest[(request.image_id, request.pipeline_id)] = effective_state(request)
    return [latest.get(pair) for pair in pairs]


async def active_on(actor: Actor, images: list[Image]) -> list[list[Environment]]:
    """For each image, the environments (that the actor can see) where it is the active
    one (R23), by name. Three statements whatever the number of images."""
    applications = list({i.application_id for i in images})
    pipelines = await Pipeline.filter(pipelines_q(actor), application_id__in=applications).values_list(
        "id", "environment_id"
    )
    environment_of = dict(pipelines)
    active = await active_deployments(list(environment_of))
    where: dict[int, set[int]] = {}
    for pipeline_id, deployment in active.items():
        where.setdefault(deployment.image_id, set()).add(environment_of[pipeline_id])
    wanted = set().union(*where.values()) if where else set()
    environments = {e.id: e for e in await Environment.filter(id__in=wanted)} if wanted else {}
    return [
        sorted((environments[e] for e in where.get(image.id, ())), key=lambda e: e.name) for image in images
    ]


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


async def audit_event(actor: Actor, event_id: int) -> AuditEvent:
    """One event of the audit log (R25), for super-admins."""
    require_admin(actor, "read the audit log")
    found = await AuditEvent.get_or_none(id=event_id)
    if found is None:
        raise not_found("audit event")
    return found


async def user(actor: Actor, user_id: int) -> User:
    """A user by id: the caller themself, or anyone for super-admins; others are as
    invisible as users that do not exist (R1)."""
    found = await User.get_or_none(id=user_id) if actor.is_super_admin or user_id == actor.id else None
    if found is None:
        raise not_found("user")
    return found


async def role_binding(actor: Actor, binding_id: int) -> RoleBinding:
    """A user's role binding, visible (as in User.roleBindings) to that user and to
    super-admins; a group's binding is a GroupRoleBinding, not this."""
    found = await RoleBinding.get_or_none(id=binding_id, user_id__isnull=False)
    if found is None or not (actor.is_super_admin or found.user_id == actor.id):
        raise not_found("role binding")
    return found


async def users(actor: Actor) -> list[User]:
    require_admin(actor, "list users")
    return await User.all().order_by("email")


async def role_bindings_of(actor: Actor, user_ids: list[int]) -> dict[int, list[RoleBinding]]:
    """User.roleBindings: visible to the user themself and to super-admins; empty for anyone
    else. One statement for any number of users."""
    shown = user_ids if actor.is_super_admin else [u for u in user_ids if u == actor.id]
    result: dict[int, list[RoleBinding]] = {u: [] for u in user_ids}
    if shown:
        for binding in await RoleBinding.filter(user_id__in=shown).order_by("id"):
            result[binding.user_id].append(binding)
    return result


async def members_of(
    actor: Actor, group_ids: list[int], first: int | None, after_id: int | None
) -> dict[int, Page]:
    """Members of several groups at once, newest user first (three statements). A group is
    named wherever it is used (a policy's quorums, its exceptions); who is in it, and what
    it holds, only super-admins see (R2)."""
    require_admin(actor, "see a group's members")
    pages = await pages_of(GroupMember, "group_id", group_ids, first, after_id, item_field="user_id")
    user_ids = {m.user_id for p in pages.values() for m in p.items}
    users = {u.id: u for u in await User.filter(id__in=user_ids)} if user_ids else {}
    for p in pages.values():
        p.items = [users[m.user_id] for m in p.items]
    return pages


async def group_bindings_of(actor: Actor, group_ids: list[int]) -> dict[int, list[RoleBinding]]:
    require_admin(actor, "see a group's role bindings")
    result: dict[int, list[RoleBinding]] = {g: [] for g in group_ids}
    for binding in await RoleBinding.filter(group_id__in=group_ids).order_by("id"):
        result[binding.group_id].append(binding)
    return result


async def request_chain(actor: Actor, image_id: int, pipeline_id: int) -> list[ApprovalRequest]:
    """The history of one image on one pipeline: its requests, oldest first (each asking
    again after a rejection names it as previousRequest). R1: a pipeline the actor cannot
    see is NOT_FOUND."""
    await visible_pipeline(actor, pipeline_id)
    return await ApprovalRequest.filter(image_id=image_id, pipeline_id=pipeline_id).order_by("id")
