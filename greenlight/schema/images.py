"""Images CI registered: what each is (digest, commit, branch, build, labels), the filters of
the image lists, and the checks CI reports on images."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from greenlight import models
from greenlight.schema import ids
from greenlight.schema.arguments import described
from greenlight.schema.catalog import Application, Environment
from greenlight.schema.context import Info
from greenlight.schema.enums import ApprovalState, described_enum
from greenlight.schema.identity import User, user_of
from greenlight.schema.loaders import now_or_later
from greenlight.schema.nodes import Node
from greenlight.workflow import images, reads

if TYPE_CHECKING:
    from greenlight.schema.requests import ApprovalRequest

CheckStatus = described_enum(
    models.CheckStatus,
    "Where a CI check on an image stands.",
    {
        "PASSED": "The check passed: it counts toward a pipeline's requiredChecks.",
        "FAILED": "The check failed: approving and deploying where it is required are CHECKS_NOT_PASSED.",
        "PENDING": "The check is running: not passed yet.",
    },
)


@strawberry.type(description="A free key/value label CI gave an image when registering it.")
class Label:
    key: str = strawberry.field(description="1 to 63 letters, digits, '.', '_', '-' or '/'; once per image.")
    value: str = strawberry.field(description="At most 255 characters.")


@strawberry.input(description="A label to record on a registered image.")
class LabelInput:
    key: str = strawberry.field(
        description="1 to 63 letters, digits, '.', '_', '-' or '/', starting with a letter or digit; each key once."
    )
    value: str = strawberry.field(description="At most 255 characters, no control characters.")


@strawberry.input(description="Images carrying a label: the key, and optionally its value.")
class LabelFilter:
    key: str = strawberry.field(description="The label's key.")
    value: str | None = strawberry.field(default=None, description="Its value; left out: any value.")


@strawberry.input(description="Which images to list; every field given must match.")
class ImageFilter:
    branch: str | None = strawberry.field(default=None, description="Only images built from this branch.")
    commit: str | None = strawberry.field(
        default=None,
        description="Only images built from this commit: 7 to 40 hex digits, matching the commits starting with them.",
    )
    label: LabelFilter | None = strawberry.field(default=None, description="Only images with this label.")


def image_filter(found: ImageFilter | None) -> images.ImageFilter | None:
    """The GraphQL filter as the workflow's (validated; None when nothing is asked)."""
    if found is None:
        return None
    label = found.label
    return images.ImageFilter.of(
        found.branch,
        found.commit,
        None if label is None else label.key,
        None if label is None else label.value,
    )


@strawberry.input(description="A result CI reports about an image.")
class ReportImageCheckInput:
    image_id: strawberry.ID = strawberry.field(description='"Image:<number>".')
    name: str = strawberry.field(
        description="The check, e.g. tests or vulnerability-scan: 1 to 63 lowercase letters, digits, '.', '_' or '-'. Reporting a name again updates it."
    )
    status: CheckStatus = strawberry.field(description="PASSED, FAILED or PENDING.")
    url: str | None = strawberry.field(
        default=None, description="Where the result can be read: an http:// or https:// URL."
    )
    summary: str | None = strawberry.field(
        default=None, description="A line or two, at most 2000 characters."
    )


@strawberry.type(
    description="The latest result CI reported for one named check of an image (reportImageCheck); every report is audited."
)
class ImageCheck(Node):
    model: strawberry.Private[models.ImageCheck]

    name: str = strawberry.field(description="The check's name, e.g. tests.")
    status: CheckStatus = strawberry.field(description="Its latest status.")
    url: str | None = strawberry.field(description="Where its result can be read.")
    summary: str | None = strawberry.field(description="What CI said about it.")
    reported_at: datetime = strawberry.field(description="When it was last reported.")

    @strawberry.field(description="Whose credentials reported it last.")
    def reported_by(self, info: Info) -> User:
        return user_of(info, self.model.reported_by_id)

    @classmethod
    def from_model(cls, model: models.ImageCheck) -> ImageCheck:
        return cls(
            model=model,
            name=model.name,
            status=models.CheckStatus(model.status),
            url=model.url,
            summary=model.summary,
            reported_at=model.reported_at,
        )


@strawberry.type(
    description="A container image registered by CI for an application (R3); the same digest twice is a CONFLICT."
)
class Image(Node):
    model: strawberry.Private[models.Image]

    application: Application

    @strawberry.field(description="The application it was built for.")
    async def application(self, info: Info) -> Application:
        return Application.from_model(await info.context.loaders.application.load(self.model.application_id))

    repository: str = strawberry.field(description="Where it is stored, e.g. registry.example.com/acme/shop.")
    tag: str = strawberry.field(description="Its tag, e.g. 1.4.2.")
    digest: str = strawberry.field(description="sha256: and 64 lowercase hex digits; unique per application.")

    built_by: User

    @strawberry.field(description="The user whose credentials registered it; never an approver of it (R10).")
    def built_by(self, info: Info) -> User:
        return user_of(info, self.model.built_by_id)

    created_at: datetime = strawberry.field(description="When it was registered.")
    commit: str | None = strawberry.field(
        description="The commit it was built from (7 to 40 lowercase hex digits); null if not given."
    )
    branch: str | None = strawberry.field(description="The branch it was built from; null if not given.")
    build_url: str | None = strawberry.field(
        description="The CI build that made it (http or https); null if not given."
    )

    @strawberry.field(description="The labels CI gave it, by key.")
    async def labels(self, info: Info) -> list[Label]:
        rows = await info.context.loaders.image_labels.load(self.model.id)
        return [Label(key=r.key, value=r.value) for r in rows]

    @strawberry.field(description="The latest result of each check CI reported on it, by name.")
    async def checks(self, info: Info) -> list[ImageCheck]:
        return [ImageCheck.from_model(c) for c in await info.context.loaders.image_checks.load(self.model.id)]

    @strawberry.field(
        description="Its history on one pipeline: every request, oldest first, each asking again naming the "
        "rejected one before it (previousRequest). NOT_FOUND for a pipeline the caller cannot see (R1)."
    )
    async def approval_requests(
        self,
        info: Info,
        pipeline_id: Annotated[strawberry.ID, strawberry.argument(description="The pipeline.")],
    ) -> list[Annotated[ApprovalRequest, strawberry.lazy("greenlight.schema.requests")]]:
        from greenlight.schema.requests import ApprovalRequest

        pid = ids.decode("Pipeline", pipeline_id, "pipelineId")
        found = await reads.request_chain(info.context.actor, self.model.id, pid)
        return [ApprovalRequest.from_model(r) for r in found]

    @strawberry.field(description="Environments where this image is active.")
    async def active_on(self, info: Info) -> list[Environment]:
        found = await info.context.loaders.active_on(info.context.actor).load(self.model.id)
        return [Environment.from_model(e) for e in found]

    @strawberry.field(description="The latest request's state on that pipeline; null if never requested.")
    def approval_state(
        self,
        info: Info,
        pipeline_id: Annotated[strawberry.ID, described("A pipeline of the image's application.")],
    ) -> ApprovalState | None:
        pid = ids.decode("Pipeline", pipeline_id, "pipelineId")
        loader = info.context.loaders.approval_state(info.context.actor)
        return now_or_later(loader, (self.model.id, pid), lambda state: state)

    @classmethod
    def from_model(cls, model: models.Image) -> Image:
        return cls(
            model=model,
            repository=model.repository,
            tag=model.tag,
            digest=model.digest,
            created_at=model.created_at,
            commit=model.commit,
            branch=model.branch,
            build_url=model.build_url,
        )
