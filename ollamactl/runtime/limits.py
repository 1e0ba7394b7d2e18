"""Request-size limits: a JSON body larger than :data:`MAX_JSON_BODY_BYTES` gets 413, unread.

A body is refused from its ``Content-Length`` before any route runs, and a chunked body is
counted as it arrives, so a client cannot make the server buffer (and then tokenize, and then
frame to a runner) hundreds of megabytes. Blob uploads (``/api/blobs/<digest>``) are exempt:
they are streamed to a temp file and hashed, never held in memory.
"""

from __future__ import annotations

import json

from ollamactl.runtime.app import ASGIApp, Message, Receive, Scope, Send

MAX_JSON_BODY_BYTES = 32 * 1024 * 1024  # prompts, messages and base64 images fit with room
STREAMED_PREFIXES = ("/api/blobs/",)


class BodyTooLarge(Exception):
    """Raised into the app when a chunked body passes the limit mid-stream."""


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodyLimit:
    """ASGI middleware: 413 ``{"error": "request body too large"}`` above ``max_bytes``."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_JSON_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope.get("path", "")).startswith(STREAMED_PREFIXES):
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send)
            return
        seen = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"error": f"request body too large (limit {self.max_bytes} bytes)"})
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body.encode()})
