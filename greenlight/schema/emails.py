"""The email outbox, as super-admins read it."""

from __future__ import annotations

from datetime import datetime

import strawberry

from greenlight import models
from greenlight.schema.nodes import Node


@strawberry.type(description="An email in the outbox (super-admins only).")
class OutboxEmail(Node):
    model: strawberry.Private[models.EmailOutbox]

    kind: str = strawberry.field(description='Why it is sent, e.g. "approval_requested", "request_approved".')
    to_address: str = strawberry.field(description="The recipient's address.")
    subject: str = strawberry.field(description="The subject line.")
    message_id: str = strawberry.field(description="The Message-ID header, the same on every attempt.")
    attempts: int = strawberry.field(description="How many times sending was tried.")
    created_at: datetime = strawberry.field(
        description="When it was queued, in the transaction of the change that caused it."
    )
    sent_at: datetime | None = strawberry.field(
        description="When the SMTP server accepted it; null until then."
    )
    failed_at: datetime | None = strawberry.field(
        description="When it was given up (after GREENLIGHT_EMAIL_MAX_ATTEMPTS); retryNotification queues it again."
    )
    last_error: str | None = strawberry.field(description="Why the last attempt failed.")
    outcome_unknown_attempts: int = strawberry.field(
        description=(
            "Attempts whose outcome could not be known after the message was handed to the SMTP "
            "server (the server process was killed, or the connection failed before the "
            "server's answer). Each was followed by another attempt with the same messageId: "
            "the recipient may have received this email more than once."
        )
    )

    @classmethod
    def from_model(cls, model: models.EmailOutbox) -> OutboxEmail:
        return cls(
            model=model,
            kind=model.kind,
            to_address=model.to_address,
            subject=model.subject,
            message_id=model.message_id,
            attempts=model.attempts,
            created_at=model.created_at,
            sent_at=model.sent_at,
            failed_at=model.failed_at,
            last_error=model.last_error,
            outcome_unknown_attempts=model.unknown_outcomes,
        )
