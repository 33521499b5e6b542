"""R25: every state change is written to the audit log, in the transaction that made it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from greenlight.models import AuditEvent
from greenlight.scopes import Scope
from greenlight.tx import announce

PUBLISHED = ("ApprovalRequest", "Deployment")


def event(
    action: str,
    obj: Any,
    *,
    actor_id: int | None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    application: str | None = None,
    environment: str | None = None,
    scope: Scope | None = None,
) -> AuditEvent:
    """One event, not written yet: `record(..., more=[...])` appends it.

    `actor_id` None means the system acted on its own. `scope`: where it happened (its
    application and environment), for a change on one pipeline.
    """
    if scope is not None:
        if application is not None or environment is not None:
            raise ValueError("give the scope, or the application and environment, not both")
        application, environment = scope.application, scope.environment
    return AuditEvent(
        action=action,
        object_type=type(obj).__name__,
        object_id=obj.id,
        actor_id=actor_id,
        before=before,
        after=after,
        application=application,
        environment=environment,
    )


async def record(action: str, obj: Any, *, more: Sequence[AuditEvent] = (), **fields: Any) -> None:
    """Append `event(action, obj, **fields)`, then `more` (built with `event`) in the same
    statement, and announce changes of requests and deployments to subscribers, once per
    changed object (PostgreSQL delivers one of identical notifications of a transaction
    anyway)."""
    first = event(action, obj, **fields)
    events = [first, *more]
    if more:
        await AuditEvent.bulk_create(events)
    else:
        await first.save(force_create=True)
    for object_type, object_id in dict.fromkeys((e.object_type, e.object_id) for e in events):
        if object_type in PUBLISHED:
            await announce(object_type, object_id)
