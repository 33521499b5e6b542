"""Inputs of the edits of what was created: renaming and archiving applications and
environments."""

from __future__ import annotations

import strawberry


@strawberry.input(
    description="What to change of an application (super-admins, R2); each field left out keeps its value."
)
class UpdateApplicationInput:
    id: strawberry.ID = strawberry.field(description='"Application:<number>".')
    name: str | None = strawberry.field(
        default=None,
        description="A new name: lowercase [a-z0-9][a-z0-9-]{0,62}, unique; role bindings on the old name follow it.",
    )
    archived: bool | None = strawberry.field(
        default=None,
        description="true: archive (hidden from lists, no new requests or deployments, history kept); false: restore.",
    )


@strawberry.input(
    description="What to change of an environment (super-admins, R2); each field left out keeps its value."
)
class UpdateEnvironmentInput:
    id: strawberry.ID = strawberry.field(description='"Environment:<number>".')
    name: str | None = strawberry.field(
        default=None,
        description="A new name: lowercase [a-z0-9][a-z0-9-]{0,62}, unique; role bindings on the old name follow it.",
    )
    archived: bool | None = strawberry.field(
        default=None,
        description="true: archive (hidden from lists, no new requests or deployments, history kept); false: restore.",
    )
