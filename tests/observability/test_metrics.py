"""Metrics: GET /metrics answers Prometheus text; GraphQL requests are counted by
operation name and outcome code with a latency histogram; gauges of approval requests by
(effective) state, deployments by status, outbox backlogs and database pool usage follow
the database; a client cannot blow up the operation label set.

The Prometheus registry is process-global (every test of the run feeds it), so counters
are asserted as deltas; gauges are refreshed from this test's own database on each scrape,
so they are asserted as absolute values."""

from __future__ import annotations

import gc
import uuid
from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from greenlight.clock import now
from greenlight.config import Settings
from greenlight.models import (
    ApprovalRequest,
    ApprovalState,
    Deployment,
    DeploymentStatus,
    EmailOutbox,
    User,
    WebhookDelivery,
)
from greenlight.observability import metrics

REQUESTS = "greenlight_graphql_requests_total"
LATENCY_COUNT = "greenlight_graphql_request_duration_seconds_count"
HTTP = "greenlight_http_requests_total"

Samples = dict[tuple[str, frozenset], float]


@pytest.fixture
def settings(database_url) -> Settings:
    """As conftest's, with the database gauges read on every scrape, so they can be checked
    right after each change (GREENLIGHT_METRICS_CACHE_SECONDS=0)."""
    return Settings(
        database_url=database_url,
        background_jobs=False,
        rollout_seconds=90,
        mutations_per_minute=0,
        metrics_cache_seconds=0,
    )


async def scrape(http) -> Samples:
    response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain"), response.headers
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def label_values(samples: Samples, name: str, label: str) -> set[str]:
    return {dict(labels)[label] for (sample, labels), _ in samples.items() if sample == name}


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def test_metrics_endpoint_answers_prometheus_text(http):
    """Every metric family is exposed, with its HELP and TYPE lines."""
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    families = {f.name: f.type for f in text_string_to_metric_families(response.text)}
    assert families["greenlight_graphql_requests"] == "counter"
    assert families["greenlight_graphql_request_duration_seconds"] == "histogram"
    assert families["greenlight_http_requests"] == "counter"
    for gauge in (
        "greenlight_approval_requests",
        "greenlight_deployments",
        "greenlight_outbox_backlog",
        "greenlight_db_pool_connections",
    ):
        assert families[gauge] == "gauge", gauge
    assert "# HELP greenlight_graphql_requests_total" in response.text


async def test_requests_are_counted_by_operation_and_outcome(world):
    """A named query counts under its name and OK; an anonymous one under
    "anonymous"; failing ones under their contract code (FORBIDDEN, UNAUTHENTICATED,
    BAD_USER_INPUT); the latency histogram counts each one too."""
    name = f"WhoAmI_{uuid.uuid4().hex[:8]}"
    before = await scrape(world.http)

    data = await world["dev"].ok(f"query {name} {{ me {{ email }} }}")
    assert data["me"]["email"] == "dev@example.com"
    await world["dev"].ok(f"query {name} {{ me {{ email }} }}")
    assert (await world["dev"].ok("{ me { email } }"))["me"]["email"] == "dev@example.com"
    assert await world["dev"].code("query ListUsers { users { id } }") == "FORBIDDEN"
    assert await world["dev"].code('query BadId { pipeline(id: "Image:1") { id } }') == "BAD_USER_INPUT"

    after = await scrape(world.http)
    assert delta(before, after, REQUESTS, operation=name, outcome="OK") == 2
    assert delta(before, after, LATENCY_COUNT, operation=name) == 2
    assert delta(before, after, REQUESTS, operation="anonymous", outcome="OK") == 1
    assert delta(before, after, REQUESTS, operation="ListUsers", outcome="FORBIDDEN") == 1
    assert delta(before, after, REQUESTS, operation="ListUsers", outcome="OK") == 0
    assert delta(before, after, REQUESTS, operation="BadId", outcome="BAD_USER_INPUT") == 1
    # Five POSTs to /graphql, each answered 200, and one scrape of /metrics in between.
    assert delta(before, after, HTTP, route="/graphql", status="200") == 5
    assert delta(before, after, HTTP, route="/metrics", status="200") == 1


def outcomes(before: Samples, after: Samples) -> dict[str, float]:
    """The change of greenlight_graphql_requests_total per outcome, over all operations."""
    changes: dict[str, float] = {}
    for (name, labels), count in after.items():
        if name == REQUESTS:
            outcome = dict(labels)["outcome"]
            changes[outcome] = changes.get(outcome, 0.0) + count - before.get((name, labels), 0.0)
    return changes


async def test_unauthenticated_operation_is_counted_as_unauthenticated(world):
    """An operation without credentials counts once, as UNAUTHENTICATED (under its
    name, or "anonymous" if it is refused before its document is read), never as INTERNAL."""
    gc.collect()
    before = await scrape(world.http)
    assert await world.anonymous.code("query ListUsers { users { id } }") == "UNAUTHENTICATED"
    gc.collect()
    after = await scrape(world.http)
    changes = outcomes(before, after)
    unauthenticated = delta(
        before, after, REQUESTS, operation="ListUsers", outcome="UNAUTHENTICATED"
    ) + delta(before, after, REQUESTS, operation="anonymous", outcome="UNAUTHENTICATED")
    assert unauthenticated == 1
    assert changes.get("INTERNAL", 0) == 0


async def test_syntax_error_is_counted_as_bad_user_input(world):
    """A document that does not parse is counted as BAD_USER_INPUT, as the client
    is told, not as INTERNAL."""
    gc.collect()
    before = await scrape(world.http)
    assert await world["dev"].code("query Broken { me { email }") == "BAD_USER_INPUT"
    gc.collect()
    after = await scrape(world.http)
    changes = outcomes(before, after)
    assert changes.get("BAD_USER_INPUT", 0) == 1
    assert changes.get("INTERNAL", 0) == 0


async def test_mutations_are_counted_by_outcome(world):
    """R10: a refused approval counts under its code, an accepted one as OK."""
    image = await world.register_image("admin")
    request = await world.request_approval(image, who="dev2")
    mutation = "mutation Approve($id: ID!) { approveRequest(id: $id) { state } }"
    before = await scrape(world.http)
    assert await world["admin"].code(mutation, {"id": request}) == "SELF_APPROVAL"
    assert await world["viewer"].code(mutation, {"id": request}) == "FORBIDDEN"
    assert (await world["approver1"].ok(mutation, {"id": request}))["approveRequest"]["state"] == "PENDING"
    after = await scrape(world.http)
    assert delta(before, after, REQUESTS, operation="Approve", outcome="SELF_APPROVAL") == 1
    assert delta(before, after, REQUESTS, operation="Approve", outcome="FORBIDDEN") == 1
    assert delta(before, after, REQUESTS, operation="Approve", outcome="OK") == 1


async def test_approval_request_and_deployment_gauges_follow_the_database(world):
    """Greenlight_approval_requests{state} and greenlight_deployments{status}
    equal the rows of this database after a request, its approvals and the deploy; a live
    request past its expiry counts as EXPIRED (R15)."""
    samples = await scrape(world.http)
    for state in ApprovalState:
        assert value(samples, "greenlight_approval_requests", state=state.value) == 0, state
    for status in DeploymentStatus:
        assert value(samples, "greenlight_deployments", status=status.value) == 0, status

    image = await world.register_image()
    request = await world.request_approval(image, who="dev2")
    samples = await scrape(world.http)
    assert value(samples, "greenlight_approval_requests", state="PENDING") == 1

    for approver in ("approver1", "approver2"):
        await world.approve(request, approver)
    samples = await scrape(world.http)
    assert value(samples, "greenlight_approval_requests", state="PENDING") == 0
    assert value(samples, "greenlight_approval_requests", state="APPROVED") == 1

    deployment = await world.deploy(image)
    assert deployment["status"] == "PROGRESSING"
    samples = await scrape(world.http)
    assert value(samples, "greenlight_approval_requests", state="APPROVED") == 0
    assert value(samples, "greenlight_approval_requests", state="CONSUMED") == 1
    assert value(samples, "greenlight_deployments", status="PROGRESSING") == 1
    assert value(samples, "greenlight_deployments", status="HEALTHY") == 0

    # A second request that is still PENDING in its row but past its expiry (R15).
    other = await world.register_image()
    stale = await world.request_approval(other, who="dev2")
    await ApprovalRequest.filter(id=int(stale.split(":")[1])).update(expires_at=now() - timedelta(minutes=1))
    samples = await scrape(world.http)
    assert value(samples, "greenlight_approval_requests", state="PENDING") == 0
    assert value(samples, "greenlight_approval_requests", state="EXPIRED") == 1

    # Whatever the gauges say, the database says the same.
    assert await ApprovalRequest.filter(state="CONSUMED").count() == 1
    assert await Deployment.filter(status="PROGRESSING").count() == 1
    assert await ApprovalRequest.all().count() == sum(
        value(samples, "greenlight_approval_requests", state=s.value) for s in ApprovalState
    )


async def test_outbox_backlog_gauges(world):
    """Greenlight_outbox_backlog{outbox,state} counts unsent (pending) and
    given-up (failed) rows of the email and webhook outboxes; sent ones count in neither."""
    image = await world.register_image(tag="v-outbox")
    deployment = await world.deploy(image, pipeline="shop/staging")
    deployment_id = int(deployment["id"].split(":")[1])
    user = await User.get(email="approver1@example.com")
    at = now()
    for n, (sent, failed) in enumerate([(None, None), (None, None), (None, None), (at, None), (None, at)]):
        await EmailOutbox.create(
            message_id=f"<{uuid.uuid4().hex}@greenlight.test>",
            kind="request",
            recipient=user,
            to_address=user.email,
            subject=f"email {n}",
            text_body="text",
            html_body="<p>html</p>",
            next_attempt_at=at,
            sent_at=sent,
            failed_at=failed,
        )
    for delivered, failed in [(None, None), (at, None), (None, at), (None, at)]:
        await WebhookDelivery.create(
            deployment_id=deployment_id,
            payload={"event": "test"},
            next_attempt_at=at,
            delivered_at=delivered,
            failed_at=failed,
        )
    samples = await scrape(world.http)
    assert value(samples, "greenlight_outbox_backlog", outbox="email", state="pending") == 3
    assert value(samples, "greenlight_outbox_backlog", outbox="email", state="failed") == 1
    assert value(samples, "greenlight_outbox_backlog", outbox="webhook", state="pending") == 1
    assert value(samples, "greenlight_outbox_backlog", outbox="webhook", state="failed") == 2

    await EmailOutbox.filter(sent_at__isnull=True, failed_at__isnull=True).update(sent_at=now())
    samples = await scrape(world.http)
    assert value(samples, "greenlight_outbox_backlog", outbox="email", state="pending") == 0
    assert value(samples, "greenlight_outbox_backlog", outbox="email", state="failed") == 1


async def test_db_pool_gauge(http, backend):
    """Greenlight_db_pool_connections{state} reports in_use, idle and max
    (SQLite: one connection; PostgreSQL: asyncpg's pool)."""
    samples = await scrape(http)
    states = label_values(samples, "greenlight_db_pool_connections", "state")
    assert {"in_use", "idle", "max"} <= states
    size = value(samples, "greenlight_db_pool_connections", state="max")
    in_use = value(samples, "greenlight_db_pool_connections", state="in_use")
    idle = value(samples, "greenlight_db_pool_connections", state="idle")
    assert size >= 1
    assert 0 <= in_use <= size and 0 <= idle <= size
    if backend == "sqlite":
        assert (in_use, idle, size) == (0, 1, 1)


async def test_operation_label_cardinality_is_bounded(world):
    """300 distinct client-chosen operation names do not make 300 label
    values: past MAX_OPERATION_NAMES distinct names the rest count as "other", and the
    label set of the whole process stays bounded."""
    prefix = f"Op{uuid.uuid4().hex[:8]}_"
    names = [f"{prefix}{n}" for n in range(300)]
    before = await scrape(world.http)
    for name in names:
        body = await world["viewer"].execute(f"query {name} {{ __typename }}")
        assert body == {"data": {"__typename": "Query"}}, body
    after = await scrape(world.http)

    labels = label_values(after, REQUESTS, "operation")
    fixed = {"anonymous", "invalid", "other"}
    assert len(labels - fixed) <= metrics.MAX_OPERATION_NAMES
    own = {name for name in names if delta(before, after, REQUESTS, operation=name, outcome="OK")}
    assert len(own) < len(names)
    assert len(own) <= metrics.MAX_OPERATION_NAMES
    # Every one of the 300 was counted once: under its own name or under "other".
    assert delta(before, after, REQUESTS, operation="other", outcome="OK") == len(names) - len(own)
    assert len(label_values(after, LATENCY_COUNT, "operation") - fixed) <= metrics.MAX_OPERATION_NAMES


@pytest.mark.parametrize(
    "name",
    [
        "A" * 65,  # valid GraphQL, but longer than a label may be
        "Émoji_🙂",
        'x"} 1\ngreenlight_fake 99',
        "has space",
    ],
)
def test_invalid_operation_name_is_labelled_invalid(name):
    """A name that is not a short GraphQL name never becomes a label."""
    assert metrics.operation_label(name) == "invalid"
    assert metrics.operation_label(None) == "anonymous"
    assert metrics.operation_label("") == "anonymous"


async def test_invalid_operation_names_from_clients_count_as_invalid(world):
    """Through the API, a 100-character operation name and an operationName
    with line breaks and quotes (that no document defines) both count as "invalid"."""
    long_name = "Q" * 100
    before = await scrape(world.http)
    assert (await world["dev"].ok(f"query {long_name} {{ me {{ email }} }}"))["me"]
    response = await world.http.post(
        "/graphql",
        json={"query": "query Me { me { email } }", "operationName": 'x"}\nfake 1'},
        headers={"Authorization": f"Bearer {world['dev'].token}"},
    )
    assert response.status_code in (200, 400), response.text
    after = await scrape(world.http)
    assert delta(before, after, REQUESTS, operation="invalid", outcome="OK") == 1
    invalid = sum(
        v - before.get((n, labels), 0.0)
        for (n, labels), v in after.items()
        if n == REQUESTS and dict(labels)["operation"] == "invalid"
    )
    assert invalid == 2
    assert long_name not in label_values(after, REQUESTS, "operation")
    assert not any("\n" in label or '"' in label for label in label_values(after, REQUESTS, "operation"))
