"""What every handler needs of a request: the app's store and scheduler, the JSON body (parsed
into a schema or as-is), the model a name resolves to, its own thread limiters, and the
:class:`ApiError` that becomes Ollama's ``{"error": "..."}`` answer, and a wait that ends when the
client leaves (:func:`while_connected`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from typing import Any, TypeVar

import anyio
from starlette.requests import Request

from ollamactl.errors import ModelError
from ollamactl.runtime.http.schemas import BadRequest, T, parse_body
from ollamactl.runtime.scheduling.scheduler import Scheduler
from ollamactl.runtime.store import gguf
from ollamactl.runtime.store.manifests import ModelNotFound, Store
from ollamactl.runtime.store.models import LocalModel
from ollamactl.runtime.store.names import InvalidModelName

CLIENT_GONE = 499  # nginx's and Ollama's status for "client closed request" (logged only)
NDJSON = "application/x-ndjson"

R = TypeVar("R")


class ApiError(Exception):
    """An expected failure with the HTTP status and the ``error`` text to send."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def ndjson_line(obj: dict[str, Any]) -> bytes:
    """One NDJSON line of a streamed answer."""
    return (json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


def store_of(request: Request) -> Store:
    """The app's model store."""
    store: Store = request.app.state.store
    return store


def scheduler_of(request: Request) -> Scheduler:
    """The app's scheduler."""
    scheduler: Scheduler = request.app.state.scheduler
    return scheduler


async def read_json(request: Request) -> Any:
    """The request's body as JSON (any value); an empty or invalid body is a 400."""
    raw = await request.body()
    if not raw.strip():
        raise ApiError(400, "missing request body")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise ApiError(400, f"invalid JSON in request body: {exc}") from None


async def parse_request(request: Request, schema: type[T]) -> T:
    """The request's JSON body as ``schema``; any defect is a 400 naming it."""
    try:
        return parse_body(schema, await read_json(request))
    except BadRequest as exc:
        raise ApiError(400, str(exc)) from None


def resolve_model(store: Store, name: str) -> LocalModel:
    """The local model ``name`` names; a bad name is a 400, a missing model a 404."""
    try:
        return store.resolve(name)
    except InvalidModelName:
        raise ApiError(400, "invalid model name") from None
    except ModelNotFound:
        raise ApiError(404, f"model '{name}' not found") from None
    except gguf.InvalidGGUF as exc:  # the reason only: the blob path would reveal the store
        raise ApiError(500, f"model '{name}' is damaged: {exc.reason}") from None
    except ModelError as exc:
        raise ApiError(500, str(exc)) from None


def thread_limiter(request: Request, name: str, size: int) -> anyio.CapacityLimiter:
    """The app's own thread limiter ``name`` (made on first use): work that waits (for a
    template worker, for an upload's bytes) must not hold the pool /api/tags needs."""
    limiter = getattr(request.app.state, name, None)
    if limiter is None:
        limiter = anyio.CapacityLimiter(size)
        setattr(request.app.state, name, limiter)
    return limiter


async def _disconnected(request: Request) -> None:
    """Return once the client has closed the connection (call after the body was read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def while_connected(request: Request, work: Awaitable[R]) -> R:
    """``work``'s result, unless the client leaves first: then ``work`` is cancelled (its own
    cleanup gives back what it held) and the request ends with 499. A client that gave up
    while queued must not take a slot and run a generation nobody reads."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait({task})
    if task.cancelled():
        raise ApiError(CLIENT_GONE, "client closed the connection")
    return task.result()
