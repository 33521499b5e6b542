"""The ASGI application: routes, authentication, context, background jobs."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import uuid
from collections.abc import AsyncIterator

from cross_web import HTTPException
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocketState
from strawberry.asgi import ASGIWebSocketAdapter, GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import ExecutionResult
from strawberry.types.unset import UNSET

from greenlight import console, db, jobs, notifications, sso
from greenlight.api import build_schema
from greenlight.config import Settings
from greenlight.errors import Unauthenticated
from greenlight.events import listen_postgres
from greenlight.limits import payload
from greenlight.limits.body import BodySizeLimitMiddleware
from greenlight.limits.rates import ConcurrencyCap
from greenlight.observability import logs, media, metrics, tracing
from greenlight.observability.requests import RequestContextMiddleware
from greenlight.policies import Authorizer, validate
from greenlight.resolvers import pages
from greenlight.rollout import drivers
from greenlight.schema.context import Context
from greenlight.schema.errors import to_contract
from greenlight.workflow.identity import authorize

log = logging.getLogger("greenlight")


def credential_key(authorization: str | None) -> str | None:
    """The same key however the header spells the same credentials."""
    if not authorization:
        return None
    _, _, token = authorization.strip().partition(" ")
    token = token.strip()
    return hashlib.sha256(token.encode()).hexdigest()[:32] if token else None


class SocketAdapter(ASGIWebSocketAdapter):
    """A socket closed by the server (credentials withdrawn, greenlight.schema.context) has
    no one left to tell: what operations still send on it is dropped, not an error."""

    async def send_json(self, message) -> None:
        if self.ws.application_state != WebSocketState.DISCONNECTED:
            await super().send_json(message)

    async def close(self, code: int, reason: str) -> None:
        if self.ws.application_state != WebSocketState.DISCONNECTED:
            await super().close(code, reason)


class GreenlightGraphQL(GraphQL):
    websocket_adapter_class = SocketAdapter

    def __init__(self, authorizer: Authorizer, settings: Settings) -> None:
        super().__init__(
            build_schema(settings),
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            # the cap is per token, across connections (greenlight.resolvers.subscriptions)
            max_subscriptions_per_connection=None,
        )
        self.authorizer = authorizer
        self.settings = settings
        self.subscriptions = ConcurrencyCap(settings.max_subscriptions_per_token)

    async def render_graphql_ide(self, request):
        # GraphiQL with every asset from Greenlight: it works on a network without a CDN.
        return HTMLResponse(console.graphiql_page())

    async def get_context(self, request, response) -> Context:
        request_id = request.scope.get("state", {}).get("request_id") or uuid.uuid4().hex
        context = Context(
            request=request,
            response=response,
            request_id=request_id,
            actor_or_none=None,
            settings=self.settings,
            subscriptions=self.subscriptions,
            authorizer=self.authorizer,
        )
        if request.scope["type"] == "http":
            authorization = request.headers.get("authorization")
            context.credential_key = credential_key(authorization)
            try:
                context.actor_or_none = await authorize(authorization, self.authorizer)
            except Unauthenticated as error:
                context.auth_error = error.message
            except Exception as error:
                if not db.is_unavailable(error):
                    raise
                context.unavailable = True
        return context

    # What a body or message must be to be read at all (greenlight.limits.payload): anything
    # else is HTTP 400 with the reason (a socket message: the socket is closed), never a 500.
    def decode_json(self, data: str | bytes) -> object:
        return payload.decode(data)

    def parse_json(self, data: str | bytes):
        try:
            return self.decode_json(data)
        except payload.UnusableJSON as error:
            raise HTTPException(400, f"unusable request body: {error.message}") from None
        except json.JSONDecodeError as error:
            raise HTTPException(400, f"the request body is not JSON: {error.msg}") from None

    async def parse_http_body(self, request):
        if request.method == "POST" and "application/json" in (request.content_type or ""):
            problem = payload.request_shape_error(await request.get_body())
            if problem is not None:
                raise HTTPException(400, problem)
        return await super().parse_http_body(request)

    async def execute_operation(self, request, request_adapter, request_data, *args, **kwargs):
        name = getattr(request_data, "operation_name", None)
        if name is not None and not isinstance(name, str):
            raise HTTPException(400, "`operationName` must be a string or null")
        return await super().execute_operation(request, request_adapter, request_data, *args, **kwargs)

    async def process_result(self, request, result: ExecutionResult) -> GraphQLHTTPResponse:
        """Parse and validation errors never reach the schema's extensions; code them here."""
        if result.errors:
            request_id = request.scope.get("state", {}).get("request_id") or "-"
            result.errors = [to_contract(error, request_id) for error in result.errors]
        answer = await super().process_result(request, result)
        if media.wants_graphql_response(request.headers.get("accept")):
            # GraphQL over HTTP: a request that failed before execution has no `data`.
            failure = media.request_error(result)
            if failure is not None:
                request.state.graphql_request_error = failure
                answer.pop("data", None)
        return answer

    async def run(self, request, context=UNSET, root_value=UNSET):
        if request.scope["type"] != "http" or not media.wants_graphql_response(request.headers.get("accept")):
            return await super().run(request, context, root_value)
        try:
            response = await super().run(request, context, root_value)
        except HTTPException as error:
            return media.error_response(error.status_code, error.reason)
        if response.media_type == "application/json":
            response.headers["content-type"] = media.GRAPHQL_RESPONSE
            failure = getattr(request.state, "graphql_request_error", None)
            if failure is not None and response.status_code == 200:
                response.status_code = media.status_of(failure)
        return response

    async def on_ws_connect(self, context: Context):
        """connection_init: a socket without valid credentials is closed with 4403. Each
        operation sent on it later is authorised again (greenlight.schema.context)."""
        params = getattr(context, "connection_params", None) or {}
        authorization = None
        if isinstance(params, dict):
            for key, value in params.items():
                if str(key).lower() == "authorization" and isinstance(value, str):
                    authorization = value
        try:
            context.actor_or_none = await authorize(authorization, self.authorizer)
        except Unauthenticated as error:
            raise ConnectionRejectionError({"reason": error.message}) from None
        context.authorization = authorization
        context.credential_key = credential_key(authorization)
        return None


async def healthz(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def readyz(request: Request) -> JSONResponse:
    """Ready while the database answers within GREENLIGHT_READY_TIMEOUT_SECONDS: behind a
    partition a query gets no answer at all, and a load balancer must hear so in seconds."""
    if await db.ping():
        return JSONResponse({"status": "ready"})
    return JSONResponse({"status": "database unavailable"}, status_code=503)


def cors(settings: Settings) -> list[Middleware]:
    """Browsers on the GREENLIGHT_CORS_ORIGINS may call the API (preflights answered); with
    none listed, no CORS header is sent and browsers keep other origins out. Credentials
    are bearer tokens, never cookies, so no origin is allowed credentials."""
    if not settings.cors_origins:
        return []
    return [
        Middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Accept",
                "X-Request-ID",
                "traceparent",
                "tracestate",
            ],
            expose_headers=["X-Request-ID"],
            max_age=600,
        )
    ]


def create_app(settings: Settings, *, manage_database: bool = True, migrate: bool = True) -> Starlette:
    """`manage_database`: connect (and, with `migrate`, apply migrations) on start-up and
    run the background work; tests connect themselves and drive the work by hand."""
    authorizer = Authorizer()
    graphql = GreenlightGraphQL(authorizer, settings)
    validate.require_valid()
    db.configure(settings)
    drivers.configure(settings)
    notifications.configure(settings)
    sso.configure(settings)
    if tracing.setup(settings):
        tracing.instrument_schema(graphql.schema)
    metrics.configure(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if manage_database:
            if migrate:
                await db.migrate(settings.database_url)
            await db.connect(settings.database_url)
        metrics_server = (
            metrics.serve_port(settings.metrics_host, settings.metrics_port)
            if settings.metrics_port
            else None
        )
        tasks = []
        if settings.background_jobs:
            tasks.append(asyncio.create_task(jobs.run_forever(settings)))
            if settings.database_url.startswith(("postgres://", "postgresql://")):
                tasks.append(asyncio.create_task(listen_postgres(settings.database_url)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if metrics_server is not None:
                metrics_server.shutdown()
                metrics_server.server_close()
            metrics.process_exited()
            if manage_database:
                await db.close()

    app = Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            Route("/one-click/approve", pages.confirm_page, methods=["GET"]),
            Route("/one-click/approve", pages.approve_action, methods=["POST"]),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            # With a metrics port of its own, /metrics is not on the API's port.
            *([] if settings.metrics_port else [Route("/metrics", metrics.metrics_endpoint)]),
            *console.routes(settings),
        ],
        middleware=[
            tracing.asgi_middleware(),
            Middleware(RequestContextMiddleware),
            *cors(settings),
            Middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes),
        ],
        lifespan=lifespan,
    )
    app.state.authorizer = authorizer
    return app


def app_from_environment() -> Starlette:
    """The app of `greenlight serve --workers N`: each worker reads the environment; the
    parent process has applied the migrations."""
    settings = Settings.from_env()
    logs.setup(settings.log_format, settings.log_level)
    return create_app(settings, migrate=False)
