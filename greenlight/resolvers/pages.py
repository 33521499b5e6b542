"""The one-click approve pages behind the link in an approver's email.

GET shows what would be approved and a confirmation button; only the POST from that
page approves (mail scanners follow GET links). The approval goes through the same
workflow function as the API, so R9 to R16 apply at that moment, and refusals are shown
as a readable page. Resolvers of HTML forms, as the others are of GraphQL: a form in, one
workflow call, a page out.
"""

from __future__ import annotations

from html import escape
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse

from greenlight.clock import now
from greenlight.errors import BadUserInput, GreenlightError, Unauthenticated, not_found
from greenlight.models import Image, Pipeline, User
from greenlight.notifications import current, links
from greenlight.policies import Actor
from greenlight.workflow import approvals
from greenlight.workflow.guards import visible_request


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = (
        "<!doctype html><html><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} - Greenlight</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem}"
        "th{text-align:left;padding-right:1rem}button{font-size:1.1rem;padding:.5rem 1.5rem}</style>"
        f"</head><body><h1>{escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


# Refusals whose API message names API arguments, in the words of this page.
IN_PAGE_WORDS = {
    "STALE_IMAGE": (
        "this image is older than the one running on the pipeline now; open the link in the "
        "email again and tick the box saying you mean to approve it"
    ),
}
ACKNOWLEDGE_STALE = "acknowledge_stale"


def _refusal(error: GreenlightError) -> HTMLResponse:
    status = {"NOT_FOUND": 404, "FORBIDDEN": 403, "UNAUTHENTICATED": 401, "BAD_USER_INPUT": 400}.get(
        error.code, 409
    )
    message = IN_PAGE_WORDS.get(error.code, error.message)
    return _page(
        "Not approved",
        f"<p>{escape(message)}.</p><p><small>({escape(error.code)})</small></p>",
        status,
    )


async def _actor_and_request(request: Request, token: str):
    config = current()
    if not config.enabled or not config.secret_key:
        raise not_found("page")
    try:
        link = links.read_token(config.secret_key, token, now(), previous=config.secret_key_previous)
    except links.MalformedLink as error:
        raise BadUserInput(str(error)) from None
    except links.BadLink as error:
        raise Unauthenticated(str(error)) from None
    user = await User.get_or_none(id=link.user_id)
    if user is None or not user.is_active:
        raise Unauthenticated("this approve link belongs to a user who can no longer approve")
    authorizer = request.app.state.authorizer
    await authorizer.refresh()
    actor = Actor(user=user, authorizer=authorizer)
    approval_request = await visible_request(actor, link.request_id)
    return actor, approval_request


async def confirm_page(request: Request) -> HTMLResponse:
    token = request.query_params.get("token", "")
    try:
        actor, approval_request = await _actor_and_request(request, token)
    except GreenlightError as error:
        return _refusal(error)
    image = await Image.get(id=approval_request.image_id)
    pipeline = await Pipeline.get(id=approval_request.pipeline_id).prefetch_related(
        "application", "environment"
    )
    rows = [
        ("Application", pipeline.application.name),
        ("Environment", pipeline.environment.name),
        ("Image", f"{image.repository}:{image.tag}"),
        ("Digest", image.digest),
        ("Comment", approval_request.comment or "(none)"),
    ]
    table = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    stale = ""
    if approval_request.stale:  # a stale image: approving it needs saying so
        stale = (
            f"<p><strong>This image is older than the one running on "
            f"{escape(pipeline.environment.name)} now.</strong> Approving it means accepting a "
            "deployment that goes back to it.</p>"
            f'<p><label><input type="checkbox" name="{ACKNOWLEDGE_STALE}" value="yes" required> '
            "I know this image is older, and I mean to approve it</label></p>"
        )
    form = (
        '<form method="post" action="/one-click/approve">'
        f'<input type="hidden" name="token" value="{escape(token)}">'
        f"{stale}<button type=submit>Approve</button></form>"
    )
    return _page(
        f"Approve as {actor.user.email}?",
        f"<table>{table}</table><p>Approving counts as your approval of this request.</p>{form}",
    )


async def approve_action(request: Request) -> HTMLResponse:
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    token = (form.get("token") or [""])[0]
    acknowledged = (form.get(ACKNOWLEDGE_STALE) or [""])[0] == "yes"
    try:
        actor, approval_request = await _actor_and_request(request, token)
        approved = await approvals.approve(
            actor, approval_request.id, "approved by email link", acknowledge_stale=acknowledged
        )
    except GreenlightError as error:
        return _refusal(error)
    return _page(
        "Approved",
        f"<p>Your approval is recorded. The request is now {escape(str(approved.state))}.</p>",
    )
