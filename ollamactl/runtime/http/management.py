"""Ollama's other routes: ``/`` and ``/api/version``, listing and inspection (``/api/tags``,
``/api/ps``, ``/api/show``) and managing the store (``/api/copy``, ``/api/delete``,
``/api/blobs/<digest>``, ``/api/create``, ``/api/pull``, ``/api/push``), with Ollama's fields,
statuses and error texts. Blocking store work runs in the thread pool; create, pull and push
stream their progress as the work goes (:func:`stream_work`): bad input is refused with a 4xx
before the stream starts, a failure after that is the stream's last line, ``{"error": ...}``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import PurePosixPath
from typing import Any

import anyio
import anyio.to_thread
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from ollamactl import __version__
from ollamactl.errors import ModelError, OllamactlError
from ollamactl.runtime.http.binding import UnmarshalError, bind
from ollamactl.runtime.http.requests import (
    NDJSON,
    ApiError,
    ndjson_line,
    parse_request,
    resolve_model,
    scheduler_of,
    store_of,
    thread_limiter,
    while_connected,
)
from ollamactl.runtime.http.schemas import CopyRequest, CreateRequest, ModelRequest, local_time
from ollamactl.runtime.store import gguf
from ollamactl.runtime.store.blobs import (
    BlobNotFound,
    DigestMismatch,
    InsufficientSpace,
    InvalidDigest,
    LayerProgress,
    validate_digest,
)
from ollamactl.runtime.store.create import CreatePlan, prepare_create, write_model
from ollamactl.runtime.store.manifests import ModelNotFound
from ollamactl.runtime.store.models import LocalModel, model_info_of
from ollamactl.runtime.store.names import InvalidModelName, ModelName
from ollamactl.runtime.store.options import InvalidOption, validate_options
from ollamactl.runtime.store.projector import projector_digests, projector_path

# a stable source= for log readers, whatever the module's path (see ollamactl.runtime)
log = logging.getLogger("ollamactl.runtime.management")

# Byte counts of one step go out at most this often; a step's first and last always do.
PROGRESS_INTERVAL_S = 0.06

# -- listing and inspection -----------------------------------------------------------------------


async def root(request: Request) -> Response:
    return PlainTextResponse("Ollama is running")


# The Ollama release whose API these routes follow (../shared/reference/ollama-compat.md):
# clients gate features (tools, /api/embed, structured outputs) on "version", so it names the
# API level; "ollamactl" says which server this is (doctor's stale-process check, status).
OLLAMA_API_VERSION = "0.33.0"


async def version(request: Request) -> Response:
    return JSONResponse({"version": OLLAMA_API_VERSION, "ollamactl": __version__})


async def tags(request: Request) -> Response:
    models = await run_in_threadpool(store_of(request).list)
    return JSONResponse({"models": [{
        "name": m.name.display, "model": m.name.display,
        "modified_at": m.modified_at.isoformat(), "size": m.size,
        "digest": m.manifest_digest, "details": m.details.to_dict(),
        "capabilities": m.capabilities,
    } for m in models]})


async def ps(request: Request) -> Response:
    models = []
    for loaded in scheduler_of(request).running():
        models.append({
            "name": loaded.ref.name, "model": loaded.ref.name, "size": loaded.size_bytes,
            "digest": loaded.ref.digest, "details": dict(loaded.ref.details),
            "expires_at": local_time(loaded.expires_at), "size_vram": loaded.size_vram_bytes,
            "context_length": loaded.config.num_ctx,
            # An extension Ollama lacks: where the layers went and, when a GPU was meant to
            # be used and was not, why (doctor reads it).
            "ollamactl": {"layers": loaded.ready.layers, "gpu_layers": loaded.ready.gpu_layers,
                          "gpu_devices": list(loaded.config.gpu_devices)
                          if loaded.ready.gpu_layers else [],
                          "gpu_error": loaded.gpu_error},
        })
    scheduler = scheduler_of(request)
    # An extension Ollama lacks: how many requests wait for a model (fleet status shows it).
    queue = {"pending": scheduler.pending, "max": scheduler.config.max_queue}
    return JSONResponse({"models": models, "queue": queue})


async def show(request: Request) -> Response:
    req = await parse_request(request, ModelRequest)
    if not req.target:
        raise ApiError(400, "model is required")
    from ollamactl.runtime.store.modelfile import format_modelfile, format_parameters

    model = await run_in_threadpool(resolve_model, store_of(request), req.target)
    if req.system or req.options:    # Ollama's GetModelInfo: the request's over the model's
        try:
            options = validate_options(req.options, strict=False)
        except InvalidOption as exc:
            raise ApiError(400, str(exc)) from None
        model = dataclasses.replace(model, system=req.system or model.system,
                                    params={**model.params, **options})
    model_info = model.model_info
    if req.verbose:
        model_info = model_info_of(gguf.read_metadata(model.model_path, keep_arrays=True),
                                   verbose=True)
    body: dict[str, Any] = {
        "license": "\n".join(model.license),
        "modelfile": format_modelfile(model),
        "parameters": format_parameters(model.params),
        "template": model.template or model.chat_template or "",
        "system": model.system or "",
        "details": model.details.to_dict(),
        "messages": model.messages,
        "model_info": model_info,
        "capabilities": model.capabilities,
        "modified_at": model.modified_at.isoformat(),
    }
    if req.verbose:
        body["tensors"] = model.tensors
    if projector := projector_path(store_of(request), model):   # Ollama's projector_info
        body["projector_info"] = model_info_of(
            gguf.read_metadata(projector, keep_arrays=req.verbose), verbose=req.verbose)
    return JSONResponse({k: v for k, v in body.items() if v != "" and v != []} |
                        {"model_info": model_info, "details": body["details"]})


# -- management -----------------------------------------------------------------------------------


async def copy(request: Request) -> Response:
    req = await parse_request(request, CopyRequest)
    for label, value in (("source", req.source), ("destination", req.destination)):
        try:
            ModelName.parse(value)
        except InvalidModelName:
            raise ApiError(400, f'{label} "{value}" is invalid') from None
    try:
        await run_in_threadpool(store_of(request).copy, req.source, req.destination)
    except ModelNotFound:
        raise ApiError(404, f'model "{req.source}" not found') from None
    except ModelError as exc:
        raise ApiError(500, str(exc)) from None
    return Response(status_code=200)


async def delete(request: Request) -> Response:
    """Remove a model, then unload only what was the deleted model's: the runner loaded under
    its name, and the runner of its weights when no other model kept them. A runner that
    another name loaded from weights both names share goes on serving."""
    req = await parse_request(request, ModelRequest)
    store = store_of(request)
    try:
        model: LocalModel | None = await run_in_threadpool(resolve_model, store, req.target)
    except ApiError as exc:
        if exc.status != 500:
            raise
        model = None    # damaged (its weights gone, say): it can be deleted all the same
    try:
        await run_in_threadpool(store.delete, req.target)
    except ModelNotFound:
        raise ApiError(404, f"model '{req.target}' not found") from None
    except ModelError as exc:
        raise ApiError(500, str(exc)) from None
    name = model.name.display if model else ModelName.parse(req.target).display
    weights = model.model_path if model and not model.model_path.exists() else None
    scheduler = scheduler_of(request)
    for loaded in scheduler.running():
        if loaded.ref.name == name or loaded.ref.model_path == weights:
            scheduler.expire(loaded.ref.model_path)
    return Response(status_code=200)


async def head_blob(request: Request) -> Response:
    digest = request.path_params["digest"]
    try:
        exists = store_of(request).has_blob(digest)
    except InvalidDigest:
        return JSONResponse({"error": "invalid digest format"}, status_code=400)
    return Response(status_code=200 if exists else 404)


BLOB_UPLOADS_AT_ONCE = 4
BLOB_IDLE_TIMEOUT_S = 60.0


class UploadStalled(Exception):
    """A blob upload sent no bytes for BLOB_IDLE_TIMEOUT_S; its temp file is removed."""


async def post_blob(request: Request) -> Response:
    digest = request.path_params["digest"]
    store = store_of(request)
    try:
        expected = validate_digest(digest)
    except InvalidDigest:
        raise ApiError(400, "invalid digest format") from None
    if store.has_blob(expected):
        return Response(status_code=200)
    try:
        declared = int(request.headers.get("content-length", ""))
    except ValueError:
        declared = None  # chunked: free space is checked as the bytes arrive
    loop = asyncio.get_running_loop()
    chunks = request.stream().__aiter__()

    async def next_chunk() -> bytes | None:
        try:
            return await anext(chunks)
        except StopAsyncIteration:
            return None

    def pull_chunks() -> Iterator[bytes]:
        while True:
            future = asyncio.run_coroutine_threadsafe(next_chunk(), loop)
            try:
                chunk = future.result(timeout=BLOB_IDLE_TIMEOUT_S)
            except TimeoutError:
                future.cancel()
                raise UploadStalled from None
            if chunk is None:
                return
            yield chunk

    # Each upload holds a worker thread while it waits for the network: a limiter of its own
    # keeps stalled uploads from taking every thread that /api/tags or /api/show need.
    limiter = thread_limiter(request, "blob_upload_limiter", BLOB_UPLOADS_AT_ONCE)
    try:
        await anyio.to_thread.run_sync(
            lambda: store.write_blob(pull_chunks(), expected, total=declared), limiter=limiter)
    except UploadStalled:
        raise ApiError(408, f"upload sent nothing for {BLOB_IDLE_TIMEOUT_S:.0f} s") from None
    except ClientDisconnect:  # the temp file is gone already; nobody is left to answer
        return Response(status_code=400)
    except DigestMismatch as exc:
        raise ApiError(400, str(exc)) from None
    except InsufficientSpace as exc:  # refused before reading when the size was declared
        raise ApiError(507, str(exc)) from None
    except ModelError as exc:
        raise ApiError(500, str(exc)) from None
    return Response(status_code=201)


def _file_path_ok(name: str) -> bool:
    path = PurePosixPath(name)
    return bool(name) and not path.is_absolute() and "\\" not in name and \
        all(part not in (".", "..") for part in path.parts)


class WorkCancelled(Exception):
    """The client of a create, pull or push left: raised from the work's next progress call."""


async def stream_work(request: Request, work: Callable[[LayerProgress], object],
                      stream: bool | None) -> Response:
    """Run ``work(progress)`` in the thread pool and answer with its progress as it happens:
    NDJSON frames (``status``, and ``digest``, ``total``, ``completed`` for byte counts), a
    failure as a last ``{"error": ...}`` line; with ``stream: false``, the last frame alone
    (a failure is a 500 then). A client that leaves stops the work at its next progress call,
    as Ollama's request context does (a pull keeps its partial blob, to resume)."""
    loop = asyncio.get_running_loop()
    updates: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    last_sent: dict[str, float] = {}
    cancelled = threading.Event()

    def progress(status: str, completed: int | None, total: int | None, *,
                 digest: str | None = None) -> None:
        if cancelled.is_set():
            raise WorkCancelled
        now = time.monotonic()
        step_ends = completed is None or completed == total
        if not step_ends and status in last_sent and \
                now - last_sent[status] < PROGRESS_INTERVAL_S:
            return
        last_sent[status] = now
        item: dict[str, Any] = {"status": status}
        if digest:
            item["digest"] = digest
        if total:
            item["total"] = total
        if completed:
            item["completed"] = completed
        loop.call_soon_threadsafe(updates.put_nowait, item)

    def run() -> None:
        try:
            work(progress)
        except WorkCancelled:
            log.info("%s %s stopped: the client left", request.method, request.url.path)
        except OllamactlError as exc:
            loop.call_soon_threadsafe(updates.put_nowait, {"error": str(exc)})
        except Exception:   # Ollama's recoverCreatePanic: the stream still ends with a reason
            log.exception("model management work failed")
            loop.call_soon_threadsafe(updates.put_nowait, {"error": "internal server error"})
        finally:
            loop.call_soon_threadsafe(updates.put_nowait, None)

    task = asyncio.ensure_future(run_in_threadpool(run))

    async def events() -> AsyncIterator[dict[str, Any]]:
        while (item := await updates.get()) is not None:
            yield item
        await task

    if stream is False:
        async def last_frame() -> dict[str, Any]:
            last: dict[str, Any] = {}
            async for item in events():
                last = item
            return last

        try:
            last = await while_connected(request, last_frame())
        finally:
            cancelled.set()      # a no-op once the work is done
        if "error" in last:
            raise ApiError(500, str(last["error"]))
        return JSONResponse(last)

    async def body() -> AsyncIterator[bytes]:
        try:
            async for item in events():
                yield ndjson_line(item)
        finally:             # the stream ended, or Starlette cancelled it: the client left
            cancelled.set()

    return StreamingResponse(body(), media_type=NDJSON)


def _checked_files(files: dict[str, str] | None) -> dict[str, str]:
    """A ``files``/``adapters`` map of relative file names to canonical digests.

    Raises:
        ApiError: 400 with Ollama's text for a bad path or digest.
    """
    checked: dict[str, str] = {}
    for filename, digest in (files or {}).items():
        if not _file_path_ok(filename):
            raise ApiError(400, "file path must be relative")
        try:
            checked[filename] = validate_digest(digest)
        except InvalidDigest:
            raise ApiError(400, "invalid digest format") from None
    return checked


def _licenses(license: Any) -> list[str] | None:
    """A create's ``license``: one text, or a list Ollama unmarshals again as ``[]string``."""
    if license is None or isinstance(license, str):
        return [license] if license else None
    try:
        return bind(list[str], license)
    except UnmarshalError as exc:
        raise ApiError(400, str(exc)) from None


async def create(request: Request) -> Response:
    """Ollama's CreateHandler: checks (a 4xx) before the stream, the work streamed live."""
    req = await parse_request(request, CreateRequest)
    store = store_of(request)
    try:
        ModelName.parse(req.target)
    except InvalidModelName:
        raise ApiError(400, "invalid model name") from None
    if not req.from_ and not req.files:
        raise ApiError(400, "neither 'from' or 'files' was specified")
    files = _checked_files(req.files)
    adapters = list(_checked_files(req.adapters).values())
    try:
        params = validate_options(req.parameters, strict=True)
    except InvalidOption as exc:
        raise ApiError(400, str(exc)) from None
    license_texts = _licenses(req.license)

    def prepare() -> CreatePlan:
        # as Ollama's create, each GGUF is a model or a projector by its header
        projectors = projector_digests(store, files.values())
        model_digest = None
        for filename, digest in files.items():
            if digest not in projectors and (model_digest is None
                                             or filename.endswith(".gguf")):
                model_digest = digest
        return prepare_create(store, req.target, model_digest=model_digest,
                              from_model=None if req.files else req.from_,
                              quantize_to=req.quantize, adapters=adapters,
                              projectors=projectors)

    try:
        plan = await run_in_threadpool(prepare)
    except (ModelNotFound, BlobNotFound, InvalidModelName) as exc:
        raise ApiError(404 if isinstance(exc, ModelNotFound) else 400, str(exc)) from None
    except gguf.InvalidGGUF as exc:
        raise ApiError(400, f"invalid model file: {exc.reason}") from None
    except ModelError as exc:
        raise ApiError(400, str(exc)) from None

    def work(progress: LayerProgress) -> LocalModel:
        return write_model(
            store, plan, template=req.template, system=req.system, params=params or None,
            messages=[m.as_dict() for m in req.messages]
            if req.messages else None, license=license_texts, progress=progress)

    return await stream_work(request, work, req.stream)


def _model_name(req: ModelRequest) -> str:
    """The request's model name, checked (400 with Ollama's texts)."""
    if not req.target:
        raise ApiError(400, "model is required")
    try:
        ModelName.parse(req.target)
    except InvalidModelName:
        raise ApiError(400, "invalid model name") from None
    return req.target


async def pull(request: Request) -> Response:
    req = await parse_request(request, ModelRequest)
    name = _model_name(req)
    from ollamactl.runtime.store import bundled, registry

    store = store_of(request)

    def work(progress: LayerProgress) -> None:
        if bundled.is_bundled(name):  # installed packages first, then the registry
            bundled.import_bundled(store, name, progress=progress)
        else:
            registry.pull(store, name, insecure=req.insecure, progress=progress)

    return await stream_work(request, work, req.stream)


async def push(request: Request) -> Response:
    """Ollama's PushHandler; a model that is not here is a 404 before anything is sent."""
    req = await parse_request(request, ModelRequest)
    name = _model_name(req)
    from ollamactl.runtime.store import push as pushing

    store = store_of(request)
    if not await run_in_threadpool(store.exists, name):
        raise ApiError(404, f"model '{name}' not found")

    def work(progress: LayerProgress) -> None:
        pushing.push(store, name, insecure=req.insecure, progress=progress)

    return await stream_work(request, work, req.stream)
