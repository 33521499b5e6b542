"""R25: every state change is written to the audit log, in the transaction that made it."""

from __future__ import annotations

from typing import Any

from greenlight.models import AuditEvent
from greenlight.workflow.tx import announce

PUBLISHED = ("ApprovalRequest", "Deployment")


async def record(
    action: str,
    obj: Any,
    *,
    actor_id: int | None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    application: str | None = None,
    environment: str | None = None,
) -> None:
    """Append one event, and announce changes of requests and deployments to subscribers.

    `actor_id` None means the system acted on its own.
    """
    object_type = type(obj).__name__
    await AuditEvent.create(
        action=action,
        object_type=object_type,
        object_id=obj.id,
        actor_id=actor_id,
        before=before,
        after=after,
        application=application,
        environment=environment,
    )
    if object_type in PUBLISHED:
        await announce(object_type, obj.id)
