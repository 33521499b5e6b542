"""What the emails say: plain text and HTML, with every user-supplied text escaped."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape


@dataclass(frozen=True)
class Message:
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class RequestFacts:
    application: str
    environment: str
    repository: str
    tag: str
    digest: str
    requester: str
    comment: str | None
    expires_at: str | None
    request_url: str
    # what CI said it built from (greenlight.workflow.images); shown when given
    commit: str | None = None
    branch: str | None = None
    build_url: str | None = None
    labels: tuple[tuple[str, str], ...] = ()


def _build_rows(f: RequestFacts) -> list[tuple[str, str]]:
    rows = [("Commit", f.commit), ("Branch", f.branch), ("Build", f.build_url)]
    found = [(k, v) for k, v in rows if v is not None]
    if f.labels:
        found.append(("Labels", ", ".join(f"{k}={v}" for k, v in f.labels)))
    return found


def _facts_text(f: RequestFacts) -> str:
    return (
        f"Application: {f.application}\n"
        f"Environment: {f.environment}\n"
        f"Image:       {f.repository}:{f.tag}\n"
        f"Digest:      {f.digest}\n"
        f"Requested by {f.requester}\n"
        f"Comment:     {f.comment or '(none)'}\n"
        f"Expires:     {f.expires_at or 'never'}\n"
    ) + "".join(f"{k + ':':<12} {v}\n" for k, v in _build_rows(f))


def _facts_html(f: RequestFacts) -> str:
    rows = [
        ("Application", f.application),
        ("Environment", f.environment),
        ("Image", f"{f.repository}:{f.tag}"),
        ("Digest", f.digest),
        ("Requested by", f.requester),
        ("Comment", f.comment or "(none)"),
        ("Expires", f.expires_at or "never"),
        *_build_rows(f),
    ]
    cells = "".join(f"<tr><th align=left>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"


def approval_requested(f: RequestFacts, approve_url: str) -> Message:
    subject = f"[Greenlight] Approval requested: {f.repository}:{f.tag} to {f.application}/{f.environment}"
    text = (
        f"{f.requester} asks you to approve an image for {f.application} on {f.environment}.\n\n"
        f"{_facts_text(f)}\n"
        f"See the request: {f.request_url}\n"
        f"Approve in one click (you will be asked to confirm): {approve_url}\n"
    )
    html = (
        f"<p>{escape(f.requester)} asks you to approve an image for "
        f"<b>{escape(f.application)}</b> on <b>{escape(f.environment)}</b>.</p>"
        f"{_facts_html(f)}"
        f'<p><a href="{escape(f.request_url)}">See the request</a> &middot; '
        f'<a href="{escape(approve_url)}">Approve in one click</a> (you will be asked to confirm)</p>'
    )
    return Message(subject[:255], text, html)


OUTCOMES = {
    "approved": "was approved: it can now be deployed",
    "rejected": "was rejected",
    "expired": "expired without being used",
    "cancelled": "was cancelled",
}


def request_closed(f: RequestFacts, outcome: str, reason: str | None = None) -> Message:
    said = OUTCOMES[outcome]
    subject = f"[Greenlight] Your request {said.split(':')[0]}: {f.repository}:{f.tag} to {f.application}/{f.environment}"
    reason_text = f"Reason: {reason}\n" if reason else ""
    text = (
        f"Your approval request for {f.repository}:{f.tag} on {f.application}/{f.environment} {said}.\n"
        f"{reason_text}\n{_facts_text(f)}\nSee the request: {f.request_url}\n"
    )
    reason_html = f"<p>Reason: {escape(reason)}</p>" if reason else ""
    html = (
        f"<p>Your approval request for {escape(f.repository)}:{escape(f.tag)} on "
        f"<b>{escape(f.application)}/{escape(f.environment)}</b> {escape(said)}.</p>"
        f"{reason_html}{_facts_html(f)}"
        f'<p><a href="{escape(f.request_url)}">See the request</a></p>'
    )
    return Message(subject[:255], text, html)


def outcome_notice(f: RequestFacts, outcome: str, reason: str | None = None) -> Message:
    """To a named approver or an approver of the request (not its requester)."""
    said = OUTCOMES[outcome]
    subject = f"[Greenlight] Request {said.split(':')[0]}: {f.repository}:{f.tag} to {f.application}/{f.environment}"
    reason_text = f"Reason: {reason}\n" if reason else ""
    text = (
        f"The approval request of {f.requester} for {f.repository}:{f.tag} on "
        f"{f.application}/{f.environment} {said}.\n"
        f"{reason_text}\n{_facts_text(f)}\nSee the request: {f.request_url}\n"
    )
    reason_html = f"<p>Reason: {escape(reason)}</p>" if reason else ""
    html = (
        f"<p>The approval request of {escape(f.requester)} for {escape(f.repository)}:{escape(f.tag)} on "
        f"<b>{escape(f.application)}/{escape(f.environment)}</b> {escape(said)}.</p>"
        f"{reason_html}{_facts_html(f)}"
        f'<p><a href="{escape(f.request_url)}">See the request</a></p>'
    )
    return Message(subject[:255], text, html)


def reminder(f: RequestFacts, approve_url: str, pending_hours: int) -> Message:
    subject = f"[Greenlight] Reminder: approval still awaited: {f.repository}:{f.tag} to {f.application}/{f.environment}"
    text = (
        f"{f.requester} asked you {pending_hours} hours ago or more to approve an image for "
        f"{f.application} on {f.environment}; the request is still pending.\n\n"
        f"{_facts_text(f)}\n"
        f"See the request: {f.request_url}\n"
        f"Approve in one click (you will be asked to confirm): {approve_url}\n"
    )
    html = (
        f"<p>{escape(f.requester)} asked you {pending_hours} hours ago or more to approve an image for "
        f"<b>{escape(f.application)}</b> on <b>{escape(f.environment)}</b>; the request is still pending.</p>"
        f"{_facts_html(f)}"
        f'<p><a href="{escape(f.request_url)}">See the request</a> &middot; '
        f'<a href="{escape(approve_url)}">Approve in one click</a> (you will be asked to confirm)</p>'
    )
    return Message(subject[:255], text, html)


def escalation(f: RequestFacts, pending_hours: int, progress: str) -> Message:
    subject = (
        f"[Greenlight] Escalated: pending over {pending_hours} h: {f.repository}:{f.tag} "
        f"to {f.application}/{f.environment}"
    )
    text = (
        f"An approval request for {f.application} on {f.environment} has been pending for "
        f"{pending_hours} hours or more ({progress}).\n\n"
        f"{_facts_text(f)}\nSee the request: {f.request_url}\n"
    )
    html = (
        f"<p>An approval request for <b>{escape(f.application)}</b> on <b>{escape(f.environment)}</b> "
        f"has been pending for {pending_hours} hours or more ({escape(progress)}).</p>"
        f"{_facts_html(f)}"
        f'<p><a href="{escape(f.request_url)}">See the request</a></p>'
    )
    return Message(subject[:255], text, html)


def automatic_deploy_not_done(f: RequestFacts, reason: str) -> Message:
    subject = (
        f"[Greenlight] Not deployed automatically: {f.repository}:{f.tag} to {f.application}/{f.environment}"
    )
    text = (
        f"Your approved image {f.repository}:{f.tag} was to be deployed on "
        f"{f.application}/{f.environment} automatically once the deploy freeze ended. "
        f"It was not: {reason}.\n\n{_facts_text(f)}\nSee the request: {f.request_url}\n"
    )
    html = (
        f"<p>Your approved image {escape(f.repository)}:{escape(f.tag)} was to be deployed on "
        f"<b>{escape(f.application)}/{escape(f.environment)}</b> automatically once the deploy "
        f"freeze ended. It was not: {escape(reason)}.</p>"
        f"{_facts_html(f)}"
        f'<p><a href="{escape(f.request_url)}">See the request</a></p>'
    )
    return Message(subject[:255], text, html)
