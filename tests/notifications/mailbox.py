"""What the notice and reminder tests share: email on, against the real SMTP receiver of
test_email (aiosmtpd on loopback), and reading who was written to and who received what."""

from __future__ import annotations

from greenlight.config import Settings
from greenlight.models import EmailOutbox
from greenlight.notifications import dispatcher
from tests.notifications.test_email import PUBLIC_URL, SECRET, SENDER, SmtpServer, free_port

SETTINGS = "mutation($on: Boolean!) { updateMyNotificationSettings(emailNotices: $on) { id emailNotices } }"


def start_smtp() -> SmtpServer:
    server = SmtpServer(free_port())
    server.start()
    return server


def email_settings(database_url: str, smtp: SmtpServer) -> Settings:
    return Settings(
        database_url=database_url,
        background_jobs=False,
        mutations_per_minute=0,
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        smtp_from=SENDER,
        smtp_security="none",
        secret_key=SECRET,
        public_url=PUBLIC_URL,
    )


async def written(kind: str, request_id: int | None = None) -> list[str]:
    """The addresses emails of `kind` were written to (the outbox), sorted."""
    query = EmailOutbox.filter(kind=kind)
    if request_id is not None:
        query = query.filter(request_id=request_id)
    return sorted(await query.values_list("to_address", flat=True))


async def received(settings: Settings, smtp: SmtpServer) -> dict[str, list[str]]:
    """Send the outbox; every address the SMTP server received mail for, with the subjects."""
    await dispatcher.deliver_due(settings)
    got: dict[str, list[str]] = {}
    for mail in smtp.received:
        for address in mail.rcpt_tos:
            got.setdefault(address, []).append(mail.message["Subject"])
    return got


def mail(name: str) -> str:
    return f"{name}@example.com"
