"""Prometheus metrics at /metrics (or on GREENLIGHT_METRICS_PORT): GraphQL requests by
operation and outcome code with their latency, HTTP requests by route with their latency
by outcome, the build, approval requests by state, deployments by status, the outboxes'
depth and oldest due age, and database connection pool usage.

With several worker processes (`greenlight serve --workers N`) prometheus_client's
multiprocess mode is on (PROMETHEUS_MULTIPROC_DIR, which `serve` sets up): counters and
histograms are summed over the workers, whichever of them answers a scrape. What is read
from the database is the same for every process, so it is not kept per process: one
collector reads it at scrape time, at most once per GREENLIGHT_METRICS_CACHE_SECONDS
(concurrent scrapes share one reading), so frequent scrapes of many replicas cost the
database little."""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from starlette.requests import Request
from starlette.responses import Response
from tortoise import connections
from tortoise.functions import Count, Min

from greenlight import build
from greenlight.clock import now
from greenlight.models import (
    LIVE_STATES,
    ApprovalState,
    ChatDelivery,
    Deployment,
    DeploymentStatus,
    EmailOutbox,
    WebhookDelivery,
)
from greenlight.models import ApprovalRequest as Request_

log = logging.getLogger("greenlight.metrics")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

GRAPHQL_REQUESTS = Counter(
    "greenlight_graphql_requests_total",
    "GraphQL operations by operation name and outcome code (OK or the error code)",
    ["operation", "outcome"],
)
GRAPHQL_LATENCY = Histogram(
    "greenlight_graphql_request_duration_seconds",
    "Time to answer a GraphQL operation",
    ["operation"],
    buckets=LATENCY_BUCKETS,
)
HTTP_REQUESTS = Counter(
    "greenlight_http_requests_total", "HTTP requests by route and status", ["route", "status"]
)
HTTP_LATENCY = Histogram(
    "greenlight_http_request_duration_seconds",
    "Time to answer an HTTP request, by route and outcome (ok, client_error, server_error)",
    ["route", "outcome"],
    buckets=LATENCY_BUCKETS,
)
DB_POOL = Gauge(
    "greenlight_db_pool_connections",
    "Database connections by use, summed over the live server processes",
    ["state"],
    multiprocess_mode="livesum",
)

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
MAX_OPERATION_NAMES = 200
_seen: set[str] = set()


def multiprocess_mode() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


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


def http_outcome(status: int) -> str:
    if status >= 500:
        return "server_error"
    return "client_error" if status >= 400 else "ok"


def observe_http(route: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(route, str(status)).inc()
    HTTP_LATENCY.labels(route, http_outcome(status)).observe(seconds)


def observe_pool() -> None:
    """This process's share of greenlight_db_pool_connections."""
    try:
        pool = getattr(connections.get("default"), "_pool", None)
    except Exception:  # not connected (yet, or any more): nothing to report
        return
    if pool is not None:
        size, idle = pool.get_size(), pool.get_idle_size()
        DB_POOL.labels("in_use").set(size - idle)
        DB_POOL.labels("idle").set(idle)
        DB_POOL.labels("max").set(pool.get_max_size())
    else:  # SQLite: one connection
        DB_POOL.labels("in_use").set(0)
        DB_POOL.labels("idle").set(1)
        DB_POOL.labels("max").set(1)


# --- what every process reads the same: the build and the database ------------------------


class BuildCollector:
    """greenlight_build_info{version, commit, python} 1."""

    def collect(self):
        family = GaugeMetricFamily(
            "greenlight_build_info",
            "The running build: package version, git commit and Python version (always 1)",
            labels=["version", "commit", "python"],
        )
        family.add_metric([build.version(), build.commit(), platform.python_version()], 1)
        yield family


@dataclass
class Reading:
    approval_requests: dict[str, int] = field(default_factory=dict)
    deployments: dict[str, int] = field(default_factory=dict)
    backlog: dict[tuple[str, str], int] = field(default_factory=dict)
    oldest_due: dict[str, datetime | None] = field(default_factory=dict)


OUTBOXES = (
    ("email", EmailOutbox, "sent_at"),
    ("webhook", WebhookDelivery, "delivered_at"),
    ("chat", ChatDelivery, "delivered_at"),
)


async def _read_database() -> Reading:
    reading = Reading()
    at = now()
    stored = {
        row["state"]: row["n"]
        for row in await Request_.annotate(n=Count("id")).group_by("state").values("state", "n")
    }
    past_expiry = {
        row["state"]: row["n"]
        for row in await Request_.filter(state__in=list(LIVE_STATES), expires_at__lte=at)
        .annotate(n=Count("id"))
        .group_by("state")
        .values("state", "n")
    }
    for state in ApprovalState:  # R15: a live request past its expiry is EXPIRED
        count = stored.get(state.value, 0) - past_expiry.get(state.value, 0)
        if state == ApprovalState.EXPIRED:
            count += sum(past_expiry.values())
        reading.approval_requests[state.value] = count
    statuses = {
        row["status"]: row["n"]
        for row in await Deployment.annotate(n=Count("id")).group_by("status").values("status", "n")
    }
    for status in DeploymentStatus:
        reading.deployments[status.value] = statuses.get(status.value, 0)
    for kind, model, done in OUTBOXES:
        pending = (
            await model.filter(**{f"{done}__isnull": True}, failed_at__isnull=True)
            .annotate(n=Count("id"), oldest=Min("next_attempt_at"))
            .values("n", "oldest")
        )
        reading.backlog[(kind, "pending")] = pending[0]["n"] if pending else 0
        oldest = pending[0]["oldest"] if pending else None
        if isinstance(oldest, str):  # SQLite answers an aggregate of datetimes as text
            oldest = datetime.fromisoformat(oldest)
        reading.oldest_due[kind] = oldest
        reading.backlog[(kind, "failed")] = await model.filter(failed_at__isnull=False).count()
    return reading


class DatabaseCollector:
    """The gauges read from the database, for the whole deployment of Greenlight."""

    def __init__(self) -> None:
        self.reading = Reading()
        self.cache_seconds = 5.0
        self._read_at = float("-inf")
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    async def refresh(self) -> None:
        """Reads the database again unless the last reading is younger than
        `cache_seconds`; concurrent scrapes wait for one reading."""
        self.bind(asyncio.get_running_loop())
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if time.monotonic() - self._read_at < self.cache_seconds:
                return
            self.reading = await _read_database()
            self._read_at = time.monotonic()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The event loop (and its thread) the database is read on."""
        if loop is not self._loop:
            self._lock = None  # an asyncio lock belongs to one event loop
        self._loop, self._loop_thread = loop, threading.get_ident()

    def _refresh_from_another_thread(self) -> None:
        """The metrics port's server runs in a thread: the reading is made on the app's loop."""
        loop = self._loop
        if loop is None or threading.get_ident() == self._loop_thread or not loop.is_running():
            return
        try:
            asyncio.run_coroutine_threadsafe(self.refresh(), loop).result(timeout=10)
        except Exception:
            log.warning("metrics: could not read the database", exc_info=True)

    def collect(self):
        self._refresh_from_another_thread()
        reading = self.reading
        requests = GaugeMetricFamily(
            "greenlight_approval_requests", "Approval requests by (effective) state", labels=["state"]
        )
        for state, count in reading.approval_requests.items():
            requests.add_metric([state], count)
        deployments = GaugeMetricFamily("greenlight_deployments", "Deployments by status", labels=["status"])
        for status, count in reading.deployments.items():
            deployments.add_metric([status], count)
        backlog = GaugeMetricFamily(
            "greenlight_outbox_backlog",
            "Outbox entries not sent yet (pending) or given up (failed), by outbox",
            labels=["outbox", "state"],
        )
        for (kind, state), count in reading.backlog.items():
            backlog.add_metric([kind, state], count)
        depth = GaugeMetricFamily(
            "greenlight_outbox_depth", "Outbox entries waiting to be sent, by kind", labels=["kind"]
        )
        oldest = GaugeMetricFamily(
            "greenlight_outbox_oldest_due_age_seconds",
            "How long the oldest entry that is due has waited past its due time, by kind (0: none due)",
            labels=["kind"],
        )
        at = now()
        for kind, _, _ in OUTBOXES:
            if (kind, "pending") in reading.backlog:
                depth.add_metric([kind], reading.backlog[(kind, "pending")])
                due = reading.oldest_due.get(kind)
                oldest.add_metric([kind], max((at - due).total_seconds(), 0.0) if due else 0.0)
        yield from (requests, deployments, backlog, depth, oldest)


DATABASE = DatabaseCollector()
BUILD = BuildCollector()
_registry: CollectorRegistry | None = None


def configure(settings) -> None:
    DATABASE.cache_seconds = settings.metrics_cache_seconds
    DATABASE._read_at = float("-inf")


def registry() -> CollectorRegistry:
    """What a scrape shows: in multiprocess mode every worker's counters and histograms
    (from PROMETHEUS_MULTIPROC_DIR), else this process's registry; and the shared gauges."""
    global _registry
    if _registry is None:
        if multiprocess_mode():
            _registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(_registry)
        else:
            _registry = REGISTRY
        _registry.register(DATABASE)
        _registry.register(BUILD)
    return _registry


async def exposition() -> bytes:
    await DATABASE.refresh()
    observe_pool()
    return generate_latest(registry())


async def metrics_endpoint(request: Request) -> Response:
    return Response(await exposition(), media_type=CONTENT_TYPE_LATEST)


def serve_port(host: str, port: int):
    """GREENLIGHT_METRICS_PORT: /metrics on a port of its own (prometheus_client's server,
    in a thread). With several workers one of them binds it; any one of them answers for
    all. Returns the server (to shut down), or None when another worker has the port."""
    DATABASE.bind(asyncio.get_running_loop())
    try:
        server, _ = start_http_server(port, addr=host, registry=registry())
    except OSError as error:
        log.info("metrics port %s is served by another worker (%s)", port, error)
        return None
    log.info("metrics on http://%s:%s/metrics", host, port)
    return server


def process_exited() -> None:
    """Multiprocess mode: a worker's live gauges leave the sums when it stops."""
    if multiprocess_mode():
        multiprocess.mark_process_dead(os.getpid())
