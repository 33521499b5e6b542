"""The ASGI application: routes, authentication, context, background jobs."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocketState
from strawberry.asgi import ASGIWebSocketAdapter, GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import ExecutionResult

from greenlight import console, db, notifications, sso
from greenlight.config import Settings
from greenlight.events import listen_postgres
from greenlight.limits.body import BodySizeLimitMiddleware
from greenlight.limits.rates import ConcurrencyCap
from greenlight.notifications import pages
from greenlight.observability import logs, metrics, tracing
from greenlight.observability.requests import RequestContextMiddleware
from greenlight.policies import Authorizer, validate
from greenlight.rollout import drivers, jobs
from greenlight.schema import build_schema
from greenlight.schema.context import Context
from greenlight.schema.errors import to_contract
from greenlight.workflow.errors import Unauthenticated
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
            # the cap is per token, across connections (greenlight.schema.subscriptions)
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

    async def process_result(self, request, result: ExecutionResult) -> GraphQLHTTPResponse:
        """Parse and validation errors never reach the schema's extensions; code them here."""
        if result.errors:
            request_id = request.scope.get("state", {}).get("request_id") or "-"
            result.errors = [to_contract(error, request_id) for error in result.errors]
        return await super().process_result(request, result)

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
    if await db.ping():
        return JSONResponse({"status": "ready"})
    return JSONResponse({"status": "database unavailable"}, status_code=503)


def create_app(settings: Settings, *, manage_database: bool = True, migrate: bool = True) -> Starlette:
    """`manage_database`: connect (and, with `migrate`, apply migrations) on start-up and
    run the background work; tests connect themselves and drive the work by hand."""
    authorizer = Authorizer()
    graphql = GreenlightGraphQL(authorizer, settings)
    validate.require_valid()
    drivers.configure(settings)
    notifications.configure(settings)
    sso.configure(settings)
    if tracing.setup(settings):
        tracing.instrument_schema(graphql.schema)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if manage_database:
            if migrate:
                await db.migrate(settings.database_url)
            await db.connect(settings.database_url)
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
            Route("/metrics", metrics.metrics_endpoint),
            *console.routes(),
        ],
        middleware=[
            Middleware(RequestContextMiddleware),
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
