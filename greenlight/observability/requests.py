"""Per-request context: the request id (an incoming X-Request-ID is honoured and echoed),
one access log line and the HTTP metrics; and per GraphQL operation, its name, outcome
code and latency in the logs and metrics."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Iterator
from contextvars import ContextVar

from graphql import GraphQLError, OperationDefinitionNode
from strawberry.extensions import SchemaExtension

from greenlight.observability import logs, metrics

access_log = logging.getLogger("greenlight.access")
operation_log = logging.getLogger("greenlight.graphql")

# Whether the request's GraphQL operation was counted (a mutable cell, so the middleware
# sees what the operation set, whichever task ran it).
_counted: ContextVar[list[bool] | None] = ContextVar("greenlight_operation_counted", default=None)

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
ROUTES = ("/graphql", "/healthz", "/readyz", "/metrics", "/one-click/approve")


def incoming_request_id(headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name.lower() == b"x-request-id":
            candidate = value.decode("latin-1").strip()
            if _REQUEST_ID.fullmatch(candidate):
                return candidate
    return uuid.uuid4().hex


class RequestContextMiddleware:
    """Pure ASGI middleware, so it also wraps WebSocket connections."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = incoming_request_id(scope.get("headers", []))
        tokens = (logs.request_id.set(request_id), logs.operation.set(None), logs.user.set(None))
        counted = [False]
        counted_token = _counted.set(counted)
        scope.setdefault("state", {})["request_id"] = request_id
        status = {"code": 500}
        started = time.perf_counter()

        async def send_with_id(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            path = scope.get("path", "")
            route = path if path in ROUTES else "other"
            if scope["type"] == "http":
                seconds = time.perf_counter() - started
                metrics.observe_http(route, status["code"], seconds)
                metrics.observe_pool()
                if route == "/graphql" and not counted[0] and status["code"] >= 400:
                    # Refused before GraphQL read an operation (malformed JSON, a body that is
                    # not a GraphQL request, too large ...): the client's input, not ours.
                    outcome = "BAD_USER_INPUT" if status["code"] < 500 else "INTERNAL"
                    metrics.observe_operation(None, outcome, seconds)
                if route not in ("/healthz", "/readyz", "/metrics"):
                    access_log.info(
                        "%s %s %s",
                        scope.get("method"),
                        route,
                        status["code"],
                        extra={
                            "method": scope.get("method"),
                            "path": route,
                            "status": status["code"],
                            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                        },
                    )
            for var, token in zip((logs.request_id, logs.operation, logs.user), tokens, strict=True):
                var.reset(token)
            _counted.reset(counted_token)


def _operation_name(execution_context) -> str | None:
    if execution_context.operation_name:
        return execution_context.operation_name
    document = execution_context.graphql_document
    if document is not None:
        for definition in document.definitions:
            if isinstance(definition, OperationDefinitionNode) and definition.name:
                return definition.name.value
    return None


def _outcome(errors) -> str:
    if not errors:
        return "OK"
    extensions = errors[0].extensions or {}
    if "code" in extensions:
        return extensions["code"]
    original = errors[0].original_error
    return "BAD_USER_INPUT" if original is None or isinstance(original, GraphQLError) else "INTERNAL"


class OperationObserver(SchemaExtension):
    """Logs and counts each GraphQL operation by name and outcome code."""

    def on_execute(self) -> Iterator[None]:
        logs.operation.set(_operation_name(self.execution_context))
        yield

    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        context = self.execution_context.context
        actor = getattr(context, "actor_or_none", None)
        if actor is not None:
            logs.user.set(actor.user.email)
        outcome = "INTERNAL"
        try:
            yield
            result = self.execution_context.result
            errors = result.errors if result is not None else self.execution_context.pre_execution_errors
            outcome = _outcome(errors)
        except GraphQLError as error:
            outcome = _outcome([error])
            raise
        except (GeneratorExit, asyncio.CancelledError):
            outcome = "OK"  # the client ended its subscription (or went away): not an error
            raise
        finally:
            cell = _counted.get()
            if cell is not None:
                cell[0] = True
            name = _operation_name(self.execution_context)
            logs.operation.set(name)
            seconds = time.perf_counter() - started
            metrics.observe_operation(name, outcome, seconds)
            operation_log.info(
                "graphql %s %s",
                name or "anonymous",
                outcome,
                extra={"outcome": outcome, "duration_ms": round(seconds * 1000, 1)},
            )
