"""Sends the email outbox: retries with exponential backoff while the SMTP server is down
or refuses, survives restarts (the outbox is in the database), and with several
processes each email is claimed by one of them (FOR UPDATE SKIP LOCKED and a lease).
Emails that keep failing are marked failed; super-admins see and retry them."""

from __future__ import annotations

import logging
from email.message import EmailMessage
from email.utils import format_datetime

import aiosmtplib

from greenlight import outbox
from greenlight.models import EmailOutbox, User
from greenlight.workflow.clock import now

log = logging.getLogger("greenlight.email")

MAX_BACKOFF_SECONDS = 600.0
LEASE_SECONDS = 120.0


def compose(settings, email: EmailOutbox) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = email.to_address
    message["Subject"] = email.subject
    message["Message-ID"] = email.message_id
    message["Date"] = format_datetime(email.created_at)
    message.set_content(email.text_body)
    message.add_alternative(email.html_body, subtype="html")
    return message


async def _send(settings, email: EmailOutbox) -> str | None:
    """None when the SMTP server accepted the email, else what went wrong."""
    security = settings.smtp_security
    try:
        await aiosmtplib.send(
            compose(settings, email),
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=settings.smtp_password,
            use_tls=security == "tls",
            start_tls=security == "starttls",
            timeout=settings.smtp_timeout_seconds,
        )
    except (aiosmtplib.SMTPException, OSError) as error:
        return f"{type(error).__name__}: {error}"
    return None


async def deliver_due(settings) -> int:
    """Send every due email; returns how many the SMTP server accepted."""
    sent = 0
    while (email := await outbox.claim(EmailOutbox, "sent_at", LEASE_SECONDS)) is not None:
        recipient = await User.get(id=email.recipient_id)
        if not recipient.is_active:
            email.failed_at = now()
            email.last_error = "not sent: the recipient was deactivated"
            await email.save(update_fields=["failed_at", "last_error"])
            continue
        error = await _send(settings, email)
        await outbox.record_attempt(
            email,
            "sent_at",
            error,
            max_attempts=settings.email_max_attempts,
            backoff_seconds=settings.email_backoff_seconds,
            max_backoff_seconds=MAX_BACKOFF_SECONDS,
        )
        if error is None:
            sent += 1
        else:
            log.warning("email %s attempt %s failed: %s", email.id, email.attempts, error)
    return sent
