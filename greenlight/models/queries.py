"""The named reads on the hot paths of the workflow: each is one statement, its SQL built
once (greenlight.models.prepared), and loads what the decision after it reads. The
workflow calls them by name and never touches a library's private parts: what these need
of Tortoise's is in greenlight.internals, which falls back to the public path.
"""

from __future__ import annotations

from tortoise.expressions import Subquery

from greenlight import internals
from greenlight.models.catalog import Pipeline
from greenlight.models.identity import ApiToken
from greenlight.models.prepared import Prepared
from greenlight.models.workflow import Approval, ApprovalRequest

_PIPELINE_OF_REQUEST = Prepared(
    Pipeline,
    lambda request_id: (
        Pipeline.filter(id__in=Subquery(ApprovalRequest.filter(id=request_id).values("pipeline_id")))
        .select_related("application", "environment")
        .select_for_update(of=(Pipeline._meta.db_table,))
        .limit(1)
    ),
)
_REQUEST = Prepared(
    ApprovalRequest,
    lambda request_id: (
        ApprovalRequest.filter(id=request_id)
        .select_related("image")
        .select_for_update(of=(ApprovalRequest._meta.db_table,))
        .limit(1)
    ),
)
_APPROVALS_WITH_USERS = Prepared(
    Approval,
    lambda request_id: Approval.filter(request_id=request_id).select_related("user").order_by("id"),
)
_TOKEN_WITH_USER = Prepared(
    ApiToken, lambda token_hash: ApiToken.filter(token_hash=token_hash).select_related("user").limit(1)
)


async def lock_pipeline_of_request(request_id: int) -> Pipeline | None:
    """The request's pipeline, with its application and environment, its row locked (the
    pipeline's only). None when there is no such request."""
    return await _PIPELINE_OF_REQUEST.first(request_id)


async def lock_request_for_update(request_id: int) -> ApprovalRequest | None:
    """The request with its image, its row locked."""
    return await _REQUEST.first(request_id)


async def approvals_with_users(request_id: int) -> list[Approval]:
    """The request's approvals, oldest first, each with its user."""
    return await _APPROVALS_WITH_USERS.all(request_id)


async def keep_approvals(request: ApprovalRequest, approvals: list[Approval]) -> None:
    """Hand `approvals` (with their users) to `request.approvals`, as if fetched, so what
    reads the request afterwards (the answer's fields, the DataLoaders) reads no more."""
    await internals.keep_fetched(request, "approvals", approvals, "approvals__user")


async def token_with_user(token_hash: str) -> ApiToken | None:
    """The API token with that hash, with its user: the statement before every request."""
    return await _TOKEN_WITH_USER.first(token_hash)
