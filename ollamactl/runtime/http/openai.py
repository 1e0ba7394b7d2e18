"""OpenAI compatibility: `/v1/chat/completions`, `/v1/completions`, `/v1/models`, embeddings.

Like Ollama's middleware, each request is translated into the native request, answered by
the native handler in :mod:`inference` (same model resolution, scheduler, tools, grammar),
and the native answer is translated back: one object, or SSE ``data:`` events ending in
``data: [DONE]``. Errors take OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``.
Logprobs: chat's ``logprobs``/``top_logprobs`` pass through and come back as
``choices[].logprobs.content`` (Ollama's api.Logprob entries, in each chunk that carries
some); completions' integer ``logprobs`` asks for that many alternatives, and its
``choices[].logprobs`` holds both Ollama's ``content`` and OpenAI's legacy lists.
Quirks kept from the reference: ``stream`` defaults to false, absent ``temperature`` and
``top_p`` mean 1.0, ids are ``chatcmpl-``/``cmpl-`` plus 0..998, an empty store lists
``"data": null``. Thinking maps both ways: ``reasoning_effort`` / ``reasoning.effort`` become
``think``, the model's ``thinking`` comes back as ``reasoning`` (message, delta, and a
message's ``reasoning`` in the history).
"""

from __future__ import annotations

import base64
import json
import random
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from ollamactl.runtime.http import inference
from ollamactl.runtime.http.embeddings import InvalidVector, embed_texts, shape_vector
from ollamactl.runtime.http.images import is_base64
from ollamactl.runtime.http.requests import ApiError, resolve_model

SSE = "text/event-stream"
IMAGE_PREFIXES = ("data:image/jpeg;base64,", "data:image/jpg;base64,", "data:image/png;base64,",
                   "data:image/webp;base64,", "data:;base64,")
_ERROR_TYPES = {400: "invalid_request_error", 404: "not_found_error"}
_EFFORTS: dict[str, bool | str] = {"none": False, "minimal": "low", "low": "low",
                                   "medium": "medium", "high": "high", "max": "max",
                                   "xhigh": "max", "ultra": "max"}


class OpenAIError(Exception):
    """An error to send in OpenAI's shape."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": _ERROR_TYPES.get(status, "api_error"),
                      "param": None, "code": None}}


def _error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse(error_body(status, message), status_code=status)


def openai_errors(handler: Callable[[Request], Awaitable[Response]]
                   ) -> Callable[[Request], Awaitable[Response]]:
    """Turn native and own errors raised by ``handler`` into OpenAI error bodies."""
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except (ApiError, OpenAIError) as exc:
            return _error_response(exc.status, exc.message)
    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


async def request_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        raise OpenAIError(400, "missing request body")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise OpenAIError(400, f"invalid JSON in request body: {exc}") from None
    if body is None:        # Go leaves a struct unset for `null`, as Ollama's middleware does
        return {}
    if not isinstance(body, dict):
        raise OpenAIError(400, "request body must be a JSON object")
    return body


def native_request(request: Request, body: dict[str, Any]) -> Request:
    """A request for a native handler: same app and client, the translated JSON body."""
    payload = json.dumps(body).encode()
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": payload, "more_body": False}
        return dict(await request.receive())

    return Request(request.scope, receive)


def _options(body: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {
        "temperature": 1.0 if body.get("temperature") is None else body["temperature"],
        "top_p": body.get("top_p") or 1.0,
    }
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None:
        options["num_predict"] = max_tokens
    for key in ("seed", "frequency_penalty", "presence_penalty"):
        if body.get(key) is not None:
            options[key] = body[key]
    stop = body.get("stop")
    if stop is not None:
        options["stop"] = [stop] if isinstance(stop, str) else stop
    return options


def _content_and_images(content: Any) -> tuple[str, list[str]]:
    if content is None or isinstance(content, str):
        return content or "", []
    if not isinstance(content, list):
        raise OpenAIError(400, "invalid message content type")
    texts: list[str] = []
    images: list[str] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            texts.append(str(part.get("text") or ""))
        elif kind == "image_url":
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            prefix = next((p for p in IMAGE_PREFIXES if str(url).startswith(p)), None)
            if prefix is None or not is_base64(str(url)[len(prefix):]):
                raise OpenAIError(400, "invalid image input")
            images.append(str(url)[len(prefix):])
        else:
            raise OpenAIError(400, f"invalid message part type: {kind}")
    return "\n".join(texts), images


def _messages(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        raise OpenAIError(400, "[] is too short - 'messages'")
    names_by_id: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("role"), str):
            raise OpenAIError(400, "invalid message: each needs a role")
        content, images = _content_and_images(item.get("content"))
        message: dict[str, Any] = {"role": item["role"], "content": content}
        if isinstance(item.get("reasoning"), str) and item["reasoning"]:
            message["thinking"] = item["reasoning"]
        if images:
            message["images"] = images
        if item.get("tool_calls"):
            calls = []
            for call in item["tool_calls"]:
                function = call.get("function") or {}
                arguments = function.get("arguments") or "{}"
                try:
                    arguments = json.loads(arguments) if isinstance(arguments, str) \
                        else arguments
                except ValueError:
                    raise OpenAIError(400, "invalid tool call arguments") from None
                if call.get("id"):
                    names_by_id[str(call["id"])] = str(function.get("name") or "")
                calls.append({"id": call.get("id"), "function": {
                    "name": function.get("name"), "arguments": arguments}})
            message["tool_calls"] = calls
        if item["role"] == "tool":
            name = item.get("name") or names_by_id.get(str(item.get("tool_call_id")), "")
            if name:
                message["tool_name"] = name
            if item.get("tool_call_id"):
                message["tool_call_id"] = item["tool_call_id"]
        out.append(message)
    return out


def _format(response_format: Any) -> Any:
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise OpenAIError(400, "response_format json_schema needs a schema object")
        return schema
    return None


def think_from_effort(body: dict[str, Any]) -> bool | str | None:
    """The native ``think`` for ``reasoning.effort`` (first) or ``reasoning_effort``, as
    Ollama maps OpenAI's scale onto its own: ``none`` is off, ``minimal`` is low, ``xhigh``
    and ``ultra`` are max; unset leaves the model's default."""
    reasoning = body.get("reasoning")
    effort = reasoning.get("effort") if isinstance(reasoning, dict) \
        else body.get("reasoning_effort")
    if effort is None or effort == "":
        return None
    if isinstance(effort, str) and effort in _EFFORTS:
        return _EFFORTS[effort]
    raise OpenAIError(400, f"invalid reasoning value: {json.dumps(effort, ensure_ascii=False)} "
                           '(must be "minimal", "low", "medium", "high", "xhigh", "ultra", '
                           '"max", or "none")')


def _openai_calls(native: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    return [{"id": call.get("id"), "index": call["function"].get("index", i), "type": "function",
             "function": {"name": call["function"]["name"],
                          "arguments": json.dumps(call["function"]["arguments"])}}
            for i, call in enumerate(native or [])]


def _usage(final: dict[str, Any]) -> dict[str, int]:
    prompt, completion = int(final.get("prompt_eval_count", 0)), int(final.get("eval_count", 0))
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def _finish_reason(reason: str | None, has_calls: bool) -> str:
    if has_calls and reason in (None, "stop"):
        return "tool_calls"
    return reason or "stop"


async def native_lines(response: Response) -> AsyncIterator[dict[str, Any]]:
    """The objects of a native answer: NDJSON chunks, or the one JSON object."""
    if not isinstance(response, StreamingResponse):
        yield json.loads(bytes(response.body))
        return
    pending = b""
    async for piece in response.body_iterator:
        pending += piece if isinstance(piece, bytes) else str(piece).encode()
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if line.strip():
                yield json.loads(line)
    if pending.strip():
        yield json.loads(pending)


def sse(obj: Any) -> bytes:
    return f"data: {json.dumps(obj, separators=(',', ':'), ensure_ascii=False)}\n\n".encode()


@openai_errors
async def chat_completions(request: Request) -> Response:
    body = await request_body(request)
    model = str(body.get("model") or "")
    stream = body.get("stream") is True
    include_usage = stream and bool((body.get("stream_options") or {}).get("include_usage"))
    native: dict[str, Any] = {"model": model, "messages": _messages(body.get("messages")),
                              "options": _options(body), "stream": stream}
    if body.get("tools"):
        native["tools"] = body["tools"]
        if body.get("tool_choice") is not None:
            native["tool_choice"] = body["tool_choice"]
    response_format = _format(body.get("response_format"))
    if response_format is not None:
        native["format"] = response_format
    think = think_from_effort(body)
    if think is not None:
        native["think"] = think
    if body.get("logprobs") is not None:
        native["logprobs"] = body["logprobs"]
    if body.get("top_logprobs") is not None:
        native["top_logprobs"] = body["top_logprobs"]
    answer = await inference.chat(native_request(request, native))
    ident = f"chatcmpl-{random.randrange(999)}"
    created = int(time.time())
    head = {"id": ident, "created": created, "model": model, "system_fingerprint": "fp_ollama"}

    if not stream:
        (final,) = [item async for item in native_lines(answer)]
        message = final.get("message") or {}
        calls = _openai_calls(message.get("tool_calls"))
        reply_message: dict[str, Any] = {"role": "assistant", "content": message.get("content")}
        if message.get("thinking"):
            reply_message["reasoning"] = message["thinking"]
        if calls:
            reply_message["tool_calls"] = calls
        choice: dict[str, Any] = {
            "index": 0, "message": reply_message,
            "finish_reason": _finish_reason(final.get("done_reason"), bool(calls))}
        if final.get("logprobs"):
            choice["logprobs"] = {"content": final["logprobs"]}
        return JSONResponse({**head, "object": "chat.completion", "choices": [choice],
                             "usage": _usage(final)})

    async def events() -> AsyncIterator[bytes]:
        first = True
        has_calls = False
        async for item in native_lines(answer):
            if "error" in item:
                yield sse(error_body(500, str(item["error"])))
                break
            message = item.get("message") or {}
            delta: dict[str, Any] = {}
            if message.get("content"):
                delta["content"] = message["content"]
            if message.get("tool_calls"):
                delta["tool_calls"] = _openai_calls(message["tool_calls"])
                has_calls = True
            # reasoning goes in a chunk of its own, before the content it came with (Ollama's)
            deltas = [{"reasoning": message["thinking"]}] if message.get("thinking") else []
            if delta or not deltas:
                deltas.append(delta)
            logprobs = item.get("logprobs")  # on the first chunk of the item, as Ollama's
            for delta in deltas:
                if not delta and logprobs:
                    delta = {"content": ""}
                if not delta and not (first and not item.get("done")):
                    continue
                if first:
                    delta = {"role": "assistant", **delta}
                    first = False
                choice = {"index": 0, "delta": delta, "finish_reason": None}
                if logprobs:
                    choice["logprobs"], logprobs = {"content": logprobs}, None
                yield sse({**head, "object": "chat.completion.chunk", "choices": [choice]})
            if item.get("done"):
                yield sse({**head, "object": "chat.completion.chunk", "choices": [{
                    "index": 0, "delta": {},
                    "finish_reason": _finish_reason(item.get("done_reason"), has_calls)}]})
                if include_usage:
                    yield sse({**head, "object": "chat.completion.chunk", "choices": [],
                                "usage": _usage(item)})
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type=SSE)


@openai_errors
async def completions(request: Request) -> Response:
    body = await request_body(request)
    model = str(body.get("model") or "")
    prompt = body.get("prompt", "")
    if not isinstance(prompt, str):
        raise OpenAIError(400, "invalid type for 'prompt': expected a string")
    stream = body.get("stream") is True
    include_usage = stream and bool((body.get("stream_options") or {}).get("include_usage"))
    native: dict[str, Any] = {"model": model, "prompt": prompt, "options": _options(body),
                              "stream": stream}
    if body.get("suffix"):
        native["suffix"] = body["suffix"]
    top = body.get("logprobs")
    if isinstance(top, int) and not isinstance(top, bool) and top > 0:  # Ollama's reading
        native.update(logprobs=True, top_logprobs=top)
    answer = await inference.generate(native_request(request, native))
    head = {"id": f"cmpl-{random.randrange(999)}", "created": int(time.time()), "model": model,
            "system_fingerprint": "fp_ollama", "object": "text_completion"}
    if not stream:
        (final,) = [item async for item in native_lines(answer)]
        return JSONResponse({**head, "choices": [{
            "text": final.get("response", ""), "index": 0,
            "logprobs": _completion_logprobs(final.get("logprobs"), 0),
            "finish_reason": final.get("done_reason") or "stop"}], "usage": _usage(final)})

    zero = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}

    async def events() -> AsyncIterator[bytes]:
        offset = 0
        async for item in native_lines(answer):
            if "error" in item:
                yield sse(error_body(500, str(item["error"])))
                break
            done = bool(item.get("done"))
            logprobs = _completion_logprobs(item.get("logprobs"), offset)
            offset += len(item.get("response", ""))
            chunk: dict[str, Any] = {**head, "choices": [{
                "text": item.get("response", ""), "index": 0, "logprobs": logprobs,
                "finish_reason": (item.get("done_reason") or "stop") if done else None}]}
            if include_usage:
                chunk["usage"] = zero
            yield sse(chunk)
            if done and include_usage:
                yield sse({**head, "choices": [], "usage": _usage(item)})
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type=SSE)


def _completion_logprobs(entries: list[dict[str, Any]] | None, offset: int
                         ) -> dict[str, Any] | None:
    """A completion choice's ``logprobs``: Ollama's entries as ``content`` and OpenAI's legacy
    ``tokens``, ``token_logprobs``, ``top_logprobs`` (token -> logprob) and ``text_offset``
    (from ``offset``, where this chunk's text starts); None when none were asked for."""
    if not entries:
        return None
    offsets = []
    for entry in entries:
        offsets.append(offset)
        offset += len(entry["token"])
    return {"content": entries, "tokens": [e["token"] for e in entries],
            "token_logprobs": [e["logprob"] for e in entries],
            "top_logprobs": [{t["token"]: t["logprob"] for t in e.get("top_logprobs", ())}
                             for e in entries],
            "text_offset": offsets}


def _model_entry(model: Any) -> dict[str, Any]:
    return {"id": model.name.display, "object": "model",
            "created": int(model.modified_at.timestamp()), "owned_by": model.name.namespace}


@openai_errors
async def list_models(request: Request) -> Response:
    models = await run_in_threadpool(request.app.state.store.list)
    return JSONResponse({"object": "list", "data": [_model_entry(m) for m in models] or None})


@openai_errors
async def show_model(request: Request) -> Response:
    name = request.path_params["model"]
    model = await run_in_threadpool(resolve_model, request.app.state.store, name)
    return JSONResponse(_model_entry(model))


@openai_errors
async def embeddings(request: Request) -> Response:
    body = await request_body(request)
    model = str(body.get("model") or "")
    value = body.get("input")
    if isinstance(value, str):
        inputs = [value]
    elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        inputs = list(value)
    else:
        raise OpenAIError(400, "invalid input")
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise OpenAIError(400, f"invalid encoding format: {encoding}")
    dimensions = body.get("dimensions")
    if dimensions is not None and (not isinstance(dimensions, int) or dimensions < 0):
        raise OpenAIError(400, "invalid dimensions")
    result = await embed_texts(request, model, inputs, truncate=True, options=None,
                               keep_alive=None)
    data = []
    for index, raw in enumerate(result.vectors):
        try:
            vector = shape_vector(raw, dimensions or None)
        except InvalidVector as exc:
            raise OpenAIError(500, str(exc)) from None
        embedding: Any = vector
        if encoding == "base64":
            embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "embedding": embedding, "index": index})
    return JSONResponse({"object": "list", "data": data, "model": model, "usage": {
        "prompt_tokens": result.prompt_eval_count, "total_tokens": result.prompt_eval_count}})
