"""Emails whose delivery outcome cannot be known: at least once, with a stable Message-ID,
and visible. Against an SMTP server of this module's own that can take the message (DATA)
and then never answer, like a server that accepted it and whose answer was lost.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from email import message_from_bytes

import pytest
from prometheus_client import REGISTRY

from greenlight.clock import now
from greenlight.config import Settings
from greenlight.models import EmailOutbox
from greenlight.notifications import dispatcher
from tests.support import free_port

SENDER = "greenlight@example.com"
SECRET = "s" * 40
REQUEST = "mutation($i: RequestApprovalInput!) { requestApproval(input: $i) { id } }"
OUTBOX = """{ notificationOutbox(failedOnly: false) { edges { node {
    id messageId attempts sentAt lastError outcomeUnknownAttempts } } } }"""


class Smtp:
    """A small SMTP server. `after_data`: "ok" answers 250 once the message is in; "silent"
    takes the message and never answers; `refuse_rcpt` refuses every recipient (a failure
    before the message is handed over)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.after_data = "ok"
        self.refuse_rcpt = False
        self.messages: list[bytes] = []  # every message taken in, answered or not
        self.server: asyncio.AbstractServer | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._session, "127.0.0.1", self.port)

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()

    def message_ids(self) -> list[str]:
        return [" ".join(message_from_bytes(m)["Message-ID"].split()) for m in self.messages]

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)

        async def say(line: str) -> None:
            writer.write(line.encode() + b"\r\n")
            await writer.drain()

        try:
            await say("220 test ESMTP")
            while line := await reader.readline():
                verb = line.strip().split(b" ", 1)[0].upper()
                if verb in (b"EHLO", b"HELO"):
                    await say("250 test")
                elif verb == b"MAIL":
                    await say("250 ok")
                elif verb == b"RCPT":
                    await say("550 no such user" if self.refuse_rcpt else "250 ok")
                elif verb == b"DATA":
                    await say("354 go on")
                    data = b""
                    while not data.endswith(b"\r\n.\r\n"):
                        chunk = await reader.readline()
                        if not chunk:
                            return
                        data += chunk
                    self.messages.append(data)
                    if self.after_data == "silent":
                        await reader.read()  # until the client gives up
                        return
                    await say("250 queued")
                elif verb == b"QUIT":
                    await say("221 bye")
                    return
                else:
                    await say("250 ok")
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()


@pytest.fixture
async def smtp():
    server = Smtp()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def settings(database_url, smtp) -> Settings:
    return Settings(
        database_url=database_url,
        background_jobs=False,
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        smtp_from=SENDER,
        smtp_security="none",
        secret_key=SECRET,
        email_backoff_seconds=60.0,  # one attempt per deliver_due; make_due moves time
        smtp_timeout_seconds=1.0,
    )


def unknown_count() -> float:
    return REGISTRY.get_sample_value("greenlight_email_outcome_unknown_total") or 0.0


async def queue_one_email(world) -> EmailOutbox:
    image = await world.register_image("dev")
    await world["dev2"].ok(
        REQUEST,
        {
            "i": {
                "pipelineId": world.ids["shop/prod"],
                "imageId": image,
                "approverIds": [world["approver1"].user_id],
            }
        },
    )
    return await EmailOutbox.get()


async def make_due() -> None:
    await EmailOutbox.all().update(next_attempt_at=now() - timedelta(seconds=1))


async def outbox(world) -> dict:
    (edge,) = (await world["admin"].ok(OUTBOX))["notificationOutbox"]["edges"]
    return edge["node"]


async def test_email_server_silent_after_data_is_sent_again_with_the_same_message_id_and_shown(
    world, settings, smtp
):
    """At least once: a server that took the message and never answered may have delivered
    it, so the email is sent again, with the same Message-ID (receivers deduplicate on it);
    the unknown outcome is counted (metric) and shown to super-admins."""
    email = await queue_one_email(world)
    before = unknown_count()
    smtp.after_data = "silent"
    assert await dispatcher.deliver_due(settings) == 0
    held = await EmailOutbox.get(id=email.id)
    assert held.sent_at is None and held.failed_at is None and held.sending_at is None
    assert held.unknown_outcomes == 1 and held.attempts == 1
    assert unknown_count() == before + 1
    shown = await outbox(world)
    assert shown["outcomeUnknownAttempts"] == 1 and shown["sentAt"] is None

    smtp.after_data = "ok"
    await make_due()
    assert await dispatcher.deliver_due(settings) == 1
    assert smtp.message_ids() == [email.message_id, email.message_id]
    shown = await outbox(world)
    assert shown["outcomeUnknownAttempts"] == 1 and shown["sentAt"] is not None
    assert shown["messageId"] == email.message_id


async def test_email_failure_before_data_is_no_unknown_outcome(world, settings, smtp):
    """A resend after an unknown outcome is rare: a failure before the message is handed over
    (here the server refuses the recipient) is a plain failed attempt, nothing delivered,
    nothing counted as unknown."""
    await queue_one_email(world)
    before = unknown_count()
    smtp.refuse_rcpt = True
    assert await dispatcher.deliver_due(settings) == 0
    held = await EmailOutbox.get()
    assert held.attempts == 1 and held.unknown_outcomes == 0 and held.sending_at is None
    assert "550" in held.last_error
    assert smtp.messages == [] and unknown_count() == before


async def test_email_attempt_killed_after_handing_over_is_counted_and_sent_again(world, settings, smtp):
    """A process killed between the server's acceptance and recording it leaves the email
    marked as being handed over; the next attempt (once the lease is over) counts that
    outcome as unknown and sends the same message again."""
    email = await queue_one_email(world)
    before = unknown_count()
    # What a killed attempt leaves: the lease taken, `sending_at` set, nothing recorded.
    await EmailOutbox.filter(id=email.id).update(
        sending_at=now(), next_attempt_at=now() - timedelta(seconds=1)
    )
    assert await dispatcher.deliver_due(settings) == 1
    held = await EmailOutbox.get(id=email.id)
    assert held.sent_at is not None and held.unknown_outcomes == 1 and held.sending_at is None
    assert unknown_count() == before + 1
    assert smtp.message_ids() == [email.message_id]
    assert (await outbox(world))["outcomeUnknownAttempts"] == 1


async def test_email_sent_normally_has_no_unknown_outcome(world, settings, smtp):
    email = await queue_one_email(world)
    assert await dispatcher.deliver_due(settings) == 1
    held = await EmailOutbox.get(id=email.id)
    assert held.unknown_outcomes == 0 and held.sending_at is None and held.sent_at is not None
    assert smtp.message_ids() == [email.message_id]
