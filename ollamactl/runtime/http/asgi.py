"""ASGI's types, for the middleware written against raw ASGI (request log, metrics, limits,
guards), and :func:`watch_response`, which the request log and the metrics share.

A leaf module: it imports nothing of the runtime, so every middleware can use it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def watch_response(app: ASGIApp, scope: Scope, receive: Receive, send: Send,
                         on_end: Callable[[int], None], *, gone_status: int,
                         fallback_status: int | None = None,
                         headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    """Run ``app`` for one HTTP request and call ``on_end(status)`` once: when the last part of
    the response has been sent; with ``gone_status`` when the client left before that; with the
    status so far (or ``fallback_status``) when the app ended without a whole response, unless
    ``fallback_status`` is None. ``headers`` are added to the response's start."""
    status = 0
    ended = gone = False

    def end(code: int) -> None:
        nonlocal ended
        ended = True
        on_end(code)

    async def receive_watched() -> Message:
        nonlocal gone
        message = await receive()
        gone = gone or message["type"] == "http.disconnect"
        return message

    async def send_watched(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
            message.setdefault("headers", []).extend(headers)
        await send(message)
        if message["type"] == "http.response.body" and not message.get("more_body") \
                and not ended:
            end(status)

    try:
        await app(scope, receive_watched, send_watched)
    finally:
        if not ended and gone:
            end(gone_status)
        elif not ended and fallback_status is not None:
            end(status or fallback_status)
