"""The bare Strawberry server Greenlight is measured against: the same field names and
answer shapes for the benchmark's three operations, served from static lists built once
at import. No database, no authentication, no extensions, no caches: strawberry's plain
ASGI app, resolvers returning objects already in memory."""

from __future__ import annotations

import enum
import hashlib
from datetime import UTC, datetime, timedelta

import strawberry
from strawberry.asgi import GraphQL

T0 = datetime(2025, 1, 1, tzinfo=UTC)
COUNT = 50


@strawberry.enum
class ApprovalState(enum.Enum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"
    CONSUMED = "CONSUMED"


@strawberry.type
class User:
    id: strawberry.ID
    email: str
    name: str


@strawberry.type
class Application:
    id: strawberry.ID
    name: str


@strawberry.type
class Environment:
    id: strawberry.ID
    name: str


@strawberry.type
class Image:
    id: strawberry.ID
    repository: str
    tag: str
    digest: str
    built_by: User
    created_at: datetime
    state: strawberry.Private[ApprovalState | None]

    @strawberry.field
    def approval_state(self, pipeline_id: strawberry.ID) -> ApprovalState | None:
        return self.state


@strawberry.type
class Approval:
    decided_at: datetime
    comment: str | None
    user: User


@strawberry.type
class Pipeline:
    id: strawberry.ID
    application: Application
    environment: Environment
    images: strawberry.Private[list[Image]]

    @strawberry.field
    def deployable_images(self) -> list[Image]:
        return self.images


@strawberry.type
class ApprovalRequest:
    id: strawberry.ID
    image: Image
    pipeline: Pipeline
    state: ApprovalState
    requested_by: User
    requested_at: datetime
    comment: str | None
    required_approvals: int
    approvals: list[Approval]
    expires_at: datetime | None


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
    total_count: int


@strawberry.input
class ApprovalRequestFilter:
    states: list[ApprovalState] | None = None
    pipeline_id: strawberry.ID | None = None
    awaiting_my_approval: bool | None = None


def _user(n: int) -> User:
    return User(id=strawberry.ID(f"User:{n}"), email=f"user{n:05d}@example.com", name=f"User {n}")


def _image(n: int, state: ApprovalState | None) -> Image:
    return Image(
        id=strawberry.ID(f"Image:{n}"),
        repository="registry.example.com/acme/app-0000",
        tag=f"1.{n // 1000}.0",
        digest="sha256:" + hashlib.sha256(f"image-{n}".encode()).hexdigest(),
        built_by=_user(1000 + n % 9000),
        created_at=T0 + timedelta(seconds=n),
        state=state,
    )


_APPLICATION = Application(id=strawberry.ID("Application:1"), name="app-0000")
_ENVIRONMENT = Environment(id=strawberry.ID("Environment:1"), name="env-00")
SELECT_PIPELINE = Pipeline(
    id=strawberry.ID("Pipeline:1"),
    application=_APPLICATION,
    environment=_ENVIRONMENT,
    images=[_image(99_000 + n, ApprovalState.APPROVED) for n in range(COUNT)],
)


def _request(n: int, approvals: int) -> ApprovalRequest:
    requested_at = T0 + timedelta(seconds=n)
    return ApprovalRequest(
        id=strawberry.ID(f"ApprovalRequest:{n}"),
        image=_image(90_000 + n, None),
        pipeline=Pipeline(
            id=strawberry.ID(f"Pipeline:{n % 400}"),
            application=Application(id=strawberry.ID(f"Application:{n % 20}"), name=f"app-{n % 20:04d}"),
            environment=Environment(id=strawberry.ID(f"Environment:{n % 19}"), name=f"env-{n % 19:02d}"),
            images=[],
        ),
        state=ApprovalState.PENDING,
        requested_by=_user(2000 + n % 8000),
        requested_at=requested_at,
        comment=None,
        required_approvals=2,
        approvals=[
            Approval(decided_at=requested_at + timedelta(minutes=10), comment=None, user=_user(3000 + i))
            for i in range(approvals)
        ],
        expires_at=None,
    )


PENDING = [_request(50_000 - n, n % 2) for n in range(COUNT)]
APPROVED = _request(40_000, 2)


@strawberry.input
class RequestApprovalInput:
    pipeline_id: strawberry.ID
    image_id: strawberry.ID
    approver_ids: list[strawberry.ID] | None = None
    comment: str | None = None
    previous_request_id: strawberry.ID | None = None


REQUESTED = _request(45_000, 0)


@strawberry.type
class Query:
    @strawberry.field
    def pipeline(self, id: strawberry.ID) -> Pipeline | None:
        return SELECT_PIPELINE

    @strawberry.field
    def approval_requests(
        self,
        filter: ApprovalRequestFilter | None = None,
        first: int | None = 20,
        after: str | None = None,
    ) -> ApprovalRequestConnection:
        items = PENDING[: first if first is not None else 20]
        return ApprovalRequestConnection(
            edges=[ApprovalRequestEdge(cursor=f"Cursor:{r.id}", node=r) for r in items],
            page_info=PageInfo(has_next_page=True, end_cursor=f"Cursor:{items[-1].id}" if items else None),
            total_count=len(PENDING),
        )


@strawberry.type
class Mutation:
    @strawberry.mutation
    def approve_request(self, id: strawberry.ID, comment: str | None = None) -> ApprovalRequest:
        return APPROVED

    @strawberry.mutation
    def request_approval(self, input: RequestApprovalInput) -> ApprovalRequest:
        return REQUESTED


schema = strawberry.Schema(query=Query, mutation=Mutation)
app = GraphQL(schema)
