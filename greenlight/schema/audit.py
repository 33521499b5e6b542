"""The audit log (R25): who did what to which object, when."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.scalars import JSON

from greenlight import models
from greenlight.schema import ids
from greenlight.schema.context import Info
from greenlight.schema.identity import User, user_of
from greenlight.schema.nodes import Node


@strawberry.type(
    description="One entry of the audit log (R25): who did what to which object, when, and the states before and after."
)
class AuditEvent(Node):
    model: strawberry.Private[models.AuditEvent]

    at: datetime = strawberry.field(description="When it happened.")

    actor: User | None

    @strawberry.field(description="Null when Greenlight acted on its own.")
    def actor(self, info: Info) -> User | None:
        if self.model.actor_id is None:
            return None
        return user_of(info, self.model.actor_id)

    action: str = strawberry.field(description='What was done, e.g. "approve", "deploy", "grant_role".')

    object_id: strawberry.ID

    @strawberry.field(description="The id of the object acted on.")
    def object_id(self) -> strawberry.ID:
        return strawberry.ID(ids.encode(self.model.object_type, self.model.object_id))

    application: str | None = strawberry.field(description="The application concerned, if any.")
    environment: str | None = strawberry.field(description="The environment concerned, if any.")
    before: JSON | None = strawberry.field(
        description="The object's state before, as JSON; null for a creation."
    )
    after: JSON | None = strawberry.field(description="Its state after, as JSON; null for a deletion.")

    @classmethod
    def from_model(cls, model: models.AuditEvent) -> AuditEvent:
        return cls(
            model=model,
            at=model.at,
            action=model.action,
            application=model.application,
            environment=model.environment,
            before=model.before,
            after=model.after,
        )
