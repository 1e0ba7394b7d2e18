"""Anthropic compatibility: ``POST /v1/messages`` (the Messages API agent tools such as Claude
Code speak), as a rewrite onto the native ``/api/chat`` like Ollama's ``anthropic`` package.

The request becomes a native chat body (system, content blocks, tools, sampling, thinking),
the native handler answers it (same model resolution, scheduler, tool parsing), and its answer
becomes one ``message`` object or the Messages streaming events (``message_start``,
``content_block_start/delta/stop``, ``message_delta``, ``message_stop``; no ``ping``, as in
Ollama). Errors take Anthropic's shape ``{"type": "error", "error": {"type", "message"}}`` with
the native status. ``x-api-key`` and ``anthropic-version`` are accepted and ignored. Kept from
Ollama: thinking asked of a model that cannot think is dropped rather than refused (Claude Code
always asks), ``content`` text blocks are concatenated without a separator, only base64 images
are taken. Beyond it: ``tool_choice`` reaches the native ``tool_choice`` (Ollama ignores it).
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from ollamactl.runtime.http import inference
from ollamactl.runtime.http.openai import SSE, native_lines, native_request, sse
from ollamactl.runtime.http.requests import ApiError, read_json, resolve_model, store_of

_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                403: "permission_error", 404: "not_found_error", 429: "rate_limit_error",
                503: "overloaded_error", 529: "overloaded_error"}
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens"}
_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "max"}

Event = tuple[str, dict[str, Any]]


def _new_id(prefix: str) -> str:
    """``msg_``/``req_`` plus 24 random hex digits, as Ollama makes Anthropic ids."""
    return f"{prefix}_{secrets.token_hex(12)}"


def error_body(status: int, message: str) -> dict[str, Any]:
    """Anthropic's error object; the type follows the status as Ollama's ``NewError`` maps it."""
    return {"type": "error", "error": {"type": _ERROR_TYPES.get(status, "api_error"),
                                       "message": message}, "request_id": _new_id("req")}


def _anthropic_errors(handler: Callable[[Request], Awaitable[Response]]
                      ) -> Callable[[Request], Awaitable[Response]]:
    """Turn the native and own errors raised by ``handler`` into Anthropic error bodies."""
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as exc:
            return JSONResponse(error_body(exc.status, exc.message), status_code=exc.status)
    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


def _bad(message: str) -> ApiError:
    return ApiError(400, message)


def _text_of(blocks: list[Any]) -> str:
    return "".join(str(b.get("text") or "") for b in blocks
                   if isinstance(b, dict) and b.get("type") == "text")


def _system(value: Any) -> str:
    if value is None or isinstance(value, str):
        return value or ""
    if isinstance(value, list):
        return _text_of(value)
    raise _bad("system must be a string or a list of text blocks")


def _image(source: Any) -> str:
    """The base64 data of an image block's source (checked, passed on as the native takes it)."""
    if not isinstance(source, dict):
        raise _bad("invalid image source")
    if source.get("type") != "base64":
        raise _bad(f"invalid image source type: {source.get('type')}. "
                   "Only base64 images are supported.")
    data = source.get("data")
    if not isinstance(data, str) or not data:
        raise _bad("invalid base64 image data: data must be a non-empty string")
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _bad(f"invalid base64 image data: {exc}") from None
    return data


def _tool_result(block: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    content = block.get("content")
    images: list[str] = []
    if isinstance(content, list):
        images = [_image(b.get("source")) for b in content
                  if isinstance(b, dict) and b.get("type") == "image"]
        content = _text_of(content)
    elif not isinstance(content, str):
        content = ""
    message: dict[str, Any] = {"role": "tool", "content": content}
    if images:
        message["images"] = images
    if block.get("tool_use_id"):
        message["tool_call_id"] = str(block["tool_use_id"])
        if names.get(message["tool_call_id"]):
            message["tool_name"] = names[message["tool_call_id"]]
    return message


def _message(index: int, raw: Any, names: dict[str, str]) -> list[dict[str, Any]]:
    """One Anthropic message as native messages: a user turn's tool results come first (each a
    ``tool`` message), then its text and images; an assistant turn's text, thinking and
    ``tool_use`` blocks make one message. Unknown block types are skipped, as Ollama does."""
    where = f"messages[{index}]"
    if not isinstance(raw, dict):
        raise _bad(f"{where} must be an object")
    role = str(raw.get("role") or "").lower()
    if role not in ("user", "assistant"):
        raise _bad(f'{where}.role must be "user" or "assistant"')
    blocks = raw.get("content")
    if isinstance(blocks, str):
        blocks = [{"type": "text", "text": blocks}]
    if not isinstance(blocks, list):
        raise _bad(f"{where}.content must be a string or a list of content blocks")
    text: list[str] = []
    images: list[str] = []
    calls: list[dict[str, Any]] = []
    thinking = ""
    results: list[dict[str, Any]] = []
    for block in blocks:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            text.append(str(block.get("text") or ""))
        elif kind == "image":
            images.append(_image(block.get("source")))
        elif kind == "tool_use":
            if not block.get("id"):
                raise _bad("tool_use block missing required 'id' field")
            if not block.get("name"):
                raise _bad("tool_use block missing required 'name' field")
            arguments = block.get("input")
            if not isinstance(arguments, dict):
                arguments = {}
            names[str(block["id"])] = str(block["name"])
            calls.append({"id": str(block["id"]), "function": {
                "name": str(block["name"]), "arguments": arguments}})
        elif kind == "tool_result":
            results.append(_tool_result(block, names))
        elif kind == "thinking":
            thinking = str(block.get("thinking") or "")
    own: list[dict[str, Any]] = []
    if "".join(text) or images or calls or thinking:
        message: dict[str, Any] = {"role": role, "content": "".join(text)}
        if images:
            message["images"] = images
        if calls:
            message["tool_calls"] = calls
        if thinking:
            message["thinking"] = thinking
        own.append(message)
    return [*results, *own] if role == "user" else [*own, *results]


def _tools(raw: Any) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _bad("tools must be a list")
    tools = []
    for position, tool in enumerate(raw):
        if not isinstance(tool, dict):
            raise _bad(f"tools[{position}] must be an object")
        name = tool.get("name")
        if str(tool.get("type") or "").startswith("web_search"):
            raise _bad("web search is not supported by this server")
        if not isinstance(name, str) or not name:
            raise _bad(f"tools[{position}].name is required")
        schema = tool.get("input_schema")
        if schema is not None and not isinstance(schema, dict):
            raise _bad(f"invalid input_schema for tool {json.dumps(name)}: must be an object")
        function: dict[str, Any] = {"name": name,
                                    "description": str(tool.get("description") or "")}
        if schema is not None:
            function["parameters"] = schema
        tools.append({"type": "function", "function": function})
    return tools


def _tool_choice(raw: Any) -> Any:
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind in ("auto", "none"):
        return kind
    if kind == "any":
        return "required"
    if kind == "tool" and isinstance(raw.get("name"), str):
        return {"type": "function", "function": {"name": raw["name"]}}
    raise _bad('tool_choice must be {"type": "auto"|"any"|"none"} or '
               '{"type": "tool", "name": ...}')


def _think(body: dict[str, Any]) -> bool | str | None:
    """``thinking.type`` enabled/disabled, else ``output_config.effort``, as Ollama maps them
    (``budget_tokens`` has no native counterpart and is not used)."""
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") in ("enabled", "disabled"):
        return bool(thinking["type"] == "enabled")
    config = body.get("output_config")
    effort = config.get("effort") if isinstance(config, dict) else None
    return _EFFORTS.get(str(effort or "").strip().lower())


def to_chat_request(body: dict[str, Any]) -> dict[str, Any]:
    """The native ``/api/chat`` body for a Messages request; a defect is a 400 naming it."""
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _bad("model is required")
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens <= 0:
        raise _bad("max_tokens is required and must be positive")
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise _bad("messages is required")
    messages: list[dict[str, Any]] = []
    system = _system(body.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    names: dict[str, str] = {}
    for index, raw in enumerate(raw_messages):
        messages.extend(_message(index, raw, names))
    if len(messages) == bool(system):  # the native would only load the model
        raise _bad("messages have no content")
    options: dict[str, Any] = {"num_predict": max_tokens}
    for key in ("temperature", "top_p", "top_k"):
        if body.get(key) is not None:
            options[key] = body[key]
    stop = body.get("stop_sequences")
    if stop:
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise _bad("stop_sequences must be a list of strings")
        options["stop"] = stop
    native: dict[str, Any] = {"model": body["model"], "messages": messages, "options": options,
                              "stream": body.get("stream") is True}
    tools = _tools(body.get("tools"))
    if tools:
        native["tools"] = tools
        if body.get("tool_choice") is not None:
            native["tool_choice"] = _tool_choice(body["tool_choice"])
    think = _think(body)
    if think is not None:
        native["think"] = think
    return native


def estimate_input_tokens(body: dict[str, Any]) -> int:
    """Ollama's rough count for ``message_start`` (the real one comes with the last chunk):
    a quarter of the characters of the system, the messages and the tools, at least 1."""
    size = len(json.dumps(body.get("system"))) if body.get("system") else 0
    for message in body.get("messages") or ():
        size += len(json.dumps(message, ensure_ascii=False))
    for tool in body.get("tools") or ():
        size += len(json.dumps(tool, ensure_ascii=False))
    return max(1, size // 4)


def stop_reason(done_reason: str | None, has_calls: bool) -> str | None:
    """Ollama's mapping: a tool call is ``tool_use``, stop ``end_turn``, length ``max_tokens``,
    anything else ``stop_sequence``."""
    if has_calls:
        return "tool_use"
    if not done_reason:
        return None
    return _STOP_REASONS.get(done_reason, "stop_sequence")


def _tool_use(call: dict[str, Any], arguments: Any) -> dict[str, Any]:
    function = call.get("function") or {}
    return {"type": "tool_use", "id": call.get("id"), "name": function.get("name"),
            "input": arguments}


def to_message(final: dict[str, Any], ident: str, model: str) -> dict[str, Any]:
    """The ``message`` object for a native non-streamed answer."""
    native = final.get("message") or {}
    content: list[dict[str, Any]] = []
    if native.get("thinking"):
        content.append({"type": "thinking", "thinking": native["thinking"]})
    if native.get("content"):
        content.append({"type": "text", "text": native["content"]})
    calls = native.get("tool_calls") or []
    content.extend(_tool_use(call, (call.get("function") or {}).get("arguments") or {})
                   for call in calls)
    return {"id": ident, "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop_reason(final.get("done_reason"), bool(calls)),
            "stop_sequence": None,
            "usage": {"input_tokens": int(final.get("prompt_eval_count", 0)),
                      "output_tokens": int(final.get("eval_count", 0))}}


class MessageEvents:
    """Native stream chunks to Messages events: thinking, text and each tool call get a content
    block of their own, numbered in order; a block closes when another kind begins."""

    def __init__(self, ident: str, model: str, estimated_input_tokens: int) -> None:
        self.ident = ident
        self.model = model
        self.estimated = estimated_input_tokens
        self.started = False
        self.index = 0
        self.open: str | None = None
        self.calls = 0

    def _close(self) -> list[Event]:
        if self.open is None:
            return []
        self.open = None
        self.index += 1
        return [("content_block_stop", {"type": "content_block_stop", "index": self.index - 1})]

    def _delta(self, kind: str, delta: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        if self.open != kind:
            events = self._close()
            self.open = kind
            events.append(("content_block_start", {
                "type": "content_block_start", "index": self.index,
                "content_block": {"type": kind, kind: ""}}))
        events.append(("content_block_delta", {"type": "content_block_delta",
                                               "index": self.index, "delta": delta}))
        return events

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        if not self.started:
            self.started = True
            events.append(("message_start", {"type": "message_start", "message": {
                "id": self.ident, "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": int(chunk.get("prompt_eval_count", 0))
                          or self.estimated, "output_tokens": 0}}}))
        message = chunk.get("message") or {}
        if message.get("thinking"):
            events += self._delta("thinking", {"type": "thinking_delta",
                                               "thinking": message["thinking"]})
        if message.get("content"):
            events += self._delta("text", {"type": "text_delta", "text": message["content"]})
        for call in message.get("tool_calls") or ():
            events += self._close()
            arguments = (call.get("function") or {}).get("arguments") or {}
            events += [
                ("content_block_start", {"type": "content_block_start", "index": self.index,
                                         "content_block": _tool_use(call, {})}),
                ("content_block_delta", {"type": "content_block_delta", "index": self.index,
                                         "delta": {"type": "input_json_delta",
                                                   "partial_json": json.dumps(arguments)}}),
                ("content_block_stop", {"type": "content_block_stop", "index": self.index})]
            self.index += 1
            self.calls += 1
        if chunk.get("done"):
            events += self._close()
            events += [
                ("message_delta", {"type": "message_delta", "delta": {
                    "stop_reason": stop_reason(chunk.get("done_reason"), self.calls > 0),
                    "stop_sequence": None},
                    "usage": {"input_tokens": int(chunk.get("prompt_eval_count", 0)),
                              "output_tokens": int(chunk.get("eval_count", 0))}}),
                ("message_stop", {"type": "message_stop"})]
        return events


def _event(name: str, data: dict[str, Any]) -> bytes:
    """One named SSE event (Anthropic's streams name each event)."""
    return f"event: {name}\n".encode() + sse(data)


async def _relaxed_think(request: Request, native: dict[str, Any]) -> None:
    """Ollama's ``relax_thinking`` for this surface: thinking asked of a model without the
    capability is dropped instead of answered with a 400."""
    if native.get("think"):
        model = await run_in_threadpool(resolve_model, store_of(request), native["model"])
        if "thinking" not in model.capabilities:
            del native["think"]


@_anthropic_errors
async def messages(request: Request) -> Response:
    """``POST /v1/messages``: one ``message`` object, or its events with ``stream: true``."""
    body = await read_json(request)
    if body is None:        # Go leaves a struct unset for `null`, as Ollama's middleware does
        body = {}
    if not isinstance(body, dict):
        raise _bad("request body must be a JSON object")
    native = to_chat_request(body)
    await _relaxed_think(request, native)
    answer = await inference.chat(native_request(request, native))
    ident = _new_id("msg")
    model = native["model"]
    if not native["stream"]:
        (final,) = [item async for item in native_lines(answer)]
        return JSONResponse(to_message(final, ident, model))

    converter = MessageEvents(ident, model, estimate_input_tokens(body))

    async def events() -> AsyncIterator[bytes]:
        async for item in native_lines(answer):
            if "error" in item:
                yield _event("error", {"type": "error", "error": {
                    "type": "api_error", "message": str(item["error"])}})
                return
            for name, data in converter.feed(item):
                yield _event(name, data)

    return StreamingResponse(events(), media_type=SSE,
                             headers={"Cache-Control": "no-cache"})
