"""Refuses request bodies over a size with HTTP 413, declared or streamed, and WebSocket
messages over the same size (GREENLIGHT_MAX_BODY_BYTES) by closing the socket with 1009."""

from __future__ import annotations

from starlette.responses import PlainTextResponse


class BodyTooLarge(Exception):
    pass


class BodySizeLimitMiddleware:
    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = PlainTextResponse(f"request body larger than {self.max_bytes} bytes", status_code=413)
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await too_large(scope, receive, send)
                    return
        received = 0
        started = False

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await too_large(scope, receive, send)

    async def _websocket(self, scope, receive, send) -> None:
        """A message over the limit closes the socket with 1009 (message too big) before
        the app reads it: to the app the client has gone, and what it sends after is
        dropped. (`greenlight serve` also sets uvicorn's own limit to the same size.)"""
        closed = False

        async def bounded_receive():
            nonlocal closed
            message = await receive()
            if message["type"] == "websocket.receive" and _size(message) > self.max_bytes:
                closed = True
                await send(
                    {
                        "type": "websocket.close",
                        "code": MESSAGE_TOO_BIG,
                        "reason": f"message larger than {self.max_bytes} bytes",
                    }
                )
                return {"type": "websocket.disconnect", "code": MESSAGE_TOO_BIG}
            return message

        async def guarded_send(message):
            if not closed:
                await send(message)

        await self.app(scope, bounded_receive, guarded_send)


MESSAGE_TOO_BIG = 1009  # RFC 6455


def _size(message) -> int:
    if message.get("bytes") is not None:
        return len(message["bytes"])
    return len((message.get("text") or "").encode())
