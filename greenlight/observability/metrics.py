"""Prometheus metrics at /metrics: GraphQL requests by operation and outcome code with
their latency, approval requests by state, deployments by status, the outbox backlogs,
and database connection pool usage."""

from __future__ import annotations

import re

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from tortoise import connections
from tortoise.functions import Count

from greenlight.models import ApprovalRequest as Request_
from greenlight.models import ApprovalState, Deployment, DeploymentStatus, EmailOutbox, WebhookDelivery
from greenlight.workflow.states import state_q

GRAPHQL_REQUESTS = Counter(
    "greenlight_graphql_requests_total",
    "GraphQL operations by operation name and outcome code (OK or the error code)",
    ["operation", "outcome"],
)
GRAPHQL_LATENCY = Histogram(
    "greenlight_graphql_request_duration_seconds",
    "Time to answer a GraphQL operation",
    ["operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
HTTP_REQUESTS = Counter(
    "greenlight_http_requests_total", "HTTP requests by route and status", ["route", "status"]
)
APPROVAL_REQUESTS = Gauge("greenlight_approval_requests", "Approval requests by (effective) state", ["state"])
DEPLOYMENTS = Gauge("greenlight_deployments", "Deployments by status", ["status"])
OUTBOX = Gauge(
    "greenlight_outbox_backlog",
    "Outbox entries not sent yet (pending) or given up (failed), by outbox",
    ["outbox", "state"],
)
DB_POOL = Gauge("greenlight_db_pool_connections", "Database connections of this process by use", ["state"])

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
MAX_OPERATION_NAMES = 200
_seen: set[str] = set()


def operation_label(name: str | None) -> str:
    """Client-chosen names are bounded, so a client cannot blow up the label set."""
    if not name:
        return "anonymous"
    if not _NAME.fullmatch(name):
        return "invalid"
    if name not in _seen:
        if len(_seen) >= MAX_OPERATION_NAMES:
            return "other"
        _seen.add(name)
    return name


def observe_operation(name: str | None, outcome: str, seconds: float) -> None:
    label = operation_label(name)
    GRAPHQL_REQUESTS.labels(label, outcome).inc()
    GRAPHQL_LATENCY.labels(label).observe(seconds)


async def _refresh_gauges() -> None:
    for state in ApprovalState:
        APPROVAL_REQUESTS.labels(state.value).set(await Request_.filter(state_q([state])).count())
    counts = {
        row["status"]: row["n"]
        for row in await Deployment.annotate(n=Count("id")).group_by("status").values("status", "n")
    }
    for status in DeploymentStatus:
        DEPLOYMENTS.labels(status.value).set(counts.get(status.value, 0))
    for name, model, done in (
        ("email", EmailOutbox, "sent_at"),
        ("webhook", WebhookDelivery, "delivered_at"),
    ):
        pending = await model.filter(**{f"{done}__isnull": True, "failed_at__isnull": True}).count()
        failed = await model.filter(failed_at__isnull=False).count()
        OUTBOX.labels(name, "pending").set(pending)
        OUTBOX.labels(name, "failed").set(failed)
    pool = getattr(connections.get("default"), "_pool", None)
    if pool is not None:
        size, idle = pool.get_size(), pool.get_idle_size()
        DB_POOL.labels("in_use").set(size - idle)
        DB_POOL.labels("idle").set(idle)
        DB_POOL.labels("max").set(pool.get_max_size())
    else:  # SQLite: one connection
        DB_POOL.labels("in_use").set(0)
        DB_POOL.labels("idle").set(1)
        DB_POOL.labels("max").set(1)


async def metrics_endpoint(request: Request) -> Response:
    await _refresh_gauges()
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
