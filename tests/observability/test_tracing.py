"""Issue 9, tracing: with an exporter (or GREENLIGHT_OTEL_ENDPOINT) every GraphQL operation
gets a span, and so does each database call (with db.statement) made inside it; without an
endpoint nothing is installed. Turning tracing on is global and permanent for a process (it
patches Tortoise's clients and the schema's extensions), so each check runs in a process of
its own and prints what it saw as JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PRELUDE = """
import asyncio, json, sys
import httpx
from greenlight import db
from greenlight.app import create_app
from greenlight.config import Settings
from greenlight.workflow.identity import bootstrap

URL = "sqlite://" + sys.argv[1]
QUERY = "query WhoAmI { me { email } applications { name } }"


async def ask(app, token):
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://greenlight.test") as http:
        response = await http.post(
            "/graphql", json={"query": QUERY}, headers={"Authorization": "Bearer " + token}
        )
    return response.json()
"""

WITH_EXPORTER = """
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from greenlight.observability import tracing


async def main():
    await db.migrate(URL)
    await db.connect(URL)
    exporter = InMemorySpanExporter()
    settings = Settings(database_url=URL, background_jobs=False, otel_service_name="greenlight-test")
    on = tracing.setup(settings, exporter=exporter)
    app = create_app(settings, manage_database=False)
    user, token = await bootstrap("admin@example.com")
    exporter.clear()
    body = await ask(app, token)
    await db.close()
    spans = [
        {
            "name": s.name,
            "trace": s.context.trace_id,
            "id": s.context.span_id,
            "parent": s.parent.span_id if s.parent else None,
            "attributes": {k: str(v) for k, v in (s.attributes or {}).items()},
            "service": s.resource.attributes.get("service.name"),
        }
        for s in exporter.get_finished_spans()
    ]
    print(json.dumps({"enabled": on, "body": body, "spans": spans,
                      "provider": type(trace.get_tracer_provider()).__name__}))


asyncio.run(main())
"""

WITHOUT_ENDPOINT = """
from opentelemetry import trace
from tortoise.backends.sqlite.client import SqliteClient
from greenlight.observability import tracing
from greenlight.schema import schema


async def main():
    await db.migrate(URL)
    await db.connect(URL)
    settings = Settings.from_env()
    app = create_app(settings, manage_database=False)
    user, token = await bootstrap("admin@example.com")
    body = await ask(app, token)
    await db.close()
    print(json.dumps({
        "endpoint": settings.otel_endpoint,
        "setup": tracing.setup(settings),
        "enabled": tracing.enabled(),
        "provider": type(trace.get_tracer_provider()).__name__,
        "extensions": [getattr(e, "__name__", str(e)) for e in schema.extensions],
        "db_patched": hasattr(SqliteClient.execute_query, "_greenlight_traced"),
        "body": body,
    }))


asyncio.run(main())
"""

TO_COLLECTOR = """
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from opentelemetry import trace

received = []


class Collector(BaseHTTPRequestHandler):
    def do_POST(self):
        data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        received.append({"path": self.path, "type": self.headers.get("Content-Type"), "size": len(data),
                         "has_operation": b"GraphQL Query: WhoAmI" in data, "has_db": b"db SELECT" in data})
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


async def main():
    server = HTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings = Settings.from_env({
        "GREENLIGHT_DATABASE_URL": URL,
        "GREENLIGHT_OTEL_ENDPOINT": f"http://127.0.0.1:{server.server_port}",
        "GREENLIGHT_OTEL_SERVICE_NAME": "greenlight-collector-test",
    })
    await db.migrate(URL)
    await db.connect(URL)
    app = create_app(settings, manage_database=False)
    user, token = await bootstrap("admin@example.com")
    body = await ask(app, token)
    await db.close()
    provider = trace.get_tracer_provider()
    flushed = provider.force_flush(10_000)
    server.shutdown()
    print(json.dumps({"body": body, "flushed": flushed, "received": received,
                      "provider": type(provider).__name__}))


asyncio.run(main())
"""


def run(script: str, tmp_path, env: dict[str, str] | None = None) -> dict:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("GREENLIGHT_", "OTEL_"))}
    environment.update(env or {})
    environment["GREENLIGHT_ENV_FILE"] = str(tmp_path / "no.env")
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PRELUDE + script), str(tmp_path / "t.sqlite3")],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_operation_and_database_spans_with_an_exporter(tmp_path):
    """Issue 9 (4): a span for the operation (named after it), for its resolvers, and one
    per database call with db.system and db.statement, the database calls of the resolvers
    inside the operation's trace; the service name is the configured one."""
    out = run(WITH_EXPORTER, tmp_path)
    assert out["enabled"] is True
    assert out["provider"] == "TracerProvider"
    assert out["body"] == {"data": {"me": {"email": "admin@example.com"}, "applications": []}}
    spans = out["spans"]
    names = [s["name"] for s in spans]
    operation = [s for s in spans if s["name"] == "GraphQL Query: WhoAmI"]
    assert len(operation) == 1, names
    assert "GraphQL Parsing" in names and "GraphQL Validation" in names
    assert any(n == "GraphQL Resolving: applications" for n in names), names

    db_spans = [s for s in spans if s["name"].startswith("db ")]
    assert db_spans, names
    for span in db_spans:
        assert span["attributes"]["db.system"] == "sqlite"
        assert span["attributes"]["db.statement"].split(None, 1)[0].upper() == span["name"][3:]
    assert any('"applications"' in s["attributes"]["db.statement"] for s in db_spans), db_spans
    assert {s["service"] for s in spans} == {"greenlight-test"}

    # The SELECT of `applications` belongs to the operation's trace, under the operation span.
    by_id = {s["id"]: s for s in spans}
    inside = [s for s in db_spans if s["trace"] == operation[0]["trace"]]
    assert inside, "no database span inside the operation's trace"
    for span in inside:
        ancestors, parent = set(), span["parent"]
        while parent in by_id:
            ancestors.add(parent)
            parent = by_id[parent]["parent"]
        assert operation[0]["id"] in ancestors, span


def test_nothing_is_installed_without_an_endpoint(tmp_path):
    """Issue 9 (4): with no GREENLIGHT_OTEL_ENDPOINT, no tracer provider is installed, the
    schema has no tracing extension and the database clients are not wrapped."""
    out = run(WITHOUT_ENDPOINT, tmp_path)
    assert out["endpoint"] is None
    assert out["setup"] is False and out["enabled"] is False
    assert out["provider"] == "ProxyTracerProvider"
    assert "OpenTelemetryExtension" not in out["extensions"]
    assert out["db_patched"] is False
    assert out["body"]["data"]["me"]["email"] == "admin@example.com"


def test_spans_are_exported_to_the_otlp_endpoint(tmp_path):
    """Issue 9 (4): with GREENLIGHT_OTEL_ENDPOINT set, spans go to ENDPOINT/v1/traces as
    OTLP over HTTP (protobuf); here to a collector on loopback."""
    out = run(TO_COLLECTOR, tmp_path)
    assert out["provider"] == "TracerProvider"
    assert out["flushed"] is True
    assert out["body"]["data"]["me"]["email"] == "admin@example.com"
    assert out["received"], "the collector received nothing"
    assert {r["path"] for r in out["received"]} == {"/v1/traces"}
    assert {r["type"] for r in out["received"]} == {"application/x-protobuf"}
    assert any(r["has_operation"] for r in out["received"])
    assert any(r["has_db"] for r in out["received"])
