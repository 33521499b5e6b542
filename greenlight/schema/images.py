"""What an image is beyond its digest (commit, branch, build, labels), the filters of the
image lists, and the checks CI reports on images."""

from __future__ import annotations

from datetime import datetime

import strawberry

from greenlight import models
from greenlight.schema.context import Info
from greenlight.schema.enums import described_enum
from greenlight.schema.types import Node, User
from greenlight.workflow import images

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
    async def reported_by(self, info: Info) -> User:
        return User.from_model(await info.context.loaders.user.load(self.model.reported_by_id))

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
