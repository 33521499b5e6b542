"""The email outbox as super-admins see it: what failed, and sending it again."""

from __future__ import annotations

from greenlight.clock import now
from greenlight.errors import InvalidState, not_found
from greenlight.models import EmailOutbox
from greenlight.policies import Actor
from greenlight.tx import transaction
from greenlight.workflow import audit
from greenlight.workflow.guards import require_admin
from greenlight.workflow.reads import Page, page


async def list_emails(actor: Actor, failed_only: bool, first: int | None, after_id: int | None) -> Page:
    require_admin(actor, "read the email outbox")
    query = EmailOutbox.all()
    if failed_only:
        query = query.filter(failed_at__isnull=False)
    return await page(query, first, after_id)


async def email(actor: Actor, email_id: int) -> EmailOutbox:
    require_admin(actor, "read the email outbox")
    found = await EmailOutbox.get_or_none(id=email_id)
    if found is None:
        raise not_found("email")
    return found


async def retry_email(actor: Actor, email_id: int) -> EmailOutbox:
    """A failed email goes back to the queue, with its attempts counted afresh."""
    require_admin(actor, "retry emails")
    async with transaction():
        email = await EmailOutbox.select_for_update().get_or_none(id=email_id)
        if email is None:
            raise not_found("email")
        if email.failed_at is None:
            raise InvalidState("only a failed email can be retried")
        email.failed_at = None
        email.attempts = 0
        email.next_attempt_at = now()
        await email.save(update_fields=["failed_at", "attempts", "next_attempt_at"])
        await audit.record("retry_email", email, actor_id=actor.id)
    return email
