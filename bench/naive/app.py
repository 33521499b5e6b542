"""The naive server: Strawberry types with a resolver per field that awaits its relation
(`await obj.relation`, one query each), a token looked up on every request, the caller's
role bindings read on every request and checked in Python. The same field names and
answer shapes as Greenlight for the benchmark's Select Image, Approval pending and
approveRequest, over Greenlight's own tables. No dataloaders, no caches.

    python -m bench.serve naive PORT    (GREENLIGHT_DATABASE_URL names the database)
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import os
from datetime import UTC, datetime

import strawberry
from starlette.applications import Starlette
from starlette.routing import Route
from strawberry.asgi import GraphQL
from strawberry.types import Info
from tortoise import Tortoise
from tortoise.expressions import Q, Subquery
from tortoise.transactions import in_transaction

from bench.naive import models

SEES = {"viewer", "build-and-deploy", "image-approver", "super-admin"}
APPROVES = {"image-approver", "super-admin"}
LIVE = ("PENDING", "APPROVED")


@strawberry.enum
class ApprovalState(enum.Enum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"
    CONSUMED = "CONSUMED"


def effective(request: models.ApprovalRequest) -> ApprovalState:
    if request.state in LIVE and request.expires_at is not None and request.expires_at <= datetime.now(UTC):
        return ApprovalState.EXPIRED
    return ApprovalState(request.state)


def number(kind: str, value: str) -> int:
    prefix, _, digits = str(value).partition(":")
    if prefix != kind or not digits.isdigit():
        raise ValueError(f"not a {kind} id: {value}")
    return int(digits)


class Caller:
    def __init__(self, user: models.User, bindings: list[models.RoleBinding]) -> None:
        self.user = user
        self.bindings = bindings

    def may(self, roles: set[str], application: str, environment: str) -> bool:
        return any(
            b.role in roles and b.application in ("*", application) and b.environment in ("*", environment)
            for b in self.bindings
        )

    def scope(self, roles: set[str]) -> Q:
        """The pipelines where the caller holds one of `roles`, as a filter."""
        parts = []
        for b in self.bindings:
            if b.role not in roles:
                continue
            part = Q()
            if b.application != "*":
                part &= Q(application__name=b.application)
            if b.environment != "*":
                part &= Q(environment__name=b.environment)
            parts.append(part)
        return Q(*parts, join_type="OR") if parts else Q(id__in=[])


@strawberry.type
class User:
    model: strawberry.Private[models.User]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(f"User:{self.model.id}")

    @strawberry.field
    def email(self) -> str:
        return self.model.email

    @strawberry.field
    def name(self) -> str:
        return self.model.name


@strawberry.type
class Application:
    model: strawberry.Private[models.Application]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(f"Application:{self.model.id}")

    @strawberry.field
    def name(self) -> str:
        return self.model.name


@strawberry.type
class Environment:
    model: strawberry.Private[models.Environment]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(f"Environment:{self.model.id}")

    @strawberry.field
    def name(self) -> str:
        return self.model.name


@strawberry.type
class Image:
    model: strawberry.Private[models.Image]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(f"Image:{self.model.id}")

    @strawberry.field
    def repository(self) -> str:
        return self.model.repository

    @strawberry.field
    def tag(self) -> str:
        return self.model.tag

    @strawberry.field
    def digest(self) -> str:
        return self.model.digest

    @strawberry.field
    def created_at(self) -> datetime:
        return self.model.created_at

    @strawberry.field
    async def built_by(self) -> User:
        return User(model=await self.model.built_by)

    @strawberry.field
    async def approval_state(self, info: Info, pipeline_id: strawberry.ID) -> ApprovalState | None:
        pipeline = await models.Pipeline.get_or_none(id=number("Pipeline", pipeline_id))
        if pipeline is None:
            return None
        await pipeline.fetch_related("application", "environment")
        caller: Caller = info.context["caller"]
        if not caller.may(SEES, pipeline.application.name, pipeline.environment.name):
            return None
        latest = (
            await models.ApprovalRequest.filter(image_id=self.model.id, pipeline_id=pipeline.id)
            .order_by("-id")
            .first()
        )
        return None if latest is None else effective(latest)


@strawberry.type
class Pipeline:
    model: strawberry.Private[models.Pipeline]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(f"Pipeline:{self.model.id}")

    @strawberry.field
    async def application(self) -> Application:
        return Application(model=await self.model.application)

    @strawberry.field
    async def environment(self) -> Environment:
        return Environment(model=await self.model.environment)

    @strawberry.field
    async def deployable_images(self) -> list[Image]:
        """Select Image: the application's images approved here (or all of them when the
        pipeline needs no approval), newest first, but not the one running now."""
        pipeline = self.model
        running = (
            await models.Deployment.filter(pipeline_id=pipeline.id, status__in=["PROGRESSING", "HEALTHY"])
            .order_by("-id")
            .first()
        )
        if pipeline.required_approvals == 0:
            images = await models.Image.filter(application_id=pipeline.application_id)
        else:
            images = []
            for request in await models.ApprovalRequest.filter(pipeline_id=pipeline.id, state="APPROVED"):
                if effective(request) == ApprovalState.APPROVED:
                    images.append(await request.image)
        images = [i for i in images if running is None or i.id != running.image_id]
        images.sort(key=lambda i: (i.created_at, i.id), reverse=True)
        return [Image(model=i) for i in images]


@strawberry.type
class Approval:
    model: strawberry.Private[models.Approval]

    @strawberry.field
    def decided_at(self) -> datetime:
        return self.model.decided_at

    @strawberry.field
    def comment(self) -> str | None:
        return self.model.comment

    @strawberry.field
    async def user(self) -> User:
        return User(model=await self.model.user)


@strawberry.type
class ApprovalRequest:
    model: strawberry.Private[models.ApprovalRequest]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(f"ApprovalRequest:{self.model.id}")

    @strawberry.field
    def state(self) -> ApprovalState:
        return effective(self.model)

    @strawberry.field
    def requested_at(self) -> datetime:
        return self.model.requested_at

    @strawberry.field
    def required_approvals(self) -> int:
        return self.model.required_approvals

    @strawberry.field
    async def image(self) -> Image:
        return Image(model=await self.model.image)

    @strawberry.field
    async def pipeline(self) -> Pipeline:
        return Pipeline(model=await self.model.pipeline)

    @strawberry.field
    async def requested_by(self) -> User:
        return User(model=await self.model.requested_by)

    @strawberry.field
    async def approvals(self) -> list[Approval]:
        return [
            Approval(model=a) for a in await models.Approval.filter(request_id=self.model.id).order_by("id")
        ]


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class ApprovalRequestEdge:
    cursor: str
    node: ApprovalRequest


@strawberry.type
class ApprovalRequestConnection:
    edges: list[ApprovalRequestEdge]
    page_info: PageInfo


@strawberry.input
class ApprovalRequestFilter:
    states: list[ApprovalState] | None = None
    pipeline_id: strawberry.ID | None = None
    awaiting_my_approval: bool | None = None


@strawberry.type
class Query:
    @strawberry.field
    async def pipeline(self, info: Info, id: strawberry.ID) -> Pipeline | None:
        pipeline = await models.Pipeline.get_or_none(id=number("Pipeline", id))
        if pipeline is None:
            return None
        await pipeline.fetch_related("application", "environment")
        if not info.context["caller"].may(SEES, pipeline.application.name, pipeline.environment.name):
            return None
        return Pipeline(model=pipeline)

    @strawberry.field
    async def approval_requests(
        self,
        info: Info,
        filter: ApprovalRequestFilter | None = None,
        first: int | None = 20,
        after: str | None = None,
    ) -> ApprovalRequestConnection:
        caller: Caller = info.context["caller"]
        first = 20 if first is None else first
        visible = await models.Pipeline.filter(caller.scope(SEES)).values_list("id", flat=True)
        query = models.ApprovalRequest.filter(pipeline_id__in=list(visible))
        if filter and filter.states is not None:
            query = query.filter(state__in=[s.value for s in filter.states])
        if filter and filter.pipeline_id is not None:
            query = query.filter(pipeline_id=number("Pipeline", filter.pipeline_id))
        if filter and filter.awaiting_my_approval:
            mine = await models.Pipeline.filter(caller.scope(APPROVES)).values_list("id", flat=True)
            me = caller.user.id
            query = (
                query.filter(state="PENDING", pipeline_id__in=list(mine))
                .exclude(requested_by_id=me)
                .exclude(image__built_by_id=me)
                .exclude(id__in=Subquery(models.Approval.filter(user_id=me).values("request_id")))
            )
        if after is not None:
            query = query.filter(id__lt=number("Cursor", after))
        rows = await query.order_by("-id").limit(first + 1)
        wanted = (
            {s.value for s in filter.states} if filter and filter.states is not None else None
        )  # the state a client sees is the effective one
        items = [r for r in rows[:first] if wanted is None or effective(r).value in wanted]
        return ApprovalRequestConnection(
            edges=[
                ApprovalRequestEdge(cursor=f"Cursor:{r.id}", node=ApprovalRequest(model=r)) for r in items
            ],
            page_info=PageInfo(
                has_next_page=len(rows) > first, end_cursor=f"Cursor:{items[-1].id}" if items else None
            ),
        )


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def approve_request(
        self, info: Info, id: strawberry.ID, comment: str | None = None
    ) -> ApprovalRequest:
        caller: Caller = info.context["caller"]
        me = caller.user.id
        async with in_transaction():
            request = await models.ApprovalRequest.get(id=number("ApprovalRequest", id))
            pipeline = await request.pipeline
            await pipeline.fetch_related("application", "environment")
            if not caller.may(APPROVES, pipeline.application.name, pipeline.environment.name):
                raise PermissionError("you may not approve on this pipeline")
            image = await request.image
            if effective(request) != ApprovalState.PENDING:
                raise ValueError(f"the request is {effective(request).value}")
            if me in (request.requested_by_id, image.built_by_id):
                raise PermissionError("the requester and the builder may not approve")
            if await models.Approval.exists(request_id=request.id, user_id=me):
                raise ValueError("you approved it already")
            await models.Approval.create(
                request=request, user_id=me, decided_at=datetime.now(UTC), comment=comment
            )
            if await models.Approval.filter(request_id=request.id).count() >= request.required_approvals:
                request.state = "APPROVED"
                await request.save(update_fields=["state"])
        return ApprovalRequest(model=request)


schema = strawberry.Schema(query=Query, mutation=Mutation)


class NaiveGraphQL(GraphQL):
    async def get_context(self, request, response) -> dict:
        header = request.headers.get("authorization", "")
        token = header.removeprefix("Bearer ").strip()
        found = await models.ApiToken.get_or_none(token_hash=hashlib.sha256(token.encode()).hexdigest())
        now = datetime.now(UTC)
        if found is None or found.revoked_at is not None or (found.expires_at and found.expires_at <= now):
            raise PermissionError("bad token")
        user = await found.user
        if not user.is_active:
            raise PermissionError("inactive user")
        bindings = await models.RoleBinding.filter(user_id=user.id)
        return {"request": request, "response": response, "caller": Caller(user, bindings)}


def tortoise_config(database_url: str) -> dict:
    return {
        "connections": {"default": database_url},
        "apps": {"models": {"models": ["bench.naive.models"], "default_connection": "default"}},
        "use_tz": True,
        "timezone": "UTC",
    }


def create_app(database_url: str) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(_app):
        # Set up in the lifespan task, used by every request task: global, as Greenlight does.
        await Tortoise.init(config=tortoise_config(database_url), _enable_global_fallback=True)
        if database_url.startswith("sqlite"):  # wait for another process's write, as Greenlight does
            await Tortoise.get_connection("default").execute_script("PRAGMA busy_timeout = 5000")
        try:
            yield
        finally:
            await Tortoise.close_connections()

    graphql = NaiveGraphQL(schema)
    return Starlette(routes=[Route("/graphql", graphql, methods=["GET", "POST"])], lifespan=lifespan)


def app_from_environment() -> Starlette:
    return create_app(os.environ["GREENLIGHT_DATABASE_URL"])
