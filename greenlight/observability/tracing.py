"""OpenTelemetry traces when an OTLP endpoint is set (OTEL_EXPORTER_OTLP_ENDPOINT, or its
alias GREENLIGHT_OTEL_ENDPOINT), and nothing exported otherwise.

Each HTTP request or WebSocket gets a server span that continues the caller's trace (an
incoming `traceparent`); the GraphQL operation, its resolvers and every database call
made for it are its descendants, authentication included. Outgoing HTTP calls (webhooks,
JWKS) carry `traceparent` on. The background jobs run outside any request: each round
of each job is a root span of its own (`job finish_rollouts`, ...), so their database
calls are not orphans either.

Without an endpoint the request span is still made, by a provider that records and
exports nothing, so log lines carry a trace and span id (the caller's trace, if any)."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator

from opentelemetry import context as otel_context
from opentelemetry import trace

log = logging.getLogger("greenlight.tracing")

# Probes and scrapes are not traced: they would drown the traces people look for.
UNTRACED_PATHS = "healthz,readyz,metrics"

_DB_METHODS = ("execute_query", "execute_query_dict", "execute_insert", "execute_many", "execute_script")
_enabled = False


def enabled() -> bool:
    return _enabled


def setup(settings, exporter=None) -> bool:
    """Install the tracer provider; `exporter` replaces the OTLP one (tests). Returns
    whether tracing is on."""
    global _enabled
    if _enabled:
        return True
    if exporter is None and not (settings.otel_endpoint or settings.otel_traces_endpoint):
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": settings.otel_service_name}))
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_endpoint(settings))))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _instrument_database(trace.get_tracer("greenlight.db"))
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    _enabled = True
    log.info("tracing to %s", traces_endpoint(settings) if exporter is None else "a test exporter")
    return True


def traces_endpoint(settings) -> str:
    """OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as given; a base endpoint gets /v1/traces, as
    the OTLP/HTTP specification says."""
    if settings.otel_traces_endpoint:
        return settings.otel_traces_endpoint
    endpoint = settings.otel_endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


@functools.cache
def _ids_only_provider():
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    # Sampled out, spans still get ids (continuing an incoming trace), and cost nothing more.
    return TracerProvider(sampler=ALWAYS_OFF)


def asgi_middleware():
    """The outermost middleware: the request's server span (OpenTelemetry's ASGI
    instrumentation), from the installed provider, or one that only makes ids."""
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from starlette.middleware import Middleware

    return Middleware(
        OpenTelemetryMiddleware,
        excluded_urls=UNTRACED_PATHS,
        tracer_provider=None if _enabled else _ids_only_provider(),
        exclude_spans=["receive", "send"],
    )


@contextlib.contextmanager
def job_span(name: str) -> Iterator[None]:
    """A root span for one round of a background job, whatever context it runs in."""
    tracer = trace.get_tracer("greenlight.jobs")
    with tracer.start_as_current_span(f"job {name}", context=otel_context.Context()):
        yield


def _database_clients() -> list[type]:
    from tortoise.backends.asyncpg.client import AsyncpgDBClient, TransactionWrapper
    from tortoise.backends.base_postgres.client import BasePostgresClient
    from tortoise.backends.sqlite.client import SqliteClient, SqliteTransactionWrapper

    return [BasePostgresClient, AsyncpgDBClient, TransactionWrapper, SqliteClient, SqliteTransactionWrapper]


def _instrument_database(tracer) -> None:
    for cls in _database_clients():
        for name in _DB_METHODS:
            original = cls.__dict__.get(name)
            if original is None or getattr(original, "_greenlight_traced", False):
                continue
            setattr(cls, name, _traced(tracer, original, cls))


def _traced(tracer, method, cls):
    system = "postgresql" if "asyncpg" in cls.__module__ else "sqlite"

    @functools.wraps(method)
    async def wrapper(self, query, *args, **kwargs):
        statement = str(query)
        verb = statement.split(None, 1)[0].upper() if statement.strip() else "SQL"
        with tracer.start_as_current_span(
            f"db {verb}", attributes={"db.system": system, "db.statement": statement[:2000]}
        ):
            return await method(self, query, *args, **kwargs)

    wrapper._greenlight_traced = True
    return wrapper


def instrument_schema(schema) -> None:
    """Add Strawberry's OpenTelemetry extension (operation and resolver spans)."""
    from strawberry.extensions.tracing import OpenTelemetryExtension

    if OpenTelemetryExtension not in schema.extensions:
        schema.extensions = (*schema.extensions, OpenTelemetryExtension)
