"""Request-size limits: a JSON body larger than :data:`MAX_JSON_BODY_BYTES` gets 413, unread,
and the bodies held at once stay under :data:`MAX_HELD_BODY_BYTES` (503 past it).

A body is refused from its ``Content-Length`` before any route runs, and a chunked body is
counted as it arrives, so a client cannot make the server buffer (and then tokenize, and then
frame to a runner) hundreds of megabytes. ``OLLAMA_MAX_QUEUE`` counts requests, and 512 queued
bodies of 32 MiB would be 16 GiB, so the bytes of every body read and not yet answered are
counted too: a body that would pass the total is answered like a full queue. Only bytes that
arrived count, so slow senders cannot reserve the budget with promises. Blob uploads
(``/api/blobs/<digest>``) are exempt: they are streamed to a temp file and hashed, never held
in memory (the disk bounds them, see ``Store.write_blob``).
"""

from __future__ import annotations

import json

from ollamactl.humanize import mib
from ollamactl.runtime.http.asgi import ASGIApp, Message, Receive, Scope, Send
from ollamactl.runtime.scheduling.scheduler import QUEUE_FULL_MESSAGE

MAX_JSON_BODY_BYTES = 32 * 1024 * 1024  # prompts, messages and base64 images fit with room
# Sixteen full-size bodies, or thousands of ordinary chats, at once: more than the runners can
# start on before the first of them is answered, and a bound the host's memory can afford.
MAX_HELD_BODY_BYTES = 512 * 1024 * 1024
STREAMED_PREFIXES = ("/api/blobs/",)


class BodyTooLarge(Exception):
    """Raised into the app when a chunked body passes the limit mid-stream."""


class BodiesFull(Exception):
    """Raised into the app when a body would take the held bytes past their total."""


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodyLimit:
    """ASGI middleware: 413 ``{"error": "request body too large"}`` above ``max_bytes``; 503
    like a full queue when the bodies held until their answers would pass ``max_held``."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_JSON_BODY_BYTES,
                 max_held: int = MAX_HELD_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_held = max_held
        self.held = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope.get("path", "")).startswith(STREAMED_PREFIXES):
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send)
            return
        if declared is not None and self.held + declared > self.max_held:
            await self._busy(send)
            return
        seen = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                size = len(message.get("body", b""))
                if seen + size > self.max_bytes:
                    raise BodyTooLarge
                if self.held + size > self.max_held:
                    raise BodiesFull
                seen += size
                self.held += size
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
        except BodiesFull:
            if not started:
                await self._busy(send)
        finally:
            self.held -= seen

    async def _refuse(self, send: Send) -> None:
        await self._answer(send, 413, f"request body too large (limit {self.max_bytes} bytes)")

    async def _busy(self, send: Send) -> None:
        await self._answer(send, 503, f"{QUEUE_FULL_MESSAGE} (request bodies waiting for an "
                                      f"answer hold {mib(self.max_held)})")

    async def _answer(self, send: Send, status: int, error: str) -> None:
        body = json.dumps({"error": error})
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body.encode()})
