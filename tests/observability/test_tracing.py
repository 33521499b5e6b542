"""Tracing: with an exporter (or GREENLIGHT_OTEL_ENDPOINT) every GraphQL operation
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
CALLER_TRACE, CALLER_SPAN = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"

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
from greenlight.api import schema


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


END_TO_END = """
import time
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from greenlight import jobs
from tests.conftest import build_world

CALLER_TRACE, CALLER_SPAN = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
JWK = {**RSAAlgorithm.to_jwk(KEY.public_key(), as_dict=True), "kid": "k1", "alg": "RS256", "use": "sig"}
spans, calls, exports = [], [], []


class Receiver(BaseHTTPRequestHandler):
    \"\"\"The OTLP/HTTP collector (/v1/traces, protobuf), the CD system's webhook (/hook) and
    the identity provider's JWKS (/jwks), on one loopback port.\"\"\"

    def answer(self, body, content_type):
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path != "/v1/traces":
            calls.append({"path": self.path, "traceparent": self.headers.get("traceparent")})
            return self.answer(b"ok", "text/plain")
        exports.append(self.headers.get("Content-Type"))
        request = ExportTraceServiceRequest.FromString(data)
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append({
                        "name": span.name, "trace": span.trace_id.hex(), "id": span.span_id.hex(),
                        "parent": span.parent_span_id.hex() or None, "kind": span.kind,
                        "service": resource.get("service.name"),
                    })
        self.answer(ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf")

    def do_GET(self):
        calls.append({"path": self.path, "traceparent": self.headers.get("traceparent")})
        self.answer(json.dumps({"keys": [JWK]}).encode(), "application/json")

    def log_message(self, *args):
        pass


async def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    settings = Settings.from_env({
        "GREENLIGHT_DATABASE_URL": URL,
        "OTEL_EXPORTER_OTLP_ENDPOINT": base,
        "OTEL_SERVICE_NAME": "greenlight-e2e",
        "GREENLIGHT_DEPLOYER": "webhook",
        "GREENLIGHT_DEPLOY_WEBHOOK_URL": base + "/hook",
        "GREENLIGHT_DEPLOY_WEBHOOK_SECRET": "s" * 32,
        "GREENLIGHT_JWT_ISSUER": "https://idp.test",
        "GREENLIGHT_JWT_AUDIENCE": "greenlight",
        "GREENLIGHT_JWT_JWKS_URL": base + "/jwks",
        "GREENLIGHT_MUTATIONS_PER_MINUTE": "0",
    })
    await db.migrate(URL)
    await db.connect(URL)
    app = create_app(settings, manage_database=False)
    provider = trace.get_tracer_provider()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://greenlight.test") as http:
        world = await build_world(http)
        provider.force_flush(10_000)
        spans.clear()  # from here on, what a running server does

        now = int(time.time())
        token = jwt.encode(
            {"iss": "https://idp.test", "aud": "greenlight", "sub": "admin", "email": "admin@example.com",
             "iat": now, "exp": now + 300},
            KEY, algorithm="RS256", headers={"kid": "k1"},
        )
        response = await http.post(
            "/graphql",
            json={"query": QUERY},
            headers={"Authorization": "Bearer " + token, "traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"},
        )
        image = await world.register_image()
        await world.deploy(image, pipeline="shop/staging")
    async with httpx.AsyncClient(trust_env=False) as client:
        await jobs.run_once(settings, client)
    await db.close()
    flushed = provider.force_flush(10_000)
    server.shutdown()
    print(json.dumps({"body": response.json(), "flushed": flushed, "spans": spans, "calls": calls,
                      "exports": exports}))


asyncio.run(main())
"""


def run(script: str, tmp_path, env: dict[str, str] | None = None) -> dict:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("GREENLIGHT_", "OTEL_"))}
    environment["PYTHONPATH"] = str(ROOT)  # the end-to-end script builds the tests' world
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
    """A span for the operation (named after it), for its resolvers, and one
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

    # Every database span of the request belongs to its trace: those of authentication under
    # the request's server span, the SELECT of `applications` under the operation span.
    by_id = {s["id"]: s for s in spans}

    def ancestors(span) -> set:
        found, parent = set(), span["parent"]
        while parent in by_id:
            found.add(parent)
            parent = by_id[parent]["parent"]
        return found

    (server,) = [s for s in spans if s["parent"] is None]
    assert server["name"].startswith("POST"), server
    assert {s["trace"] for s in spans} == {server["trace"]}
    for span in db_spans:
        assert server["id"] in ancestors(span), span
    selects = [s for s in db_spans if '"applications"' in s["attributes"]["db.statement"]]
    assert selects and all(operation[0]["id"] in ancestors(s) for s in selects)


def test_nothing_is_installed_without_an_endpoint(tmp_path):
    """With no GREENLIGHT_OTEL_ENDPOINT, no tracer provider is installed, the
    schema has no tracing extension and the database clients are not wrapped."""
    out = run(WITHOUT_ENDPOINT, tmp_path)
    assert out["endpoint"] is None
    assert out["setup"] is False and out["enabled"] is False
    assert out["provider"] == "ProxyTracerProvider"
    assert "OpenTelemetryExtension" not in out["extensions"]
    assert out["db_patched"] is False
    assert out["body"]["data"]["me"]["email"] == "admin@example.com"


def test_spans_are_exported_to_the_otlp_endpoint(tmp_path):
    """With GREENLIGHT_OTEL_ENDPOINT set, spans go to ENDPOINT/v1/traces as
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


def test_traces_join_the_platform_s_through_a_real_otlp_collector(tmp_path):
    """With the standard OTEL_EXPORTER_OTLP_ENDPOINT and OTEL_SERVICE_NAME, to an OTLP/HTTP
    collector on loopback that decodes what it receives with opentelemetry-proto:
    - a request with `traceparent` continues the caller's trace: its server span's parent is
      the caller's span, and the operation and every database call are in that trace;
    - the JWKS fetch made while authenticating carries the trace on (`traceparent`);
    - no database span is an orphan: each has a parent, up to a request's server span or to
      a background job's root span;
    - each background job round is a named root span, and the webhook it sends carries
      that trace on."""
    out = run(END_TO_END, tmp_path)
    assert out["body"]["data"]["me"] == {"email": "admin@example.com"}
    assert out["flushed"] is True
    assert out["exports"] and set(out["exports"]) == {"application/x-protobuf"}
    spans = out["spans"]
    assert spans, "the collector received no span"
    assert {s["service"] for s in spans} == {"greenlight-e2e"}
    by_id = {s["id"]: s for s in spans}

    def root_of(span) -> dict:
        while span["parent"] in by_id:
            span = by_id[span["parent"]]
        return span

    # The caller's trace continues: server span under the caller's span, the rest below it.
    caller = [s for s in spans if s["trace"] == CALLER_TRACE]
    (server,) = [s for s in caller if s["parent"] == CALLER_SPAN]
    assert server["kind"] == 2, server  # SPAN_KIND_SERVER
    assert any(s["name"] == "GraphQL Query: WhoAmI" for s in caller)
    assert any(s["name"].startswith("db ") for s in caller)
    assert all(root_of(s) is server for s in caller)

    # The JWKS was fetched inside that request, and told the identity provider the trace.
    jwks = [c for c in out["calls"] if c["path"] == "/jwks"]
    assert jwks and jwks[0]["traceparent"], out["calls"]
    assert jwks[0]["traceparent"].split("-")[1] == CALLER_TRACE

    # No orphan database span anywhere: each one's root is a request or a job.
    db_spans = [s for s in spans if s["name"].startswith("db ")]
    assert db_spans
    for span in db_spans:
        assert span["parent"] is not None, span
        root = root_of(span)
        assert root["kind"] == 2 or root["name"].startswith("job "), (span, root)

    # Background jobs: named root spans; the webhook carries the delivering job's trace.
    jobs = {s["name"]: s for s in spans if s["name"].startswith("job ")}
    assert {"job finish_rollouts", "job deliver_webhooks", "job sweep_expired"} <= jobs.keys()
    assert all(s["parent"] is None for s in jobs.values())
    (hook,) = [c for c in out["calls"] if c["path"] == "/hook"]
    assert hook["traceparent"].split("-")[1] == jobs["job deliver_webhooks"]["trace"]
