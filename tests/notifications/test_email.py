"""Email notifications (R8) against a real SMTP server on loopback (aiosmtpd):
what the approvers and the requester receive, HTML escaping, the one-click approve pages
(R9 to R16 still apply), and the outbox that never loses nor doubles an email: SMTP down
then up, a restart between write and send, failed emails for super-admins, and two
dispatchers at once (FOR UPDATE SKIP LOCKED on PostgreSQL)."""

from __future__ import annotations

import asyncio
import re
import socket
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from urllib.parse import urlsplit

import httpx
import pytest
from aiosmtpd.controller import Controller

from greenlight import db, jobs, notifications, outbox
from greenlight.app import create_app
from greenlight.clock import now
from greenlight.config import ConfigError, Settings
from greenlight.models import Approval, ApprovalRequest, EmailOutbox, User
from greenlight.notifications import dispatcher, links
from greenlight.workflow.approvals import sweep_expired
from tests.conftest import Client

SENDER = "greenlight@example.com"
SECRET = "k" * 40
PUBLIC_URL = "http://greenlight.test"
MAX_ATTEMPTS = 3
BACKOFF_SECONDS = 60.0
MARKUP = "<script>alert(1)</script>"

REQUEST = """mutation($i: RequestApprovalInput!) {
  requestApproval(input: $i) { id state expiresAt notifiedApprovers { email } }
}"""
READ_REQUEST = """query($id: ID!) {
  approvalRequest(id: $id) { id state approvals { user { email } comment } }
}"""
REJECT = "mutation($id: ID!, $r: String!) { rejectRequest(id: $id, reason: $r) { id state } }"
EXPIRE = "mutation($id: ID!) { expireApproval(id: $id) { id state } }"
ENABLED = "{ notificationsEnabled }"
OUTBOX = """query($f: Boolean, $first: Int) {
  notificationOutbox(failedOnly: $f, first: $first) {
    totalCount
    edges { node { id kind toAddress subject messageId attempts createdAt sentAt failedAt lastError } }
  }
}"""
RETRY = "mutation($id: ID!) { retryNotification(id: $id) { id attempts failedAt sentAt } }"
USERS = "{ users { id email roleBindings { id role application environment } } }"
REVOKE = "mutation($id: ID!) { revokeRole(id: $id) { id } }"


# --- a real SMTP server on loopback -------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage

    @property
    def message_id(self) -> str:
        return self.message["Message-ID"]

    @property
    def text(self) -> str:
        return self.message.get_body(("plain",)).get_content()

    @property
    def html(self) -> str:
        return self.message.get_body(("html",)).get_content()


@dataclass
class SmtpServer:
    """aiosmtpd in its own thread; `stop()` takes it down, `start()` brings it back on the
    same port; `refuse_next` answers 451 to that many emails. Records every email it accepts."""

    port: int
    received: list[Received] = field(default_factory=list)
    controller: Controller | None = None
    refuse_next: int = 0

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's name)
        if self.refuse_next > 0:
            self.refuse_next -= 1
            return "451 4.3.0 Try again later"
        message = message_from_bytes(envelope.content, policy=policy.default)
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"

    def start(self) -> None:
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def to(self, address: str) -> list[Received]:
        return [r for r in self.received if address in r.rcpt_tos]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp():
    server = SmtpServer(free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


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
        public_url=PUBLIC_URL,
        email_max_attempts=MAX_ATTEMPTS,
        email_backoff_seconds=BACKOFF_SECONDS,
    )


# --- helpers ------------------------------------------------------------------------------


def pk(graphql_id: str) -> int:
    return int(graphql_id.split(":")[1])


async def request_approval(
    world,
    image: str,
    approvers: list[str] = (),
    who: str = "dev2",
    pipeline: str = "shop/prod",
    comment: str | None = None,
) -> dict:
    data = await world[who].ok(
        REQUEST,
        {
            "i": {
                "pipelineId": world.ids[pipeline],
                "imageId": image,
                "approverIds": [world[a].user_id for a in approvers],
                "comment": comment,
            }
        },
    )
    return data["requestApproval"]


async def deliver(settings: Settings) -> int:
    return await dispatcher.deliver_due(settings)


async def make_due(**filters) -> None:
    """Time passes: every matching email's next attempt (or lease) is in the past."""
    await EmailOutbox.filter(**filters).update(next_attempt_at=now() - timedelta(seconds=1))


async def approvals_of(world, request_id: str) -> list[str]:
    data = await world["admin"].ok(READ_REQUEST, {"id": request_id})
    return [a["user"]["email"] for a in data["approvalRequest"]["approvals"]]


def approve_link(received: Received) -> str:
    """The path and query of the one-click link in the email text."""
    match = re.search(r"(https?://\S+/one-click/approve\?token=\S+)", received.text)
    assert match, received.text
    url = urlsplit(match.group(1))
    assert f"{url.scheme}://{url.netloc}" == PUBLIC_URL
    return f"{url.path}?{url.query}"


def token_of(received: Received) -> str:
    return approve_link(received).split("token=", 1)[1]


async def click(world, token: str) -> httpx.Response:
    """The confirmation page's Approve button: a form POST."""
    return await world.http.post(
        "/one-click/approve",
        content=f"token={token}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )


async def emailed_request(world, settings, smtp, approvers=("approver1",), comment=None) -> tuple[dict, dict]:
    """A shop/prod request (image built by dev, requested by dev2) whose approver emails
    were delivered; returns (request, {approver name: Received})."""
    image = await world.register_image("dev")
    request = await request_approval(world, image, list(approvers), comment=comment)
    assert await deliver(settings) == len(approvers)
    return request, {a: smtp.to(world[a].email)[-1] for a in approvers}


# --- configuration -------------------------------------------------------------------------


def test_r8_email_on_without_secret_key_is_a_config_error_naming_it():
    env = {"GREENLIGHT_SMTP_HOST": "smtp.example.com", "GREENLIGHT_SMTP_FROM": SENDER}
    with pytest.raises(ConfigError, match="GREENLIGHT_SECRET_KEY"):
        Settings.from_env(env)
    with pytest.raises(ConfigError, match="GREENLIGHT_SECRET_KEY"):
        Settings.from_env({**env, "GREENLIGHT_SECRET_KEY": "too-short"})
    on = Settings.from_env({**env, "GREENLIGHT_SECRET_KEY": SECRET})
    assert on.email_enabled and on.secret_key == SECRET
    assert not Settings.from_env({}).email_enabled


# --- notificationsEnabled ------------------------------------------------------------------


async def test_r8_notifications_enabled_true_when_smtp_configured(world):
    assert (await world["viewer"].ok(ENABLED))["notificationsEnabled"] is True
    assert (await world["dev"].ok(ENABLED))["notificationsEnabled"] is True


async def test_r8_notifications_disabled_without_smtp_queues_nothing(world, settings, database_url, smtp):
    off = Settings(database_url=database_url, background_jobs=False)
    app = create_app(off, manage_database=False)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC_URL) as http:
            dev2 = Client(http, world["dev2"].token)
            assert (await dev2.ok(ENABLED))["notificationsEnabled"] is False
            image = await world.register_image("dev")
            await dev2.ok(
                REQUEST,
                {
                    "i": {
                        "pipelineId": world.ids["shop/prod"],
                        "imageId": image,
                        "approverIds": [world["approver1"].user_id],
                    }
                },
            )
            assert await EmailOutbox.all().count() == 0
            # with email off there is no one-click page either
            token = links.make_token(SECRET, 1, pk(world["approver1"].user_id), now() + timedelta(hours=1))
            page = await http.get(f"/one-click/approve?token={token}")
            assert page.status_code == 404
        assert await deliver(settings) == 0
        assert smtp.received == []
    finally:
        notifications.configure(settings)


# --- what the approvers receive ------------------------------------------------------------


async def test_r8_each_named_approver_gets_one_email_with_the_facts(world, settings, smtp):
    image = await world.register_image("dev", tag="v1.2.3")
    request = await request_approval(
        world, image, ["approver1", "prod_approver", "approver1"], comment="Release 1.2.3, please"
    )
    assert sorted(a["email"] for a in request["notifiedApprovers"]) == [
        "approver1@example.com",
        "prod_approver@example.com",
    ]
    rows = await EmailOutbox.filter(request_id=pk(request["id"])).order_by("id")
    assert [(r.kind, r.to_address, r.sent_at) for r in rows] == [
        ("approval_requested", "approver1@example.com", None),
        ("approval_requested", "prod_approver@example.com", None),
    ]
    assert smtp.received == []  # written to the outbox, not sent yet

    assert await deliver(settings) == 2
    assert Counter(a for r in smtp.received for a in r.rcpt_tos) == Counter(
        {"approver1@example.com": 1, "prod_approver@example.com": 1}
    )
    digest = (
        await world["dev"].ok(
            "query($id: ID!) { approvalRequest(id: $id) { image { digest } } }", {"id": request["id"]}
        )
    )["approvalRequest"]["image"]["digest"]
    expires = datetime.fromisoformat(request["expiresAt"]).strftime("%Y-%m-%d %H:%M")
    by_address = {r.to_address: r for r in rows}
    for received in smtp.received:
        (to,) = received.rcpt_tos
        row = await EmailOutbox.get(id=by_address[to].id)
        assert row.sent_at is not None and row.attempts == 1 and row.failed_at is None
        assert received.message_id == row.message_id
        assert received.message["To"] == to
        assert received.message["From"] == SENDER and received.mail_from == SENDER
        assert received.message.get_content_type() == "multipart/alternative"
        assert received.message["Subject"] == row.subject
        subject = received.message["Subject"]
        assert "registry.example.com/acme/shop:v1.2.3" in subject and "shop" in subject
        assert "prod" in subject
        text = received.text
        for fact in (
            "shop",
            "prod",
            "registry.example.com/acme/shop:v1.2.3",
            digest,
            "dev2@example.com",
            "Release 1.2.3, please",
            expires,
            f"{PUBLIC_URL}/requests/{request['id']}",
        ):
            assert fact in text, (fact, text)
        assert approve_link(received).startswith("/one-click/approve?token=")
        assert "dev@example.com" not in received.rcpt_tos
        html = received.html
        assert digest in html and "Release 1.2.3, please" in html and "/one-click/approve?token=" in html
    # the link is bound to its approver
    assert token_of(smtp.to("approver1@example.com")[0]) != token_of(smtp.to("prod_approver@example.com")[0])

    assert await deliver(settings) == 0  # sent once
    assert len(smtp.received) == 2


async def test_r8_no_named_approvers_no_email(world, settings, smtp):
    image = await world.register_image("dev")
    await request_approval(world, image, [])
    assert await EmailOutbox.all().count() == 0
    assert await deliver(settings) == 0
    assert smtp.received == []


async def test_r8_r9_ineligible_name_queues_no_email(world, settings, smtp):
    """Naming the builder (admin built it) is BAD_USER_INPUT: no request, no email."""
    image = await world.register_image("admin")
    code = await world["dev2"].code(
        REQUEST,
        {
            "i": {
                "pipelineId": world.ids["shop/prod"],
                "imageId": image,
                "approverIds": [world["approver1"].user_id, world["admin"].user_id],
            }
        },
    )
    assert code == "BAD_USER_INPUT"
    assert await EmailOutbox.all().count() == 0
    assert await deliver(settings) == 0
    assert smtp.received == []


async def test_r8_html_escapes_markup_in_comment(world, settings, smtp):
    comment = f"ship it {MARKUP} & <b>now</b>"
    _, mail = await emailed_request(world, settings, smtp, ["approver1"], comment=comment)
    received = mail["approver1"]
    assert comment in received.text
    html = received.html
    assert MARKUP not in html and "<b>now</b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;now&lt;/b&gt;" in html
    # the confirmation page escapes it as well
    page = await world.http.get(approve_link(received))
    assert page.status_code == 200
    assert MARKUP not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text


# --- what the requester receives -----------------------------------------------------------


async def test_r8_requester_told_when_approved(world, settings, smtp):
    image = await world.register_image("dev")
    request = await request_approval(world, image, [])
    await world.approve(request["id"], "approver1")
    assert await EmailOutbox.all().count() == 0  # partial approval tells nobody
    await world.approve(request["id"], "approver2")
    rows = await EmailOutbox.all()
    assert [(r.kind, r.to_address) for r in rows] == [("request_approved", "dev2@example.com")]
    assert await deliver(settings) == 1
    (received,) = smtp.received
    assert received.rcpt_tos == ["dev2@example.com"]
    assert received.message_id == rows[0].message_id
    assert "approved" in received.message["Subject"].lower()
    assert "approved" in received.text and f"{PUBLIC_URL}/requests/{request['id']}" in received.text
    assert "/one-click/" not in received.text


async def test_r8_requester_told_when_rejected_with_reason(world, settings, smtp):
    image = await world.register_image("dev")
    request = await request_approval(world, image, [])
    reason = f"CVE found {MARKUP}"
    await world["approver1"].ok(REJECT, {"id": request["id"], "r": reason})
    rows = await EmailOutbox.all()
    assert [(r.kind, r.to_address) for r in rows] == [("request_rejected", "dev2@example.com")]
    assert await deliver(settings) == 1
    (received,) = smtp.received
    assert received.rcpt_tos == ["dev2@example.com"]
    assert "rejected" in received.message["Subject"].lower()
    assert reason in received.text
    assert MARKUP not in received.html and "CVE found &lt;script&gt;alert(1)&lt;/script&gt;" in received.html


async def test_r8_requester_told_when_approval_expires(world, settings, smtp):
    """expireApproval (R15) by a super-admin, and an expiry written by the sweep (the
    requester letting it expire themself is not told of their own action: test_notices)."""
    _, used = await world.approved_image()
    await world["admin"].ok(EXPIRE, {"id": used})
    image = await world.register_image("dev")
    pending = await request_approval(world, image, [])
    await ApprovalRequest.filter(id=pk(pending["id"])).update(expires_at=now() - timedelta(minutes=1))
    assert await sweep_expired() == 1

    kinds = Counter((r.kind, r.request_id) for r in await EmailOutbox.all())
    assert kinds == Counter(
        {
            ("request_approved", pk(used)): 1,
            ("request_expired", pk(used)): 1,
            ("request_expired", pk(pending["id"])): 1,
        }
    )
    assert await deliver(settings) == 3
    expired = [r for r in smtp.received if "expired" in r.message["Subject"].lower()]
    assert len(expired) == 2
    assert all(r.rcpt_tos == ["dev2@example.com"] for r in smtp.received)
    assert {f"{PUBLIC_URL}/requests/{i}" in r.text for r in expired for i in (used, pending["id"])} == {
        True,
        False,
    }
    assert all("expired" in r.text for r in expired)


async def test_r8_nothing_queued_for_deactivated_requester(world, settings, smtp):
    image = await world.register_image("dev")
    approved = await request_approval(world, image, [])
    rejected = await request_approval(world, await world.register_image("dev"), [])
    await User.filter(id=pk(world["dev2"].user_id)).update(is_active=False)
    await world.approve(approved["id"], "approver1")
    await world.approve(approved["id"], "approver2")
    await world["approver1"].ok(REJECT, {"id": rejected["id"], "r": "no"})
    assert await EmailOutbox.all().count() == 0
    assert await deliver(settings) == 0
    assert smtp.received == []


async def test_r8_email_to_user_deactivated_before_sending_fails_unsent(world, settings, smtp):
    image = await world.register_image("dev")
    await request_approval(world, image, ["approver1", "approver2"])
    await User.filter(id=pk(world["approver2"].user_id)).update(is_active=False)
    assert await deliver(settings) == 1
    assert [r.rcpt_tos for r in smtp.received] == [["approver1@example.com"]]
    row = await EmailOutbox.get(to_address="approver2@example.com")
    assert row.sent_at is None and row.failed_at is not None and "deactivated" in row.last_error


# --- one-click approve ---------------------------------------------------------------------


async def test_r8_one_click_get_shows_confirmation_and_approves_nothing(world, settings, smtp):
    request, mail = await emailed_request(world, settings, smtp, ["approver1"])
    before = await Approval.all().count()
    page = await world.http.get(approve_link(mail["approver1"]))
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "approver1@example.com" in page.text
    assert re.search(r'<form[^>]*method="post"', page.text)
    assert token_of(mail["approver1"]) in page.text
    assert "acknowledge_stale" not in page.text  # not stale: nothing more to tick
    # a mail scanner following it again approves nothing either
    assert (await world.http.get(approve_link(mail["approver1"]))).status_code == 200
    assert await Approval.all().count() == before
    assert await approvals_of(world, request["id"]) == []


async def test_r8_r11_one_click_post_approves_once_second_use_refused(world, settings, smtp):
    request, mail = await emailed_request(world, settings, smtp, ["approver1"])
    token = token_of(mail["approver1"])
    first = await click(world, token)
    assert first.status_code == 200, first.text
    assert await approvals_of(world, request["id"]) == ["approver1@example.com"]
    data = await world["admin"].ok(READ_REQUEST, {"id": request["id"]})
    assert data["approvalRequest"]["state"] == "PENDING"  # 1 of 2 (R12)

    second = await click(world, token)
    assert 400 <= second.status_code < 500
    assert second.headers["content-type"].startswith("text/html")
    assert "<h1>" in second.text and "INVALID_STATE" in second.text
    assert await approvals_of(world, request["id"]) == ["approver1@example.com"]
    assert await Approval.filter(request_id=pk(request["id"])).count() == 1


async def test_r8_one_click_completing_approval_tells_requester(world, settings, smtp):
    request, mail = await emailed_request(world, settings, smtp, ["approver1", "approver2"])
    for name in ("approver1", "approver2"):
        assert (await click(world, token_of(mail[name]))).status_code == 200
    data = await world["admin"].ok(READ_REQUEST, {"id": request["id"]})
    assert data["approvalRequest"]["state"] == "APPROVED"
    # the requester, and the named approver who did not complete it (who hears what)
    assert await deliver(settings) == 2
    assert sorted(a for r in smtp.received[-2:] for a in r.rcpt_tos) == [
        "approver1@example.com",
        "dev2@example.com",
    ]


async def test_r8_one_click_on_a_stale_image_asks_in_page_words_then_approves(world, settings, smtp):
    """Stale images, by email link: the page says the image is older than the one
    running and asks for a tick; a click without it approves nothing and says why in the
    page's words (never the API's acknowledgeStale); with it the approval counts."""
    request, mail = await emailed_request(world, settings, smtp, ["approver1"])
    newer, _ = await world.approved_image()
    await world.deploy(newer)
    token = token_of(mail["approver1"])

    page = await world.http.get(approve_link(mail["approver1"]))
    assert page.status_code == 200
    assert "older than the one running on prod" in page.text
    assert re.search(r'<input type="checkbox" name="acknowledge_stale" value="yes" required>', page.text)

    refused = await click(world, token)
    assert refused.status_code == 409
    assert "STALE_IMAGE" in refused.text and "tick the box" in refused.text
    assert "acknowledgeStale" not in refused.text
    assert await approvals_of(world, request["id"]) == []

    approved = await world.http.post(
        "/one-click/approve",
        content=f"token={token}&acknowledge_stale=yes",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert approved.status_code == 200, approved.text
    assert await approvals_of(world, request["id"]) == ["approver1@example.com"]


@pytest.mark.parametrize("where", ["payload", "signature"])
async def test_r8_one_click_forged_token_refused(world, settings, smtp, where):
    request, mail = await emailed_request(world, settings, smtp, ["approver1"])
    token = token_of(mail["approver1"])
    payload, signature = token.split(".")
    if where == "payload":
        forged = ("B" if payload[0] != "B" else "C") + payload[1:] + "." + signature
    else:
        forged = payload + "." + ("B" if signature[0] != "B" else "C") + signature[1:]
    assert forged != token
    for response in (await world.http.get(f"/one-click/approve?token={forged}"), await click(world, forged)):
        assert 400 <= response.status_code < 500
        assert "<h1>" in response.text and "not valid" in response.text
        assert "<form" not in response.text
    assert await Approval.all().count() == 0


async def test_r8_one_click_token_signed_with_another_key_refused(world, settings, smtp):
    request, _ = await emailed_request(world, settings, smtp, ["approver1"])
    forged = links.make_token(
        "another-secret-" * 3, pk(request["id"]), pk(world["approver1"].user_id), now() + timedelta(hours=1)
    )
    response = await click(world, forged)
    assert 400 <= response.status_code < 500
    assert await Approval.all().count() == 0


async def test_r8_one_click_expired_token_refused(world, settings, smtp):
    request, _ = await emailed_request(world, settings, smtp, ["approver1"])
    expired = links.make_token(
        settings.secret_key, pk(request["id"]), pk(world["approver1"].user_id), now() - timedelta(minutes=1)
    )
    for response in (
        await world.http.get(f"/one-click/approve?token={expired}"),
        await click(world, expired),
    ):
        assert 400 <= response.status_code < 500
        assert "expired" in response.text
    assert await Approval.all().count() == 0


async def test_r8_one_click_link_dies_with_its_request(world, settings, smtp):
    """The emailed link is valid until the request expires: its token's expiry is the
    request's, and once that has passed the link is refused."""
    request, mail = await emailed_request(world, settings, smtp, ["approver1"])
    token = token_of(mail["approver1"])
    link = links.read_token(SECRET, token, now())
    stored = await ApprovalRequest.get(id=pk(request["id"]))
    assert int(link.expires_at.timestamp()) == int(stored.expires_at.timestamp())
    assert (link.request_id, link.user_id) == (pk(request["id"]), pk(world["approver1"].user_id))
    await ApprovalRequest.filter(id=stored.id).update(expires_at=now() - timedelta(seconds=1))
    response = await click(world, token)
    assert 400 <= response.status_code < 500
    assert await Approval.all().count() == 0


async def test_r4_one_click_token_of_user_who_lost_role_refused(world, settings, smtp):
    request, mail = await emailed_request(world, settings, smtp, ["approver1"])
    users = (await world["admin"].ok(USERS))["users"]
    (binding,) = next(u for u in users if u["email"] == "approver1@example.com")["roleBindings"]
    assert binding["role"] == "IMAGE_APPROVER"
    await world["admin"].ok(REVOKE, {"id": binding["id"]})
    response = await click(world, token_of(mail["approver1"]))
    assert 400 <= response.status_code < 500
    assert "<h1>" in response.text
    assert await approvals_of(world, request["id"]) == []
    assert await Approval.all().count() == 0


async def test_r8_one_click_token_of_deactivated_user_refused(world, settings, smtp):
    request, mail = await emailed_request(world, settings, smtp, ["approver1"])
    await User.filter(id=pk(world["approver1"].user_id)).update(is_active=False)
    response = await click(world, token_of(mail["approver1"]))
    assert 400 <= response.status_code < 500
    assert await Approval.all().count() == 0


async def test_r10_builder_and_requester_can_never_approve_by_link(world, settings, smtp):
    """Super-admin admin built the image, super-admin admin2 requested: neither can be named
    (R9), and even a validly signed link for them is refused with SELF_APPROVAL."""
    image = await world.register_image("admin")
    request = await request_approval(world, image, ["approver1"], who="admin2")
    for name in ("admin", "admin2"):
        code = await world["admin2"].code(
            REQUEST,
            {
                "i": {
                    "pipelineId": world.ids["shop/prod"],
                    "imageId": await world.register_image("admin"),
                    "approverIds": [world[name].user_id],
                }
            },
        )
        assert code == "BAD_USER_INPUT"
    assert [r.to_address for r in await EmailOutbox.all()] == ["approver1@example.com"]
    for name in ("admin", "admin2"):
        token = links.make_token(
            SECRET, pk(request["id"]), pk(world[name].user_id), now() + timedelta(hours=1)
        )
        response = await click(world, token)
        assert response.status_code == 409, response.text
        assert "SELF_APPROVAL" in response.text
    assert await approvals_of(world, request["id"]) == []
    assert await Approval.all().count() == 0


# --- never lost, never doubled -------------------------------------------------------------


async def test_r8_smtp_down_retried_then_delivered_exactly_once(world, settings, smtp):
    smtp.stop()
    image = await world.register_image("dev")
    request = await request_approval(world, image, ["approver1", "approver2", "prod_approver"])
    rows = await EmailOutbox.filter(request_id=pk(request["id"])).order_by("id")
    assert len(rows) == 3

    before = now()
    assert await deliver(settings) == 0
    after = now()
    for row in await EmailOutbox.all():
        assert row.attempts == 1 and row.sent_at is None and row.failed_at is None
        assert row.last_error
        assert before + timedelta(seconds=BACKOFF_SECONDS - 1) <= row.next_attempt_at
        assert row.next_attempt_at <= after + timedelta(seconds=BACKOFF_SECONDS + 1)

    smtp.start()
    assert await deliver(settings) == 0  # not due yet: backoff
    assert smtp.received == []

    # second failure: the backoff doubles
    smtp.stop()
    await make_due()
    before = now()
    assert await deliver(settings) == 0
    after = now()
    for row in await EmailOutbox.all():
        assert row.attempts == 2 and row.failed_at is None
        assert before + timedelta(seconds=2 * BACKOFF_SECONDS - 1) <= row.next_attempt_at
        assert row.next_attempt_at <= after + timedelta(seconds=2 * BACKOFF_SECONDS + 1)

    smtp.start()
    await make_due()
    assert await deliver(settings) == 3
    assert await deliver(settings) == 0
    counts = Counter(r.message_id for r in smtp.received)
    assert counts == Counter({row.message_id: 1 for row in rows})
    assert Counter(a for r in smtp.received for a in r.rcpt_tos) == Counter(
        {f"{n}@example.com": 1 for n in ("approver1", "approver2", "prod_approver")}
    )
    for row in await EmailOutbox.all():
        assert row.sent_at is not None and row.attempts == 3 and row.last_error is None


async def test_r8_smtp_refusal_retried_with_same_message_id(world, settings, smtp):
    image = await world.register_image("dev")
    await request_approval(world, image, ["approver1"])
    (row,) = await EmailOutbox.all()
    smtp.refuse_next = 1
    assert await deliver(settings) == 0
    refused = await EmailOutbox.get(id=row.id)
    assert refused.attempts == 1 and refused.sent_at is None and refused.failed_at is None
    assert "451" in refused.last_error and refused.next_attempt_at > now()
    assert smtp.received == []
    await make_due()
    assert await deliver(settings) == 1
    assert [r.message_id for r in smtp.received] == [row.message_id]


async def test_r8_background_round_sends_emails_and_expiry(world, settings, smtp):
    """The periodic job of every process (jobs.run_once) sweeps expiries and sends the outbox."""
    image = await world.register_image("dev")
    request = await request_approval(world, image, ["approver1"])
    await ApprovalRequest.filter(id=pk(request["id"])).update(expires_at=now() - timedelta(minutes=1))
    await jobs.run_once(settings)
    assert sorted((r.rcpt_tos[0], r.message["Subject"].split(":")[0]) for r in smtp.received) == [
        ("approver1@example.com", "[Greenlight] Approval requested"),
        ("approver1@example.com", "[Greenlight] Request expired without being used"),
        ("dev2@example.com", "[Greenlight] Your request expired without being used"),
    ]


async def test_r8_restart_between_outbox_write_and_send_still_delivers(world, settings, smtp, database_url):
    image = await world.register_image("dev")
    await request_approval(world, image, ["approver1", "approver2"])
    (row1, row2) = await EmailOutbox.all().order_by("id")
    # one email was claimed by the process just before it died; its lease runs out later
    claimed = await outbox.claim(EmailOutbox, "sent_at", dispatcher.LEASE_SECONDS)
    assert claimed.id == row1.id

    # the process dies; a new one starts on the same database
    await db.close()
    notifications.configure(Settings(database_url=database_url, background_jobs=False))
    await db.connect(database_url)
    app = create_app(settings, manage_database=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC_URL) as http:
        admin = Client(http, world["admin"].token)
        assert (await admin.ok(ENABLED))["notificationsEnabled"] is True
        nodes = [e["node"] for e in (await admin.ok(OUTBOX, {"f": False}))["notificationOutbox"]["edges"]]
        assert sorted(n["messageId"] for n in nodes) == sorted([row1.message_id, row2.message_id])
        assert all(n["sentAt"] is None for n in nodes)

        assert await deliver(settings) == 1  # the unclaimed one; the other is leased
        assert [r.message_id for r in smtp.received] == [row2.message_id]
        await make_due(id=row1.id)  # the dead process's lease has run out
        assert await deliver(settings) == 1
        assert await deliver(settings) == 0
    assert Counter(r.message_id for r in smtp.received) == Counter({row1.message_id: 1, row2.message_id: 1})
    assert await EmailOutbox.filter(sent_at__isnull=True).count() == 0


async def test_r8_failed_after_max_attempts_visible_to_admins_and_retried(world, settings, smtp):
    # one email sent fine, then the SMTP server goes away for good
    image = await world.register_image("dev")
    await request_approval(world, image, ["approver1"])
    assert await deliver(settings) == 1
    (sent_first,) = await EmailOutbox.all()
    smtp.stop()
    other = await request_approval(world, await world.register_image("dev"), ["approver2"])
    failing = await EmailOutbox.get(request_id=pk(other["id"]))
    for attempt in range(1, MAX_ATTEMPTS + 1):
        assert await deliver(settings) == 0
        row = await EmailOutbox.get(id=failing.id)
        assert row.attempts == attempt
        assert (row.failed_at is not None) == (attempt == MAX_ATTEMPTS)
        await make_due(id=failing.id)
    row = await EmailOutbox.get(id=failing.id)
    assert row.sent_at is None and row.last_error
    assert await deliver(settings) == 0  # a failed email is not tried again by itself
    assert (await EmailOutbox.get(id=failing.id)).attempts == MAX_ATTEMPTS

    failed = (await world["admin"].ok(OUTBOX, {"f": True}))["notificationOutbox"]
    assert failed["totalCount"] == 1
    (node,) = [e["node"] for e in failed["edges"]]
    assert node["id"] == f"OutboxEmail:{failing.id}"
    assert node["kind"] == "approval_requested" and node["toAddress"] == "approver2@example.com"
    assert node["messageId"] == failing.message_id and node["subject"] == failing.subject
    assert node["attempts"] == MAX_ATTEMPTS and node["failedAt"] and node["lastError"]
    assert node["sentAt"] is None
    everything = (await world["admin"].ok(OUTBOX, {"f": False}))["notificationOutbox"]
    assert everything["totalCount"] == 2
    assert [e["node"]["id"] for e in everything["edges"]] == [
        node["id"],
        f"OutboxEmail:{sent_first.id}",
    ]  # newest first

    for who in ("dev", "approver1", "viewer", "nobody"):
        assert await world[who].code(OUTBOX, {"f": True}) == "FORBIDDEN"
        assert await world[who].code(RETRY, {"id": node["id"]}) == "FORBIDDEN"
    assert (await EmailOutbox.get(id=failing.id)).failed_at is not None

    smtp.start()
    retried = (await world["admin2"].ok(RETRY, {"id": node["id"]}))["retryNotification"]
    assert retried["failedAt"] is None and retried["attempts"] == 0
    assert (await world["admin"].ok(OUTBOX, {"f": True}))["notificationOutbox"]["totalCount"] == 0
    assert await deliver(settings) == 1
    assert [r.message_id for r in smtp.received if "approver2@example.com" in r.rcpt_tos] == [
        failing.message_id
    ]
    row = await EmailOutbox.get(id=failing.id)
    assert row.sent_at is not None and row.failed_at is None

    sent = await EmailOutbox.get(id=failing.id)
    assert await world["admin"].code(RETRY, {"id": f"OutboxEmail:{sent.id}"}) == "INVALID_STATE"
    assert await world["admin"].code(RETRY, {"id": "OutboxEmail:99999"}) == "NOT_FOUND"
    assert await world["admin"].code(RETRY, {"id": world.ids["shop/prod"]}) == "BAD_USER_INPUT"


async def test_r8_two_dispatchers_never_send_the_same_email_twice(world, settings, smtp):
    """Runs on SQLite and PostgreSQL; on PostgreSQL the claims race through
    FOR UPDATE SKIP LOCKED."""
    everyone = ["approver1", "approver2", "approver3", "prod_approver", "admin", "admin2"]
    for _ in range(3):
        image = await world.register_image("dev")
        await request_approval(world, image, everyone)
    rows = await EmailOutbox.all()
    assert len(rows) == 18

    results = await asyncio.gather(deliver(settings), deliver(settings))
    assert sum(results) == 18
    assert await deliver(settings) == 0
    assert Counter(r.message_id for r in smtp.received) == Counter({row.message_id: 1 for row in rows})
    for row in await EmailOutbox.all():
        assert row.sent_at is not None and row.attempts == 1
