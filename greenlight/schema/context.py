"""What every resolver receives: the request, the authenticated actor, the loaders."""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from dataclasses import dataclass, field
from typing import Any

from starlette.websockets import WebSocketDisconnect, WebSocketState
from strawberry.types import Info as StrawberryInfo

from greenlight import db
from greenlight.errors import Unauthenticated
from greenlight.policies import Actor
from greenlight.schema.loaders import Loaders
from greenlight.workflow.identity import authorize

CREDENTIALS_WITHDRAWN = 4403  # the close code of a socket whose credentials no longer hold
MAX_CLOSE_REASON_BYTES = 123  # what a WebSocket close frame can carry


class CredentialsWithdrawn(Exception):
    """A WebSocket's credentials no longer hold; the socket has been closed with 4403."""


@dataclass
class Context:
    request: Any
    response: Any
    request_id: str
    actor_or_none: Actor | None
    auth_error: str | None = None
    authorization: str | None = None  # the credentials of a WebSocket, checked again later
    connection_params: dict | None = None  # a WebSocket's connection_init payload
    credential_key: str | None = None  # a hash of the credentials, for per-token limits
    unavailable: bool = False  # the database could not be reached to authenticate
    subscriptions: Any = None  # the process's cap on live subscriptions per credential
    loaders: Loaders = field(default_factory=Loaders)
    settings: Any = None
    authorizer: Any = None  # the process's (greenlight.policies.Authorizer), for WebSockets

    @property
    def actor(self) -> Actor:
        if self.actor_or_none is None:
            raise Unauthenticated(self.auth_error or "authentication required")
        return self.actor_or_none

    @property
    def is_websocket(self) -> bool:
        return getattr(self.request, "scope", {}).get("type") == "websocket"

    async def for_operation(self) -> Context:
        """A WebSocket's context for one operation sent on it: authorised as an HTTP request
        is at this moment (credentials, roles as of now, R5), reading afresh (loaders of its
        own). When the credentials no longer hold, the socket is closed with 4403 and the
        operation is refused (UNAUTHENTICATED) without running."""
        operation = dataclasses.replace(
            self, request_id=uuid.uuid4().hex, actor_or_none=None, auth_error=None, loaders=Loaders()
        )
        with contextlib.suppress(CredentialsWithdrawn):
            await operation.authorize_again()
        return operation

    async def authorize_again(self) -> None:
        """Check a WebSocket's credentials and bring its roles up to date (R5), as for a new
        HTTP request; raises CredentialsWithdrawn once the socket is closed for them. A
        database out of reach refuses the operation (UNAVAILABLE) and keeps the socket.
        Without a socket (the schema called in-process) only the roles are refreshed."""
        if not self.is_websocket:
            await self.actor.authorizer.refresh()
            return
        try:
            self.actor_or_none = await authorize(self.authorization, self.authorizer)
            self.unavailable = False
        except Unauthenticated as error:
            self.actor_or_none = None
            self.auth_error = error.message
            await close_socket(self.request, CREDENTIALS_WITHDRAWN, error.message)
            raise CredentialsWithdrawn(error.message) from None
        except Exception as error:
            if not db.is_unavailable(error):
                raise
            self.actor_or_none = None
            self.unavailable = True


async def close_socket(websocket: Any, code: int, reason: str) -> None:
    """Close a WebSocket, unless it is closed already (by another operation, or the client)."""
    if websocket.application_state == WebSocketState.DISCONNECTED:
        return
    reason = reason.encode()[:MAX_CLOSE_REASON_BYTES].decode(errors="ignore")
    with contextlib.suppress(RuntimeError, WebSocketDisconnect):
        await websocket.close(code=code, reason=reason)


Info = StrawberryInfo[Context, None]
