"""Derived facts about requests and pipelines, computed from stored rows in one place."""

from __future__ import annotations

from datetime import datetime

from tortoise.expressions import Q, Subquery
from tortoise.functions import Max

from greenlight.clock import now
from greenlight.models import (
    ACTIVE_STATUSES,
    LIVE_STATES,
    ApprovalRequest,
    ApprovalState,
    Deployment,
    Image,
)


def effective_state(request: ApprovalRequest, at: datetime | None = None) -> ApprovalState:
    """R15: a live request whose expiry has passed is EXPIRED, written yet or not."""
    state = ApprovalState(request.state)
    expires_at = request.expires_at
    if state in LIVE_STATES and expires_at is not None and expires_at <= (at or now()):
        return ApprovalState.EXPIRED
    return state


def not_expired_q(prefix: str = "") -> Q:
    at = now()
    return Q(**{f"{prefix}expires_at__isnull": True}) | Q(**{f"{prefix}expires_at__gt": at})


def state_q(states: list[ApprovalState], prefix: str = "") -> Q:
    """A filter matching requests whose effective state is one of `states` (R15)."""
    at = now()
    parts: list[Q] = []
    for state in set(states):
        if state in LIVE_STATES:
            parts.append(Q(**{f"{prefix}state": state}) & not_expired_q(prefix))
        elif state == ApprovalState.EXPIRED:
            parts.append(Q(**{f"{prefix}state": state}))
            parts.append(Q(**{f"{prefix}state__in": list(LIVE_STATES), f"{prefix}expires_at__lte": at}))
        else:
            parts.append(Q(**{f"{prefix}state": state}))
    if not parts:
        return Q(**{f"{prefix}id__in": []})
    return Q(*parts, join_type="OR")


async def active_deployment(pipeline_id: int) -> Deployment | None:
    """R23: the newest deployment of the pipeline that is PROGRESSING or HEALTHY."""
    return (
        await Deployment.filter(pipeline_id=pipeline_id, status__in=list(ACTIVE_STATUSES))
        .order_by("-id")
        .first()
    )


async def active_deployments(pipeline_ids: list[int]) -> dict[int, Deployment]:
    """R23 for many pipelines in one statement: pipeline id -> its active deployment."""
    if not pipeline_ids:
        return {}
    newest = (
        Deployment.filter(pipeline_id__in=pipeline_ids, status__in=list(ACTIVE_STATUSES))
        .annotate(newest=Max("id"))
        .group_by("pipeline_id")
        .values("newest")
    )
    return {d.pipeline_id: d for d in await Deployment.filter(id__in=Subquery(newest))}


async def active_image(pipeline_id: int) -> Image | None:
    deployment = await active_deployment(pipeline_id)
    return await Image.get(id=deployment.image_id) if deployment else None


def older(image: Image, than: Image) -> bool:
    """Stale images: by `createdAt`, then by registration order."""
    return (image.created_at, image.id) < (than.created_at, than.id)
