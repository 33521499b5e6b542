"""OpenTelemetry traces when GREENLIGHT_OTEL_ENDPOINT is set, and nothing otherwise:
a span for each GraphQL operation (and its resolvers) and one for each database call."""

from __future__ import annotations

import functools
import logging

log = logging.getLogger("greenlight.tracing")

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
    if exporter is None and not settings.otel_endpoint:
        return False
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": settings.otel_service_name}))
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = settings.otel_endpoint.rstrip("/")
        if not endpoint.endswith("/v1/traces"):
            endpoint += "/v1/traces"
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _instrument_database(trace.get_tracer("greenlight.db"))
    _enabled = True
    log.info("tracing to %s", settings.otel_endpoint or "a test exporter")
    return True


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
