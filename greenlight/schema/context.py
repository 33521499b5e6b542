"""What every resolver receives: the request, the authenticated actor, the loaders."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from strawberry.types import Info as StrawberryInfo

from greenlight.policies import Actor
from greenlight.schema.loaders import Loaders
from greenlight.workflow.errors import Unauthenticated


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
    response_cache: Any = None  # the process's cache of whole answers (greenlight.cache.responses)
    change_stamp: Any = None  # the database's change counter when the request began (greenlight.cache)

    @property
    def actor(self) -> Actor:
        if self.actor_or_none is None:
            raise Unauthenticated(self.auth_error or "authentication required")
        return self.actor_or_none


Info = StrawberryInfo[Context, None]
