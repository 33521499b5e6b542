"""Email notifications (R8): written to an outbox in the transaction of the change that
causes them, sent afterwards by `greenlight.notifications.dispatcher`.

`configure` is called once per process (by the app); the workflow calls `request_made`,
`request_closed`, `reminder` and `escalation` inside its transactions. With email off they
do nothing. Who hears of an outcome is decided in `greenlight.notifications.recipients`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

from greenlight.clock import now
from greenlight.models import (
    Approval,
    ApprovalRequest,
    EmailOutbox,
    Image,
    ImageLabel,
    NamedApprover,
    Pipeline,
    User,
)
from greenlight.notifications import links, messages
from greenlight.notifications.recipients import who_hears


@dataclass(frozen=True)
class MailConfig:
    enabled: bool = False
    public_url: str = "http://localhost:8000"
    request_url_template: str = "{public_url}/requests/{request_id}"
    secret_key: str | None = None
    secret_key_previous: str | None = None


_config = MailConfig()


def configure(settings) -> None:
    global _config
    _config = MailConfig(
        enabled=settings.email_enabled,
        public_url=settings.public_url,
        request_url_template=settings.request_url_template,
        secret_key=settings.secret_key,
        secret_key_previous=settings.secret_key_previous,
    )


def current() -> MailConfig:
    return _config


def request_url(request_id: int) -> str:
    return _config.request_url_template.format(
        public_url=_config.public_url, request_id=f"ApprovalRequest:{request_id}"
    )


def approve_url(token: str) -> str:
    return f"{_config.public_url}/one-click/approve?token={token}"


async def _facts(request: ApprovalRequest) -> messages.RequestFacts:
    image = await Image.get(id=request.image_id)
    requester = await User.get(id=request.requested_by_id)
    pipeline = await Pipeline.get(id=request.pipeline_id).prefetch_related("application", "environment")
    return messages.RequestFacts(
        application=pipeline.application.name,
        environment=pipeline.environment.name,
        repository=image.repository,
        tag=image.tag,
        digest=image.digest,
        requester=f"{requester.name} <{requester.email}>",
        comment=request.comment,
        expires_at=request.expires_at.strftime("%Y-%m-%d %H:%M UTC") if request.expires_at else None,
        request_url=request_url(request.id),
        commit=image.commit,
        branch=image.branch,
        build_url=image.build_url,
        labels=tuple(await ImageLabel.filter(image_id=image.id).order_by("key").values_list("key", "value")),
    )


async def _queue(
    kind: str, user: User, message: messages.Message, request_id: int, *, notice: bool = True
) -> None:
    """Write one email to the outbox. `notice` False only for the approval request itself
    (R8), which reaches a named approver who turned notices off too."""
    if not user.is_active:
        return  # nothing to a deactivated user
    if notice and not user.email_notices:
        return  # the user turned notices off for themself
    domain = urlsplit(_config.public_url).hostname or "greenlight.local"
    await EmailOutbox.create(
        message_id=f"<greenlight.{kind}.{request_id}.{uuid.uuid4().hex}@{domain}>",
        kind=kind,
        recipient=user,
        to_address=user.email,
        subject=message.subject,
        text_body=message.text,
        html_body=message.html,
        request_id=request_id,
        next_attempt_at=now(),
    )


async def request_made(request: ApprovalRequest, approver_ids: list[int]) -> None:
    """R8: one email to each approver the requester named, with a one-click approve link."""
    if not _config.enabled or not approver_ids:
        return
    facts = await _facts(request)
    expires = links.expiry_for(request.expires_at, now())
    for approver in await User.filter(id__in=approver_ids):
        token = links.make_token(_config.secret_key, request.id, approver.id, expires)
        message = messages.approval_requested(facts, approve_url(token))
        await _queue("approval_requested", approver, message, request.id, notice=False)


async def request_closed(
    request: ApprovalRequest, outcome: str, reason: str | None = None, *, actor_id: int | None = None
) -> None:
    """A request was approved, rejected, cancelled or expired: to everyone concerned
    (`recipients.who_hears`), never to `actor_id`, who did it."""
    if not _config.enabled:
        return
    named = await NamedApprover.filter(request_id=request.id).values_list("user_id", flat=True)
    approved = await Approval.filter(request_id=request.id).values_list("user_id", flat=True)
    told = who_hears(
        outcome,
        requester_id=request.requested_by_id,
        named_ids=named,
        approver_ids=approved,
        actor_id=actor_id,
    )
    if not told:
        return
    facts = await _facts(request)
    users = {u.id: u for u in await User.filter(id__in=told)}
    for user_id in told:
        if user_id == request.requested_by_id:
            message = messages.request_closed(facts, outcome, reason)
        else:
            message = messages.outcome_notice(facts, outcome, reason)
        await _queue(f"request_{outcome}", users[user_id], message, request.id)


async def reminder(request: ApprovalRequest, approvers: list[User], pending_hours: int) -> list[int]:
    """To named approvers who have not approved yet: the request still waits, with a fresh
    one-click approve link each. Returns who an email was written for."""
    if not _config.enabled or not approvers:
        return []
    facts = await _facts(request)
    expires = links.expiry_for(request.expires_at, now())
    written = []
    for approver in approvers:
        if not (approver.is_active and approver.email_notices):
            continue
        token = links.make_token(_config.secret_key, request.id, approver.id, expires)
        message = messages.reminder(facts, approve_url(token), pending_hours)
        await _queue("request_reminder", approver, message, request.id)
        written.append(approver.id)
    return written


async def escalation(
    request: ApprovalRequest, users: list[User], pending_hours: int, progress: str
) -> list[int]:
    """To the super-admins (or the pipeline's escalation group): the request has waited too
    long. Returns who an email was written for."""
    if not _config.enabled or not users:
        return []
    facts = await _facts(request)
    written = []
    for user in users:
        if not (user.is_active and user.email_notices):
            continue
        await _queue(
            "request_escalated", user, messages.escalation(facts, pending_hours, progress), request.id
        )
        written.append(user.id)
    return written


async def automatic_deploy_not_done(request: ApprovalRequest, reason: str) -> None:
    """R24 after a freeze: to the requester, when the automatic deploy their approval was
    waiting for will not happen."""
    if not _config.enabled:
        return
    facts = await _facts(request)
    requester = await User.get(id=request.requested_by_id)
    await _queue(
        "automatic_deploy_not_done", requester, messages.automatic_deploy_not_done(facts, reason), request.id
    )
