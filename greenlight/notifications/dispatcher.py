"""Sends the email outbox: retries with exponential backoff while the SMTP server is down
or refuses, survives restarts (the outbox is in the database), and with several
processes each email is claimed by one of them (FOR UPDATE SKIP LOCKED and a lease).
Emails that keep failing are marked failed; super-admins see and retry them."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from email.utils import format_datetime

import aiosmtplib
from prometheus_client import Counter

from greenlight import outbox
from greenlight.clock import now
from greenlight.models import EmailOutbox, User

log = logging.getLogger("greenlight.email")

MAX_BACKOFF_SECONDS = 600.0
LEASE_SECONDS = 120.0

# Served at /metrics with the others (greenlight.observability.metrics).
EMAIL_OUTCOME_UNKNOWN = Counter(
    "greenlight_email_outcome_unknown_total",
    "Email attempts whose outcome could not be known once the message was handed to the SMTP "
    "server; each such email is sent again with the same Message-ID, so a receiver may get two",
)


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


class _HandOver(aiosmtplib.SMTP):
    """An SMTP client that runs `before_data` just before handing the message over (DATA):
    from then on a failure other than the server's own refusal leaves the outcome unknown
    (the server may have taken the message and its answer been lost)."""

    def __init__(self, before_data: Callable[[], Awaitable[None]], **options) -> None:
        super().__init__(**options)
        self.before_data = before_data
        self.handed_over = False

    async def data(self, message, /, **options):
        await self.before_data()
        self.handed_over = True
        return await super().data(message, **options)


async def _send(settings, email: EmailOutbox, before_data) -> tuple[str | None, bool]:
    """(None, False) when the SMTP server accepted the email; else what went wrong, and
    whether the email may have been delivered all the same (outcome unknown)."""
    security = settings.smtp_security
    client = _HandOver(
        before_data,
        hostname=settings.smtp_host,
        port=settings.smtp_port,
        username=settings.smtp_username,
        password=settings.smtp_password,
        use_tls=security == "tls",
        start_tls=security == "starttls",
        timeout=settings.smtp_timeout_seconds,
    )
    accepted = False
    try:
        async with client:
            await client.send_message(compose(settings, email))
            accepted = True
    except (aiosmtplib.SMTPException, OSError) as error:
        if accepted:
            return None, False  # only saying goodbye failed
        refused = isinstance(error, aiosmtplib.SMTPResponseException)
        return f"{type(error).__name__}: {error}", client.handed_over and not refused
    return None, False


async def _outcome_unknown(email: EmailOutbox, why: str) -> None:
    email.unknown_outcomes += 1
    EMAIL_OUTCOME_UNKNOWN.inc()
    log.warning(
        "email %s (Message-ID %s) may have been delivered already: %s; it is sent again",
        email.id,
        email.message_id,
        why,
    )


async def deliver_due(settings) -> int:
    """Send every due email; returns how many the SMTP server accepted.

    At least once: an email whose last attempt handed it over and then lost its outcome (the
    process was killed, the connection failed before the server's answer) is sent again,
    with the same Message-ID, and counted in `unknown_outcomes` and the metric
    greenlight_email_outcome_unknown_total. Any other failure happened before the message
    was handed over, and sending again doubles nothing."""
    sent = 0
    while (email := await outbox.claim(EmailOutbox, "sent_at", LEASE_SECONDS)) is not None:
        if email.sending_at is not None:  # the attempt that set it never recorded its outcome
            await _outcome_unknown(email, "the process sending it stopped after handing it over")
            email.sending_at = None
            await email.save(update_fields=["sending_at", "unknown_outcomes"])
        recipient = await User.get(id=email.recipient_id)
        if not recipient.is_active:
            email.failed_at = now()
            email.last_error = "not sent: the recipient was deactivated"
            await email.save(update_fields=["failed_at", "last_error"])
            continue

        async def handing_over(email=email) -> None:
            email.sending_at = now()
            await email.save(update_fields=["sending_at"])

        error, unknown = await _send(settings, email, handing_over)
        if unknown:
            await _outcome_unknown(email, f"the SMTP conversation failed after DATA: {error}")
        email.sending_at = None
        await outbox.record_attempt(
            email,
            "sent_at",
            error,
            max_attempts=settings.email_max_attempts,
            backoff_seconds=settings.email_backoff_seconds,
            max_backoff_seconds=MAX_BACKOFF_SECONDS,
            also=("sending_at", "unknown_outcomes"),
        )
        if error is None:
            sent += 1
        else:
            log.warning("email %s attempt %s failed: %s", email.id, email.attempts, error)
    return sent
