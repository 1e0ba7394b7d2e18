"""Ollama's inference routes, ``/api/generate`` and ``/api/chat``, with Ollama's fields, statuses
and error texts; :class:`Inference` (one sequence on a runner) also serves the embeddings.

Handlers parse and check the body, resolve the model in the store, check that it has the
capabilities the request needs (Ollama's 400s: tools, insert, vision, thinking), take a slot
from the scheduler and stream the runner's tokens as NDJSON (or collect them when ``stream`` is
false), split into ``thinking``, content and tool calls (:mod:`~ollamactl.runtime.prompting.reply`).
The token path stays on the event loop. Work a request can make large is bounded before it
runs and kept off the loop: ``format`` and tool schemas are checked and compiled to a grammar
in a thread (:mod:`~ollamactl.runtime.prompting.grammar`), prompts are rendered by a template
worker process (:mod:`~ollamactl.runtime.prompting.template_worker`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import anyio.to_thread
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from ollamactl.errors import OllamactlError
from ollamactl.runtime.http.images import BadImage, check_base64, tag_content, tag_messages
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
from ollamactl.runtime.http.schemas import (
    BadRequest,
    ChatRequest,
    GenerateRequest,
    Logprobs,
    ThinkValue,
    created_at,
    parse_keep_alive,
    parse_logprobs,
    parse_think,
)
from ollamactl.runtime.prompting.capabilities import template_features
from ollamactl.runtime.prompting.grammar import (
    GrammarError,
    InvalidFormat,
    check_format,
    compile_constraint,
    tools_constraint,
)
from ollamactl.runtime.prompting.reply import Piece, ReplySplitter
from ollamactl.runtime.prompting.thinking import ThinkingParser
from ollamactl.runtime.prompting.tools import (
    InvalidTools,
    ToolCallParser,
    parse_tool_choice,
    parse_tools,
    prepare_messages,
)
from ollamactl.runtime.runner.config import RunnerConfig
from ollamactl.runtime.scheduling.memory import estimate_model_bytes
from ollamactl.runtime.scheduling.runner_client import (
    Finished,
    RunnerFailed,
    RunnerRefused,
    Token,
)
from ollamactl.runtime.scheduling.scheduler import Lease, ModelRef, ModelTooLarge, QueueFull
from ollamactl.runtime.store import gguf
from ollamactl.runtime.store.models import LocalModel
from ollamactl.runtime.store.options import InvalidOption, merge_options
from ollamactl.runtime.store.projector import projector_path

if TYPE_CHECKING:
    from ollamactl.runtime.http.metrics import ServerMetrics
    from ollamactl.runtime.prompting.render import Prompt

SAMPLING_KEYS = ("num_predict", "temperature", "top_k", "top_p", "min_p", "typical_p",
                 "repeat_penalty", "repeat_last_n", "presence_penalty", "frequency_penalty",
                 "seed", "stop", "num_keep")


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
            num_parallel=scheduler_of(request).config.num_parallel,
            num_batch=int(options["num_batch"]), num_thread=int(options["num_thread"]),
            num_gpu=int(options["num_gpu"]),
            use_mmap=True if options.get("use_mmap") is None else bool(options["use_mmap"]),
            flash_attention=config.flash_attention,
            projector=projector_path(store_of(request), model),
            adapters=tuple(str(store_of(request).blob_path(digest))
                           for digest in model.adapter_digests))
        self._acquiring: asyncio.Future[Lease] | None = None
        # the app's metrics when served: asked once here, not at every token
        self.server_metrics: ServerMetrics | None = getattr(request.app.state, "metrics", None)
        self.streamed = 0      # generated tokens counted as they came (see token_generated)

    def model_ref(self) -> ModelRef:
        info = gguf.read_metadata(self.model.model_path)
        estimate = estimate_model_bytes(info, num_ctx=self.runner_config.num_ctx,
                                        num_parallel=self.runner_config.num_parallel,
                                        num_batch=self.runner_config.num_batch)
        return ModelRef(name=self.model.name.display, digest=self.model.manifest_digest,
                        model_path=self.model.model_path, estimate_bytes=estimate,
                        details=self.model.details.to_dict(), info=info)

    async def acquire(self) -> Lease:
        try:
            return await scheduler_of(self.request).acquire(self.model_ref(), self.runner_config,
                                                            self.keep_alive_s)
        except QueueFull as exc:
            raise ApiError(503, str(exc)) from None
        except ModelTooLarge as exc:
            raise ApiError(500, str(exc)) from None
        except RunnerFailed as exc:
            raise ApiError(500, str(exc)) from None

    async def rendered(self, render: Callable[[], Prompt]) -> Prompt:
        """The prompt ``render`` makes, rendered while the slot is taken and the model loads
        (Ollama too loads before it renders): the slot is kept for :meth:`run`; a render
        that fails gives it back."""
        try:
            await self._start_acquiring()
            return await _rendered(self.request, render)
        except BaseException:
            await self._abandon()
            raise

    async def _start_acquiring(self) -> asyncio.Future[Lease]:
        """Start taking the slot, once, and let it run to its first wait (a runner spawned,
        when the model is not loaded). anyio loads its asyncio backend meanwhile (~12 ms of
        imports the first time, which Starlette's streamed answer needs): while the model
        loads, not after its first token."""
        if self._acquiring is None:
            self._acquiring = asyncio.ensure_future(self.acquire())
            await asyncio.sleep(0)
        await anyio.lowlevel.checkpoint()
        return self._acquiring

    async def _abandon(self) -> None:
        """Give back the slot :meth:`rendered` started taking (cancelled if still waiting)."""
        acquiring, self._acquiring = self._acquiring, None
        if acquiring is None:
            return
        if not acquiring.done():
            acquiring.cancel()
            await asyncio.wait({acquiring})
        if not acquiring.cancelled() and acquiring.exception() is None:
            scheduler_of(self.request).release(acquiring.result())

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

    def token_generated(self) -> None:
        """Count one generated token as it comes from the runner (when metrics are served)."""
        self.streamed += 1
        if self.server_metrics is not None:
            self.server_metrics.token_generated(self.model.name.display)

    def count(self, done: Finished, first_token_ns: int | None) -> None:
        """Report a finished sequence to the app's metrics (when served): once per request."""
        if (metrics := self.server_metrics) is not None:
            metrics.sequence_done(self.model.name.display, prompt_tokens=done.prompt_eval_count,
                                  generated_tokens=done.eval_count, started_ns=self.started_ns,
                                  first_token_ns=first_token_ns,
                                  ended_ns=time.perf_counter_ns(), streamed=self.streamed)

    async def load_only(self, *, unload: bool, chat: bool) -> Response:
        """Empty prompt/messages: preload (``load``) or, with keep_alive 0, unload."""
        if unload:
            scheduler_of(self.request).expire(self.model.model_path)
        else:
            lease = await self.acquire()
            scheduler_of(self.request).release(lease)
        body: dict[str, Any] = {"model": self.request_model, "created_at": created_at()}
        if chat:
            body["message"] = {"role": "assistant", "content": ""}
        else:
            body["response"] = ""
        body.update({"done": True, "done_reason": "unload" if unload else "load"})
        return JSONResponse(body)

    async def run(self, segments: list[tuple[str, bool]], *, stream: bool,
                  chunk: Callable[[str, list[dict[str, Any]]], dict[str, Any] | None],
                  final: Callable[[str, Finished, dict[str, int], list[dict[str, Any]]],
                                  dict[str, Any]],
                  context: list[int] | None = None, want_context: bool = False,
                  grammar: dict[str, Any] | None = None, shift: bool = True,
                  truncate: bool = True, logprobs: Logprobs | None = None,
                  images: list[str] | None = None) -> Response:
        """Run one sequence and answer with NDJSON chunks or a single object. ``chunk`` gets
        a token's text and logprobs and may hold a piece back (None: it must not when given
        logprobs, which Ollama streams as they come); ``final`` gets the rest of the text and,
        unstreamed, every logprob. ``grammar`` constrains decoding (see
        :mod:`~ollamactl.runtime.prompting.grammar`); ``images`` (base64) are those the
        prompt's ``[img-N]`` tags name."""
        scheduler = scheduler_of(self.request)
        try:
            grammar = await _compiled(grammar)
            acquiring = await self._start_acquiring()
        except BaseException:
            await self._abandon()
            raise
        self._acquiring = None
        lease = await while_connected(self.request, acquiring)
        events = lease.loaded.process.generate(
            segments, self.sampling(), context=context, want_context=want_context,
            grammar=grammar, shift=shift, truncate=truncate,
            logprobs=logprobs is not None, top_logprobs=logprobs.top if logprobs else 0,
            images=images)
        try:
            first = await while_connected(self.request, anext(events))
            first_ns = None if isinstance(first, Finished) else time.perf_counter_ns()
        except RunnerFailed as exc:
            scheduler.release(lease)
            raise ApiError(400 if isinstance(exc, RunnerRefused) else 500, str(exc)) from None
        except BaseException:
            scheduler.release(lease)
            await events.aclose()
            raise

        if not stream:
            async def collect() -> tuple[list[Token], Finished]:
                tokens: list[Token] = []
                event = first
                while not isinstance(event, Finished):
                    tokens.append(event)
                    self.token_generated()
                    event = await anext(events)
                return tokens, event

            try:
                tokens, done = await while_connected(self.request, collect())
            except RunnerFailed as exc:
                raise ApiError(500, str(exc)) from None
            finally:
                scheduler.release(lease)
                await events.aclose()
            self.count(done, first_ns)
            return JSONResponse(final("".join(t.text for t in tokens), done,
                                      self.metrics(lease, done), _logprobs_of(tokens)))

        released = False

        def release_once() -> None:
            nonlocal released
            if not released:
                released = True
                scheduler.release(lease)

        async def pump(queue: asyncio.Queue[Token | Finished | RunnerFailed]) -> None:
            """Drain the runner whatever the client does: a reader that stalls (its socket
            full) must not keep the slot, so the slot is given back when the sequence ends."""
            event: Token | Finished = first
            try:
                while True:
                    queue.put_nowait(event)
                    if isinstance(event, Finished):
                        self.count(event, first_ns)
                        return
                    self.token_generated()
                    event = await anext(events)
            except RunnerFailed as exc:
                queue.put_nowait(exc)
            finally:
                release_once()

        async def body() -> AsyncIterator[bytes]:
            queue: asyncio.Queue[Token | Finished | RunnerFailed] = asyncio.Queue()
            task = asyncio.create_task(pump(queue))
            try:
                while True:
                    event = await queue.get()
                    if isinstance(event, RunnerFailed):
                        yield ndjson_line({"error": str(event)})
                        return
                    if isinstance(event, Finished):
                        yield ndjson_line(final("", event, self.metrics(lease, event), []))
                        return
                    if (event.text or event.logprobs) and \
                            (piece := chunk(event.text, list(event.logprobs))) is not None:
                        yield ndjson_line(piece)
            finally:
                with anyio.CancelScope(shield=True):  # a client that hung up cancels the rest
                    task.cancel()                      # ends the sequence in the runner
                    await asyncio.wait({task})
                    await events.aclose()
                release_once()

        return StreamingResponse(body(), media_type=NDJSON)


async def prepare(request: Request, model_name: str, options: Any, keep_alive: Any,
                  *, chat: bool) -> Inference:
    """The :class:`Inference` for a request naming ``model_name``: keep_alive and options
    checked, the model resolved (a 400 or 404 otherwise)."""
    try:
        keep_alive_s = parse_keep_alive(keep_alive)
    except BadRequest as exc:
        raise ApiError(400, str(exc)) from None
    if not model_name:
        raise ApiError(400, "model is required") if chat else ApiError(404, "model '' not found")
    model = resolve_model(store_of(request), model_name)
    default_ctx = request.app.state.config.context_length or \
        await scheduler_of(request).default_num_ctx()
    try:
        merged = merge_options(model.params, options, default_ctx,
                               max_num_ctx=model.details.context_length)
    except InvalidOption as exc:
        raise ApiError(400, str(exc)) from None
    return Inference(request, model_name, model, merged, keep_alive_s)


def _warm_renderer() -> None:
    """A template worker starting beside this request's model lookup (the first time only)."""
    from ollamactl.runtime.prompting import template_worker

    template_worker.warm()


async def generate(request: Request) -> Response:
    req = await parse_request(request, GenerateRequest)
    if not req.raw:
        _warm_renderer()
    _check_images(req.images or ())
    logprobs = _parsed_logprobs(req.logprobs, req.top_logprobs)
    think = _parsed_think(req.think)
    if req.raw and (req.template or req.system or req.context):
        raise ApiError(400, "raw mode does not support template, system, or context")
    grammar = _format_constraint(req.format)
    inference = await prepare(request, req.model, req.options, req.keep_alive, chat=False)
    _check_context(inference.model, req.context)
    if not req.prompt and not req.suffix and inference.keep_alive_s == 0:
        return await inference.load_only(unload=True, chat=False)
    think = _settled_think(inference.model, req.model, think)
    _check_capabilities(inference.model, req.model, "generate",
                        ["insert"] * bool(req.suffix) + ["vision"] * bool(req.images))
    if not req.prompt and not req.suffix:
        return await inference.load_only(unload=False, chat=False)
    from ollamactl.runtime.prompting.prompt import render_generate

    text = req.prompt if req.raw or not req.images else \
        tag_content(req.prompt, 0, len(req.images))

    def render() -> Prompt:
        return render_generate(
            inference.model, text, system=req.system, template=req.template, raw=req.raw,
            include_model_messages=not req.context, think=think.template_values(),
            suffix=req.suffix)

    # a raw prompt is taken as written: no template, so neither a worker nor a thread
    prompt = render() if req.raw else await inference.rendered(render)
    reply = ReplySplitter(_thinking_parser(inference.model, think, prompt), None)
    name = req.model

    def body(piece: Piece, *, done: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"model": name, "created_at": created_at(),
                               "response": piece.content}
        if piece.thinking:
            out["thinking"] = piece.thinking
        out["done"] = done
        return out

    def chunk(text: str, token_logprobs: list[dict[str, Any]]) -> dict[str, Any] | None:
        piece = reply.feed(text)
        if not (piece or token_logprobs):
            return None
        return _with_logprobs(body(piece, done=False), token_logprobs)

    def final(text: str, done: Finished, metrics: dict[str, int],
              token_logprobs: list[dict[str, Any]]) -> dict[str, Any]:
        piece, rest = reply.feed(text), reply.finish()
        out = body(Piece(piece.thinking + rest.thinking, piece.content + rest.content),
                   done=True)
        out["done_reason"] = done.reason
        if done.context is not None:
            out["context"] = done.context
        out.update(metrics)
        return _with_logprobs(out, token_logprobs)

    return await inference.run(list(prompt.segments), stream=req.stream is not False,
                               chunk=chunk, final=final, context=req.context,
                               want_context=not req.raw, grammar=grammar,
                               shift=req.shift is not False,
                               truncate=req.truncate is not False, logprobs=logprobs,
                               images=req.images)


async def chat(request: Request) -> Response:
    req = await parse_request(request, ChatRequest)
    _warm_renderer()
    _check_images(image for m in req.messages or () for image in m.images or ())
    logprobs = _parsed_logprobs(req.logprobs, req.top_logprobs)
    think = _parsed_think(req.think)
    grammar = _format_constraint(req.format)
    try:
        tools = parse_tools(req.tools)
        choice = parse_tool_choice(req.tool_choice, tools)
    except InvalidTools as exc:
        raise ApiError(400, str(exc)) from None
    inference = await prepare(request, req.model, req.options, req.keep_alive, chat=True)
    if not req.messages and inference.keep_alive_s == 0:
        return await inference.load_only(unload=True, chat=True)
    think = _settled_think(inference.model, req.model, think)
    images = any(m.images for m in req.messages or ())
    _check_capabilities(inference.model, req.model, "chat",
                        ["tools"] * bool(tools) + ["vision"] * images)
    if not req.messages:
        return await inference.load_only(unload=False, chat=True)
    tools = [] if choice.disabled else tools
    from ollamactl.runtime.prompting.prompt import render_chat

    messages = [m.as_dict() | {"role": m.role.lower()} for m in req.messages]
    tagged_images = tag_messages(messages)
    try:
        messages = prepare_messages(messages,
                                    template_has_tools="tools" in inference.model.capabilities)
    except InvalidTools as exc:
        raise ApiError(400, str(exc)) from None
    prompt = await inference.rendered(lambda: render_chat(
        inference.model, messages, tools=[t.to_dict() for t in tools] or None,
        think=think.template_values()))
    if tools and grammar is None:
        grammar = tools_constraint(tools, forced=choice.forced, only=choice.only)
    reply = ReplySplitter(_thinking_parser(inference.model, think, prompt),
                          ToolCallParser(tools) if tools else None)
    name = req.model

    def message(piece: Piece) -> dict[str, Any]:
        body: dict[str, Any] = {"role": "assistant", "content": piece.content}
        if piece.thinking:
            body["thinking"] = piece.thinking
        if piece.calls:
            body["tool_calls"] = [call.to_native() for call in piece.calls]
        return body

    def chunk(text: str, token_logprobs: list[dict[str, Any]]) -> dict[str, Any] | None:
        piece = reply.feed(text)
        if not (piece or token_logprobs):
            return None
        return _with_logprobs({"model": name, "created_at": created_at(),
                               "message": message(piece), "done": False}, token_logprobs)

    def final(text: str, done: Finished, metrics: dict[str, int],
              token_logprobs: list[dict[str, Any]]) -> dict[str, Any]:
        piece, rest = reply.feed(text), reply.finish()
        whole = Piece(piece.thinking + rest.thinking, piece.content + rest.content,
                      piece.calls + rest.calls)
        return _with_logprobs({"model": name, "created_at": created_at(),
                               "message": message(whole), "done_reason": done.reason,
                               "done": True, **metrics}, token_logprobs)

    return await inference.run(list(prompt.segments), stream=req.stream is not False,
                               chunk=chunk, final=final, grammar=grammar,
                               shift=req.shift is not False,
                               truncate=req.truncate is not False, logprobs=logprobs,
                               images=tagged_images)


def _check_images(images: Iterable[str]) -> None:
    """Ollama's 400 for an image that is not base64 (its JSON decoding of ``[]byte``)."""
    try:
        check_base64(images)
    except BadImage as exc:
        raise ApiError(400, str(exc)) from None


def _parsed_logprobs(logprobs: bool, top_logprobs: int) -> Logprobs | None:
    """What the request asked of logprobs (None: none), ``top_logprobs`` checked first as
    Ollama checks it, whether or not ``logprobs`` is on."""
    try:
        return parse_logprobs(logprobs, top_logprobs)
    except BadRequest as exc:
        raise ApiError(400, str(exc)) from None


def _logprobs_of(tokens: Iterable[Token]) -> list[dict[str, Any]]:
    return [entry for token in tokens for entry in token.logprobs]


def _with_logprobs(body: dict[str, Any], logprobs: list[dict[str, Any]]) -> dict[str, Any]:
    """``body`` with Ollama's ``logprobs`` list, left out when empty (its omitempty)."""
    if logprobs:
        body["logprobs"] = logprobs
    return body


def _parsed_think(value: Any) -> ThinkValue:
    try:
        return parse_think(value)
    except BadRequest as exc:
        raise ApiError(400, str(exc)) from None


def _quoted(name: str) -> str:
    """A name as Go's ``%q`` writes it in Ollama's messages."""
    return json.dumps(name, ensure_ascii=False)


def _settled_think(model: LocalModel, request_model: str, think: ThinkValue) -> ThinkValue:
    """``think`` as Ollama applies it: on by default for a model that thinks; asked of a model
    that does not, a 400 (``false`` is always accepted)."""
    if "thinking" in model.capabilities:
        return think if think.value is not None else ThinkValue(True)
    if think.enabled:
        raise ApiError(400, f"{_quoted(request_model)} does not support thinking")
    return think


def _check_capabilities(model: LocalModel, request_model: str, endpoint: str,
                        needed: list[str]) -> None:
    """Ollama's capability check: a model without completion "does not support" the
    endpoint; one lacking a capability the request needs gets a 400 naming the model in full
    and each capability missing (``registry.ollama.ai/library/gemma3:270m does not support
    tools``)."""
    if "completion" not in model.capabilities:
        raise ApiError(400, f"{_quoted(request_model)} does not support {endpoint}")
    missing = [capability for capability in needed if capability not in model.capabilities]
    if missing:
        host, namespace, name, tag = model.name.manifest_parts
        raise ApiError(400, f"{host}/{namespace}/{name}:{tag} does not support "
                       + "\n".join(missing))


def _thinking_parser(model: LocalModel, think: ThinkValue, prompt: Prompt
                     ) -> ThinkingParser | None:
    """The parser that takes the reasoning off the output when thinking is on and the
    template shows where it goes; already inside the block when the prompt opened it."""
    tags = template_features(model.template, model.chat_template).thinking_tags
    if not think.enabled or tags is None:
        return None
    parser = ThinkingParser(*tags)
    if prompt.text.strip().endswith(tags[0]):
        parser.feed(tags[0])
    return parser


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


async def _rendered(request: Request, render: Callable[[], Prompt]) -> Prompt:
    """A prompt from ``render``, run in a thread of its own limiter: a render waits for one of
    the template workers, and waiting requests must not hold the thread pool that /api/tags
    and the store need."""
    from ollamactl.runtime.prompting.template_worker import WORKERS

    try:
        return await anyio.to_thread.run_sync(
            render, limiter=thread_limiter(request, "render_limiter", WORKERS))
    except OllamactlError as exc:
        raise ApiError(400, str(exc)) from None
