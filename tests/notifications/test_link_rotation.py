"""One-click links across a rotation of GREENLIGHT_SECRET_KEY: a link emailed before the
rotation still approves while the old key is GREENLIGHT_SECRET_KEY_PREVIOUS and the link has
not expired; once the old key is dropped, or for a key never configured, it is refused and
nothing is approved."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from greenlight import notifications
from greenlight.clock import now
from greenlight.config import ConfigError, Settings
from greenlight.models import Approval, ApprovalRequest
from greenlight.notifications import links
from tests.notifications import test_email
from tests.notifications.test_email import SECRET, approvals_of, click, emailed_request, pk, token_of

# The SMTP server on loopback and the email-on settings of the email tests.
smtp = test_email.smtp
settings = test_email.settings

NEW_SECRET = "n" * 40


def rotate(settings: Settings, secret_key: str, previous: str | None) -> None:
    """As a restart with the new keys does (the app configures notifications at start)."""
    notifications.configure(replace(settings, secret_key=secret_key, secret_key_previous=previous))


async def test_r8_link_signed_with_previous_key_still_approves_after_rotation(world, settings, smtp):
    request, mail = await emailed_request(world, settings, smtp, ["approver1"])
    token = token_of(mail["approver1"])
    rotate(settings, NEW_SECRET, previous=SECRET)

    page = await world.http.get(f"/one-click/approve?token={token}")
    assert page.status_code == 200, page.text
    assert "<form" in page.text
    approved = await click(world, token)
    assert approved.status_code == 200, approved.text
    assert await approvals_of(world, request["id"]) == ["approver1@example.com"]


async def test_r8_links_made_after_rotation_are_signed_with_the_new_key(world, settings, smtp):
    rotate(settings, NEW_SECRET, previous=SECRET)
    request, mail = await emailed_request(world, settings, smtp, ["approver1"])
    token = token_of(mail["approver1"])
    link = links.read_token(NEW_SECRET, token, now())
    assert link.request_id == pk(request["id"])
    with pytest.raises(links.BadLink, match="signature"):
        links.read_token(SECRET, token, now())


async def test_r8_link_of_a_dropped_key_is_refused(world, settings, smtp):
    request, mail = await emailed_request(world, settings, smtp, ["approver1"])
    token = token_of(mail["approver1"])
    rotate(settings, NEW_SECRET, previous=None)

    refused = await click(world, token)
    assert 400 <= refused.status_code < 500
    assert "not valid" in refused.text
    assert await Approval.filter(request_id=pk(request["id"])).count() == 0


async def test_r8_previous_key_does_not_extend_an_expired_link(world, settings, smtp):
    request, mail = await emailed_request(world, settings, smtp, ["approver1"])
    token = token_of(mail["approver1"])
    await ApprovalRequest.filter(id=pk(request["id"])).update(expires_at=now() - timedelta(seconds=1))
    rotate(settings, NEW_SECRET, previous=SECRET)
    expired = links.make_token(
        SECRET, pk(request["id"]), pk(world["approver1"].user_id), now() - timedelta(minutes=1)
    )
    for candidate in (token, expired):
        refused = await click(world, candidate)
        assert 400 <= refused.status_code < 500
    assert "expired" in (await click(world, expired)).text
    assert await Approval.filter(request_id=pk(request["id"])).count() == 0


async def test_r8_link_signed_with_an_unknown_key_is_refused_after_rotation(world, settings, smtp):
    request, _ = await emailed_request(world, settings, smtp, ["approver1"])
    rotate(settings, NEW_SECRET, previous=SECRET)
    forged = links.make_token(
        "x" * 40, pk(request["id"]), pk(world["approver1"].user_id), now() + timedelta(hours=1)
    )
    refused = await click(world, forged)
    assert 400 <= refused.status_code < 500
    assert await Approval.filter(request_id=pk(request["id"])).count() == 0


def test_secret_key_previous_is_read_and_must_be_long():
    env = {"GREENLIGHT_SECRET_KEY": NEW_SECRET, "GREENLIGHT_SECRET_KEY_PREVIOUS": SECRET}
    assert Settings.from_env(env).secret_key_previous == SECRET
    with pytest.raises(ConfigError, match="GREENLIGHT_SECRET_KEY_PREVIOUS"):
        Settings.from_env({**env, "GREENLIGHT_SECRET_KEY_PREVIOUS": "short"})
    assert "secret_key_previous" not in repr(Settings.from_env(env)) or SECRET not in repr(
        Settings.from_env(env)
    )
