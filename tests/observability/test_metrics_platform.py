"""Metrics as a platform team scrapes them: the build, HTTP latency by route and outcome,
the outboxes' depth and oldest due age per kind, bad input counted as bad input (never
INTERNAL), a subscription ended by its client counted as no error, the database read once
while nothing changes, `promtool check metrics` clean, and the metrics port of its own."""

from __future__ import annotations

import asyncio
import json
import platform
import shutil
import subprocess
import uuid
from datetime import timedelta

import httpx
import pytest

from greenlight.app import create_app
from greenlight.clock import now
from greenlight.models import EmailOutbox, User, WebhookDelivery
from greenlight.observability import metrics
from tests.e2e.test_websocket import DEPLOYMENT_STATUS, session, subscribe
from tests.observability import test_metrics
from tests.observability.test_metrics import REQUESTS, delta, outcomes, scrape, value
from tests.support import free_port, receive, serving

HTTP_LATENCY_COUNT = "greenlight_http_request_duration_seconds_count"

# Gauges read on every scrape, as in the metrics tests.
settings = test_metrics.settings


async def test_build_info_names_version_commit_and_python(http):
    samples = await scrape(http)
    (labels,) = [dict(labels) for (name, labels), v in samples.items() if name == "greenlight_build_info"]
    assert value(samples, "greenlight_build_info", **labels) == 1
    assert labels["python"] == platform.python_version()
    assert labels["version"] and labels["version"] != "unknown"
    assert labels["commit"]


async def test_http_latency_histogram_by_route_and_outcome(world):
    before = await scrape(world.http)
    await world["dev"].ok("{ me { email } }")
    await world.http.post("/graphql", content=b"{", headers={"Content-Type": "application/json"})
    await world.http.get("/healthz")
    after = await scrape(world.http)
    assert delta(before, after, HTTP_LATENCY_COUNT, route="/graphql", outcome="ok") == 1
    assert delta(before, after, HTTP_LATENCY_COUNT, route="/graphql", outcome="client_error") == 1
    assert delta(before, after, HTTP_LATENCY_COUNT, route="/healthz", outcome="ok") == 1
    assert delta(before, after, HTTP_LATENCY_COUNT, route="/graphql", outcome="server_error") == 0


async def test_outbox_depth_and_oldest_due_age_per_kind(world):
    samples = await scrape(world.http)
    for kind in ("email", "webhook"):
        assert value(samples, "greenlight_outbox_depth", kind=kind) == 0
        assert value(samples, "greenlight_outbox_oldest_due_age_seconds", kind=kind) == 0

    image = await world.register_image(tag="v-depth")
    deployment = await world.deploy(image, pipeline="shop/staging")
    deployment_id = int(deployment["id"].split(":")[1])
    user = await User.get(email="approver1@example.com")
    at = now()
    for n, due in enumerate(
        [at - timedelta(seconds=600), at - timedelta(seconds=30), at + timedelta(hours=1)]
    ):
        await EmailOutbox.create(
            message_id=f"<{uuid.uuid4().hex}@greenlight.test>",
            kind="request",
            recipient=user,
            to_address=user.email,
            subject=f"email {n}",
            text_body="text",
            html_body="<p>html</p>",
            next_attempt_at=due,
        )
    await EmailOutbox.create(  # sent: in neither
        message_id=f"<{uuid.uuid4().hex}@greenlight.test>",
        kind="request",
        recipient=user,
        to_address=user.email,
        subject="sent",
        text_body="text",
        html_body="<p>html</p>",
        next_attempt_at=at - timedelta(hours=5),
        sent_at=at,
    )
    for due in (at - timedelta(seconds=5), at + timedelta(hours=1)):
        await WebhookDelivery.create(
            deployment_id=deployment_id, payload={"event": "test"}, next_attempt_at=due
        )
    samples = await scrape(world.http)
    assert value(samples, "greenlight_outbox_depth", kind="email") == 3
    assert value(samples, "greenlight_outbox_depth", kind="webhook") == 2
    email_age = value(samples, "greenlight_outbox_oldest_due_age_seconds", kind="email")
    webhook_age = value(samples, "greenlight_outbox_oldest_due_age_seconds", kind="webhook")
    assert 600 <= email_age < 660, email_age
    assert 5 <= webhook_age < 65, webhook_age


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"[1]", "application/json"),
        (b'{"query": 1}', "application/json"),
        (b"query { me { email } }", "text/plain"),
    ],
    ids=["malformed-json", "batch", "query-not-a-string", "wrong-content-type"],
)
async def test_bad_input_requests_count_as_bad_input_never_internal(world, body, content_type):
    before = await scrape(world.http)
    response = await world.http.post(
        "/graphql",
        content=body,
        headers={"Content-Type": content_type, "Authorization": f"Bearer {world['dev'].token}"},
    )
    assert response.status_code == 400, response.text
    after = await scrape(world.http)
    changes = outcomes(before, after)
    assert changes.get("BAD_USER_INPUT", 0) == 1, changes
    assert changes.get("INTERNAL", 0) == 0, changes
    assert delta(before, after, REQUESTS, operation="anonymous", outcome="BAD_USER_INPUT") == 1


async def test_subscription_ended_by_its_client_is_not_an_error(world, app):
    image = await world.register_image("dev")
    deployment = await world.deploy(image, "shop/staging")
    before = await scrape(world.http)
    async with serving(app, 10.0) as port:
        url = f"ws://127.0.0.1:{port}/graphql"
        async with session(url, world["viewer"].token) as ws:  # the client completes it
            await subscribe(ws, "1", DEPLOYMENT_STATUS, {"id": deployment["id"]})
            assert (await receive(ws))["type"] == "next"
            await ws.send(json.dumps({"id": "1", "type": "complete"}))
            await ws.send(json.dumps({"type": "ping"}))
            assert (await receive(ws))["type"] == "pong"
        async with session(url, world["viewer"].token) as ws:  # the client just goes away
            await subscribe(ws, "2", DEPLOYMENT_STATUS, {"id": deployment["id"]})
            assert (await receive(ws))["type"] == "next"
        await asyncio.sleep(0.5)
    after = await scrape(world.http)
    changes = outcomes(before, after)
    assert changes.get("INTERNAL", 0) == 0, changes
    assert changes.get("OK", 0) >= 2, changes


async def test_database_gauges_are_read_once_per_cache_window(world, monkeypatch):
    """Scrapes within GREENLIGHT_METRICS_CACHE_SECONDS share one reading of the database,
    concurrent ones too; once the window has passed the next scrape reads again."""
    reads = []
    original = metrics._read_database

    async def counted():
        reads.append(1)
        await asyncio.sleep(0.05)  # long enough for the concurrent scrapes to meet
        return await original()

    monkeypatch.setattr(metrics, "_read_database", counted)
    monkeypatch.setattr(metrics.DATABASE, "cache_seconds", 60.0)
    monkeypatch.setattr(metrics.DATABASE, "_read_at", float("-inf"))
    await asyncio.gather(*(scrape(world.http) for _ in range(5)))
    assert len(reads) == 1
    await world.register_image(tag="v-gauges")
    await scrape(world.http)
    assert len(reads) == 1  # within the window the reading is kept
    monkeypatch.setattr(metrics.DATABASE, "_read_at", float("-inf"))  # the window has passed
    await scrape(world.http)
    assert len(reads) == 2
    monkeypatch.setattr(metrics.DATABASE, "cache_seconds", 0.0)  # GREENLIGHT_METRICS_CACHE_SECONDS=0
    await scrape(world.http)
    await scrape(world.http)
    assert len(reads) == 4


PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (Debian: apt-get install prometheus)")
async def test_promtool_check_metrics_passes(world):
    await world["dev"].ok("query Me { me { email } }")
    await world.http.post("/graphql", content=b"{", headers={"Content-Type": "application/json"})
    response = await world.http.get("/metrics")
    checked = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=response.content, capture_output=True, timeout=60
    )
    assert checked.returncode == 0, (checked.stdout + checked.stderr).decode()
    assert not (checked.stdout + checked.stderr).strip(), (checked.stdout + checked.stderr).decode()


async def test_metrics_port_serves_metrics_apart_from_the_api(database, database_url, settings, world):
    """With GREENLIGHT_METRICS_PORT, /metrics answers on that port (and the database gauges
    are read on the app's event loop) and no longer on the API's."""
    from dataclasses import replace

    port = free_port()
    app = create_app(replace(settings, metrics_port=port, metrics_host="127.0.0.1"), manage_database=False)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as api:
            assert (await api.get("/metrics")).status_code == 404
            assert (await api.get("/healthz")).status_code == 200
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", trust_env=False) as scraper:
            response = await scraper.get("/metrics")
    assert response.status_code == 200
    assert "greenlight_build_info" in response.text
    assert 'greenlight_deployments{status="PROGRESSING"}' in response.text
    assert "greenlight_graphql_requests_total" in response.text
