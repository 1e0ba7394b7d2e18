"""The native Ollama routes (``/``, ``/api/*``) with Ollama's fields, statuses and error texts.

Handlers parse and check the body, resolve the model in the store, take a slot from the
scheduler and stream the runner's tokens as NDJSON (or collect them when ``stream`` is false).
Blocking store work runs in the thread pool; the token path stays on the event loop. Work a
request can make large is bounded before it runs and kept off the loop: ``format`` and tool
schemas are checked and compiled to a grammar in a thread (:mod:`grammar`), prompts are
rendered by a template worker process (:mod:`template_worker`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from ollamactl import __version__
from ollamactl.errors import ModelError, OllamactlError
from ollamactl.runtime import gguf
from ollamactl.runtime.app import CLIENT_GONE, ApiError
from ollamactl.runtime.grammar import (
    GrammarError,
    InvalidFormat,
    check_format,
    compile_constraint,
    tools_constraint,
)
from ollamactl.runtime.memory import estimate_model_bytes
from ollamactl.runtime.names import InvalidModelName, ModelName
from ollamactl.runtime.options import InvalidOption, merge_options, validate_options
from ollamactl.runtime.runner import RunnerConfig
from ollamactl.runtime.runner_client import Finished, RunnerFailed, RunnerRefused
from ollamactl.runtime.scheduler import Lease, ModelRef, ModelTooLarge, QueueFull, Scheduler
from ollamactl.runtime.schemas import (
    BadRequest,
    ChatRequest,
    CopyRequest,
    CreateRequest,
    GenerateRequest,
    ModelRequest,
    T,
    created_at,
    local_time,
    parse_body,
    parse_keep_alive,
)
from ollamactl.runtime.store import (
    BlobNotFound,
    DigestMismatch,
    InsufficientSpace,
    InvalidDigest,
    LocalModel,
    ModelNotFound,
    Store,
    validate_digest,
)
from ollamactl.runtime.tools import (
    InvalidTools,
    ToolCall,
    ToolCallParser,
    parse_tool_choice,
    parse_tools,
    prepare_messages,
)

if TYPE_CHECKING:
    from ollamactl.runtime.prompt import Prompt

router = APIRouter()

NDJSON = "application/x-ndjson"
SAMPLING_KEYS = ("num_predict", "temperature", "top_k", "top_p", "min_p", "typical_p",
                 "repeat_penalty", "repeat_last_n", "presence_penalty", "frequency_penalty",
                 "seed", "stop", "num_keep")


def _line(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def _scheduler(request: Request) -> Scheduler:
    scheduler: Scheduler = request.app.state.scheduler
    return scheduler


R = TypeVar("R")


async def _disconnected(request: Request) -> None:
    """Return once the client has closed the connection (call after the body was read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _while_connected(request: Request, work: Awaitable[R]) -> R:
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


async def _body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        raise ApiError(400, "missing request body")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise ApiError(400, f"invalid JSON in request body: {exc}") from None


async def _parse(request: Request, schema: type[T]) -> T:
    """The request's JSON body as ``schema``; any defect is a 400 naming it."""
    try:
        return parse_body(schema, await _body(request))
    except BadRequest as exc:
        raise ApiError(400, str(exc)) from None


def _resolve(store: Store, name: str) -> LocalModel:
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


# -- inference ------------------------------------------------------------------------------------

class Inference:
    """Everything one generate/chat request needs once its body has been checked."""

    def __init__(self, request: Request, request_model: str, model: LocalModel,
                 options: dict[str, Any], keep_alive_s: float | None) -> None:
        self.request = request
        self.request_model = request_model
        self.model = model
        self.options = options
        self.keep_alive_s = keep_alive_s
        self.started_ns = time.perf_counter_ns()
        config = request.app.state.config
        self.runner_config = RunnerConfig(
            model_path=str(model.model_path), num_ctx=int(options["num_ctx"]),
            num_parallel=_scheduler(request).config.num_parallel,
            num_batch=int(options["num_batch"]), num_thread=int(options["num_thread"]),
            num_gpu=int(options["num_gpu"]),
            use_mmap=True if options.get("use_mmap") is None else bool(options["use_mmap"]),
            flash_attention=config.flash_attention)

    def model_ref(self) -> ModelRef:
        info = gguf.read_metadata(self.model.model_path)
        estimate = estimate_model_bytes(info, num_ctx=self.runner_config.num_ctx,
                                        num_parallel=self.runner_config.num_parallel,
                                        num_batch=self.runner_config.num_batch)
        return ModelRef(name=self.model.name.display, digest=self.model.manifest_digest,
                        model_path=self.model.model_path, estimate_bytes=estimate,
                        details=self.model.details.to_dict())

    async def acquire(self) -> Lease:
        try:
            return await _scheduler(self.request).acquire(self.model_ref(), self.runner_config,
                                                          self.keep_alive_s)
        except QueueFull as exc:
            raise ApiError(503, str(exc)) from None
        except ModelTooLarge as exc:
            raise ApiError(500, str(exc)) from None
        except RunnerFailed as exc:
            raise ApiError(500, str(exc)) from None

    def sampling(self) -> dict[str, Any]:
        return {key: self.options[key] for key in SAMPLING_KEYS if key in self.options}

    def metrics(self, lease: Lease, done: Finished) -> dict[str, int]:
        values = {
            "total_duration": time.perf_counter_ns() - self.started_ns,
            "load_duration": lease.load_ns,
            "prompt_eval_count": done.prompt_eval_count,
            "prompt_eval_duration": done.prompt_eval_ns,
            "eval_count": done.eval_count,
            "eval_duration": done.eval_ns,
        }
        return {key: value for key, value in values.items() if value}

    async def load_only(self, *, unload: bool, chat: bool) -> Response:
        """Empty prompt/messages: preload (``load``) or, with keep_alive 0, unload."""
        if unload:
            _scheduler(self.request).expire(self.model.model_path)
        else:
            lease = await self.acquire()
            _scheduler(self.request).release(lease)
        body: dict[str, Any] = {"model": self.request_model, "created_at": created_at()}
        if chat:
            body["message"] = {"role": "assistant", "content": ""}
        else:
            body["response"] = ""
        body.update({"done": True, "done_reason": "unload" if unload else "load"})
        return JSONResponse(body)

    async def run(self, segments: list[tuple[str, bool]], *, stream: bool,
                  chunk: Callable[[str], dict[str, Any] | None],
                  final: Callable[[str, Finished, dict[str, int]], dict[str, Any]],
                  context: list[int] | None = None, want_context: bool = False,
                  grammar: dict[str, Any] | None = None, shift: bool = True,
                  truncate: bool = True) -> Response:
        """Run one sequence and answer with NDJSON chunks or a single object; ``chunk`` may
        hold a piece back (None), ``grammar`` constrains decoding (see :mod:`grammar`)."""
        scheduler = _scheduler(self.request)
        grammar = await _compiled(grammar)
        lease = await _while_connected(self.request, self.acquire())
        events = lease.loaded.process.generate(segments, self.sampling(), context=context,
                                               want_context=want_context, grammar=grammar,
                                               shift=shift, truncate=truncate)
        try:
            first = await _while_connected(self.request, anext(events))
        except RunnerFailed as exc:
            scheduler.release(lease)
            raise ApiError(400 if isinstance(exc, RunnerRefused) else 500, str(exc)) from None
        except BaseException:
            scheduler.release(lease)
            await events.aclose()
            raise

        if not stream:
            async def collect() -> tuple[list[str], Finished]:
                pieces: list[str] = []
                event = first
                while not isinstance(event, Finished):
                    pieces.append(event)
                    event = await anext(events)
                return pieces, event

            try:
                pieces, done = await _while_connected(self.request, collect())
            except RunnerFailed as exc:
                raise ApiError(500, str(exc)) from None
            finally:
                scheduler.release(lease)
                await events.aclose()
            return JSONResponse(final("".join(pieces), done, self.metrics(lease, done)))

        released = False

        def release_once() -> None:
            nonlocal released
            if not released:
                released = True
                scheduler.release(lease)

        async def pump(queue: asyncio.Queue[str | Finished | RunnerFailed]) -> None:
            """Drain the runner whatever the client does: a reader that stalls (its socket
            full) must not keep the slot, so the slot is given back when the sequence ends."""
            event: str | Finished = first
            try:
                while True:
                    queue.put_nowait(event)
                    if isinstance(event, Finished):
                        return
                    event = await anext(events)
            except RunnerFailed as exc:
                queue.put_nowait(exc)
            finally:
                release_once()

        async def body() -> AsyncIterator[bytes]:
            queue: asyncio.Queue[str | Finished | RunnerFailed] = asyncio.Queue()
            task = asyncio.create_task(pump(queue))
            try:
                while True:
                    event = await queue.get()
                    if isinstance(event, RunnerFailed):
                        yield _line({"error": str(event)})
                        return
                    if isinstance(event, Finished):
                        yield _line(final("", event, self.metrics(lease, event)))
                        return
                    if event and (piece := chunk(event)) is not None:
                        yield _line(piece)
            finally:
                with anyio.CancelScope(shield=True):  # a client that hung up cancels the rest
                    task.cancel()                      # ends the sequence in the runner
                    await asyncio.wait({task})
                    await events.aclose()
                release_once()

        return StreamingResponse(body(), media_type=NDJSON)


async def _prepare(request: Request, model_name: str, options: Any, keep_alive: Any,
                   *, chat: bool) -> Inference:
    try:
        keep_alive_s = parse_keep_alive(keep_alive)
    except BadRequest as exc:
        raise ApiError(400, str(exc)) from None
    if not model_name:
        raise ApiError(400, "model is required") if chat else ApiError(404, "model '' not found")
    model = _resolve(_store(request), model_name)
    config = request.app.state.config
    try:
        merged = merge_options(model.params, options, config.context_length,
                               max_num_ctx=model.details.context_length)
    except InvalidOption as exc:
        raise ApiError(400, str(exc)) from None
    return Inference(request, model_name, model, merged, keep_alive_s)


@router.post("/api/generate")
async def generate(request: Request) -> Response:
    req = await _parse(request, GenerateRequest)
    if req.raw and (req.template or req.system or req.context):
        raise ApiError(400, "raw mode does not support template, system, or context")
    grammar = _format_constraint(req.format)
    inference = await _prepare(request, req.model, req.options, req.keep_alive, chat=False)
    _check_context(inference.model, req.context)
    if not req.prompt and not req.suffix:
        return await inference.load_only(unload=inference.keep_alive_s == 0, chat=False)
    from ollamactl.runtime.prompt import render_generate

    prompt = await _rendered(request, lambda: render_generate(
        inference.model, req.prompt, system=req.system, template=req.template, raw=req.raw,
        include_model_messages=not req.context))
    name = req.model

    def chunk(text: str) -> dict[str, Any]:
        return {"model": name, "created_at": created_at(), "response": text, "done": False}

    def final(text: str, done: Finished, metrics: dict[str, int]) -> dict[str, Any]:
        body: dict[str, Any] = {"model": name, "created_at": created_at(), "response": text,
                                "done": True, "done_reason": done.reason}
        if done.context is not None:
            body["context"] = done.context
        body.update(metrics)
        return body

    return await inference.run(list(prompt.segments), stream=req.stream is not False,
                               chunk=chunk, final=final, context=req.context,
                               want_context=not req.raw, grammar=grammar,
                               shift=req.shift is not False,
                               truncate=req.truncate is not False)


@router.post("/api/chat")
async def chat(request: Request) -> Response:
    req = await _parse(request, ChatRequest)
    grammar = _format_constraint(req.format)
    try:
        tools = parse_tools(req.tools)
        choice = parse_tool_choice(req.tool_choice, tools)
    except InvalidTools as exc:
        raise ApiError(400, str(exc)) from None
    inference = await _prepare(request, req.model, req.options, req.keep_alive, chat=True)
    if not req.messages:
        return await inference.load_only(unload=inference.keep_alive_s == 0, chat=True)
    tools = [] if choice.disabled else tools
    if tools and "completion" not in inference.model.capabilities:
        raise ApiError(400, f"{inference.model.name.display} does not support tools")
    from ollamactl.runtime.prompt import render_chat

    # Templates without `tools` get the generic tool prompt; decoding of a started call is
    # then constrained by its schema, so every completion model can call tools.
    native_tools = "tools" in inference.model.capabilities
    messages = [m.model_dump(exclude_none=True) | {"role": m.role.lower()} for m in req.messages]
    try:
        messages = prepare_messages(messages, tools, template_has_tools=native_tools)
    except InvalidTools as exc:
        raise ApiError(400, str(exc)) from None
    prompt = await _rendered(request, lambda: render_chat(
        inference.model, messages,
        tools=[t.to_dict() for t in tools] if tools and native_tools else None))
    if tools and grammar is None:
        grammar = tools_constraint(tools, forced=choice.forced, only=choice.only)
    parser = ToolCallParser(tools) if tools else None
    name = req.model

    def message(content: str, calls: list[ToolCall]) -> dict[str, Any]:
        body: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            body["tool_calls"] = [call.to_native() for call in calls]
        return body

    def chunk(text: str) -> dict[str, Any] | None:
        content, calls = parser.feed(text) if parser else (text, [])
        if not content and not calls:
            return None
        return {"model": name, "created_at": created_at(),
                "message": message(content, calls), "done": False}

    def final(text: str, done: Finished, metrics: dict[str, int]) -> dict[str, Any]:
        content, calls = text, list[ToolCall]()
        if parser is not None:
            content, calls = parser.feed(text)
            tail, more = parser.finish()
            content, calls = content + tail, calls + more
        return {"model": name, "created_at": created_at(), "message": message(content, calls),
                "done_reason": done.reason, "done": True, **metrics}

    return await inference.run(list(prompt.segments), stream=req.stream is not False,
                               chunk=chunk, final=final, grammar=grammar,
                               shift=req.shift is not False,
                               truncate=req.truncate is not False)


def _check_context(model: LocalModel, context: list[int] | None) -> None:
    """Client token ids must exist in the vocabulary: llama.cpp reads out of bounds on -1 or
    ids >= n_vocab (llama.cpp#12178), so they are refused before a runner sees them."""
    if not context:
        return
    tokens = gguf.read_metadata(model.model_path).kv.get("tokenizer.ggml.tokens")
    n_vocab = tokens.length if isinstance(tokens, gguf.SkippedArray) else len(tokens or [])
    if any(token < 0 or token >= n_vocab for token in context):
        raise ApiError(400, "context contains invalid token ids")


def _format_constraint(value: Any) -> dict[str, Any] | None:
    try:
        return check_format(value)
    except (InvalidFormat, GrammarError) as exc:
        raise ApiError(400, str(exc)) from None


async def _compiled(spec: dict[str, Any] | None) -> dict[str, Any] | None:
    """The checked grammar the runner gets for a constraint; built in a thread, as its CPU
    work, though bounded by the schema limits, can take a moment."""
    if spec is None:
        return None
    try:
        return await run_in_threadpool(lambda: compile_constraint(spec).wire())
    except GrammarError as exc:
        raise ApiError(400, f"{'format' if spec['kind'] != 'tools' else 'tools'}: {exc}") \
            from None


def _limiter(request: Request, name: str, size: int) -> anyio.CapacityLimiter:
    """The app's own thread limiter ``name`` (made on first use): work that waits (for a
    template worker, for an upload's bytes) must not hold the pool /api/tags needs."""
    limiter = getattr(request.app.state, name, None)
    if limiter is None:
        limiter = anyio.CapacityLimiter(size)
        setattr(request.app.state, name, limiter)
    return limiter


async def _rendered(request: Request, render: Callable[[], Prompt]) -> Prompt:
    """A prompt from ``render``, run in a thread of its own limiter: a render waits for one of
    the template workers, and waiting requests must not hold the thread pool that /api/tags
    and the store need."""
    from ollamactl.runtime.template_worker import WORKERS

    try:
        return await anyio.to_thread.run_sync(
            render, limiter=_limiter(request, "render_limiter", WORKERS))
    except OllamactlError as exc:
        raise ApiError(400, str(exc)) from None


# -- listing and inspection -----------------------------------------------------------------------

@router.api_route("/", methods=["GET", "HEAD"])
async def root() -> Response:
    return PlainTextResponse("Ollama is running")


# The Ollama release whose API these routes follow (../shared/reference/ollama-compat.md):
# clients gate features (tools, /api/embed, structured outputs) on "version", so it names the
# API level; "ollamactl" says which server this is (doctor's stale-process check, status).
OLLAMA_API_VERSION = "0.33.0"


@router.api_route("/api/version", methods=["GET", "HEAD"])
async def version() -> Response:
    return JSONResponse({"version": OLLAMA_API_VERSION, "ollamactl": __version__})


@router.api_route("/api/tags", methods=["GET", "HEAD"])
async def tags(request: Request) -> Response:
    models = await run_in_threadpool(_store(request).list)
    return JSONResponse({"models": [{
        "name": m.name.display, "model": m.name.display,
        "modified_at": m.modified_at.isoformat(), "size": m.size,
        "digest": m.manifest_digest, "details": m.details.to_dict(),
        "capabilities": m.capabilities,
    } for m in models]})


@router.get("/api/ps")
async def ps(request: Request) -> Response:
    models = []
    for loaded in _scheduler(request).running():
        models.append({
            "name": loaded.ref.name, "model": loaded.ref.name, "size": loaded.size_bytes,
            "digest": loaded.ref.digest, "details": dict(loaded.ref.details),
            "expires_at": local_time(loaded.expires_at), "size_vram": loaded.size_vram_bytes,
            "context_length": loaded.config.num_ctx,
        })
    scheduler = _scheduler(request)
    # An extension Ollama lacks: how many requests wait for a model (fleet status shows it).
    queue = {"pending": scheduler.pending, "max": scheduler.config.max_queue}
    return JSONResponse({"models": models, "queue": queue})


@router.post("/api/show")
async def show(request: Request) -> Response:
    req = await _parse(request, ModelRequest)
    if not req.target:
        raise ApiError(400, "model is required")
    from ollamactl.runtime.modelfile import format_modelfile, format_parameters
    from ollamactl.runtime.store import model_info_of

    model = await run_in_threadpool(_resolve, _store(request), req.target)
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
    return JSONResponse({k: v for k, v in body.items() if v != "" and v != []} |
                        {"model_info": model_info, "details": body["details"]})


# -- management -----------------------------------------------------------------------------------

@router.post("/api/copy")
async def copy(request: Request) -> Response:
    req = await _parse(request, CopyRequest)
    for label, value in (("source", req.source), ("destination", req.destination)):
        try:
            ModelName.parse(value)
        except InvalidModelName:
            raise ApiError(400, f'{label} "{value}" is invalid') from None
    try:
        await run_in_threadpool(_store(request).copy, req.source, req.destination)
    except ModelNotFound:
        raise ApiError(404, f'model "{req.source}" not found') from None
    except ModelError as exc:
        raise ApiError(500, str(exc)) from None
    return Response(status_code=200)


@router.delete("/api/delete")
async def delete(request: Request) -> Response:
    req = await _parse(request, ModelRequest)
    store = _store(request)
    model = await run_in_threadpool(_resolve, store, req.target)
    _scheduler(request).expire(model.model_path)
    try:
        await run_in_threadpool(store.delete, req.target)
    except ModelNotFound:
        raise ApiError(404, f"model '{req.target}' not found") from None
    except ModelError as exc:
        raise ApiError(500, str(exc)) from None
    return Response(status_code=200)


@router.head("/api/blobs/{digest}")
async def head_blob(request: Request, digest: str) -> Response:
    try:
        exists = _store(request).has_blob(digest)
    except InvalidDigest:
        return JSONResponse({"error": "invalid digest format"}, status_code=400)
    return Response(status_code=200 if exists else 404)


BLOB_UPLOADS_AT_ONCE = 4
BLOB_IDLE_TIMEOUT_S = 60.0


class UploadStalled(Exception):
    """A blob upload sent no bytes for BLOB_IDLE_TIMEOUT_S; its temp file is removed."""


@router.post("/api/blobs/{digest}")
async def post_blob(request: Request, digest: str) -> Response:
    store = _store(request)
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
    limiter = _limiter(request, "blob_upload_limiter", BLOB_UPLOADS_AT_ONCE)
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


@router.post("/api/create")
async def create(request: Request) -> Response:
    req = await _parse(request, CreateRequest)
    store = _store(request)
    try:
        ModelName.parse(req.target)
    except InvalidModelName:
        raise ApiError(400, "invalid model name") from None
    if not req.from_ and not req.files:
        raise ApiError(400, "neither 'from' or 'files' was specified")
    model_digest = None
    for filename, digest in (req.files or {}).items():
        if not _file_path_ok(filename):
            raise ApiError(400, "file path must be relative")
        if not digest:
            raise ApiError(400, "invalid digest format")
        try:
            canonical = validate_digest(digest)
        except InvalidDigest:
            raise ApiError(400, "invalid digest format") from None
        if model_digest is None or filename.endswith(".gguf"):
            model_digest = canonical
    try:
        params = validate_options(req.parameters, strict=True)
    except InvalidOption as exc:
        raise ApiError(400, str(exc)) from None
    license_texts = [req.license] if isinstance(req.license, str) else req.license
    statuses: list[dict[str, Any]] = []

    def progress(status: str, completed: int | None, total: int | None) -> None:
        statuses.append({"status": status})

    def work() -> LocalModel:
        return store.create(
            req.target, model_digest=model_digest, from_model=None if req.files else req.from_,
            template=req.template, system=req.system, params=params or None,
            messages=[m.model_dump(exclude_none=True) for m in req.messages]
            if req.messages else None, license=license_texts, progress=progress)

    try:
        await run_in_threadpool(work)
    except (ModelNotFound, BlobNotFound, InvalidModelName) as exc:
        raise ApiError(404 if isinstance(exc, ModelNotFound) else 400, str(exc)) from None
    except gguf.InvalidGGUF as exc:
        raise ApiError(400, f"invalid model file: {exc.reason}") from None
    except ModelError as exc:
        raise ApiError(400, str(exc)) from None
    if req.stream is False:
        return JSONResponse({"status": "success"})
    return StreamingResponse(iter([_line(s) for s in statuses]), media_type=NDJSON)


@router.post("/api/pull")
async def pull(request: Request) -> Response:
    req = await _parse(request, ModelRequest)
    try:
        ModelName.parse(req.target)
    except InvalidModelName:
        raise ApiError(400, "invalid model name") from None
    from ollamactl.runtime import bundled, registry

    store = _store(request)
    loop = asyncio.get_running_loop()
    updates: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    last_sent = [0.0]

    def progress(status: str, completed: int | None, total: int | None) -> None:
        now = time.monotonic()
        final_step = completed is None or completed == total
        if not final_step and now - last_sent[0] < 0.06:
            return
        last_sent[0] = now
        item: dict[str, Any] = {"status": status}
        if total:
            item["total"] = total
        if completed:
            item["completed"] = completed
        loop.call_soon_threadsafe(updates.put_nowait, item)

    def work() -> None:
        try:
            if bundled.is_bundled(req.target):  # installed packages first, then the registry
                bundled.import_bundled(store, req.target, progress=progress)
            else:
                registry.pull(store, req.target, insecure=req.insecure, progress=progress)
        except OllamactlError as exc:
            loop.call_soon_threadsafe(updates.put_nowait, {"error": str(exc)})
        finally:
            loop.call_soon_threadsafe(updates.put_nowait, None)

    task = asyncio.ensure_future(run_in_threadpool(work))

    async def events() -> AsyncIterator[dict[str, Any]]:
        while (item := await updates.get()) is not None:
            yield item
        await task

    if req.stream is False:
        last: dict[str, Any] = {}
        async for item in events():
            last = item
        if "error" in last:
            raise ApiError(500, str(last["error"]))
        return JSONResponse(last)

    async def body() -> AsyncIterator[bytes]:
        async for item in events():
            yield _line(item)

    return StreamingResponse(body(), media_type=NDJSON)
