"""OpenAI Responses compatibility: ``POST /v1/responses``, as a rewrite onto the native
``/api/chat`` like Ollama's ``openai/responses.go``.

``input`` (a string, or message / ``function_call`` / ``function_call_output`` / ``reasoning``
items), ``instructions``, function ``tools``, ``max_output_tokens``, ``temperature``, ``top_p``,
``reasoning.effort`` and ``text.format`` become a native chat body; the native answer becomes one
``response`` object or the Responses streaming events, each with its ``sequence_number``.
Errors take OpenAI's shape (:func:`~ollamactl.runtime.http.openai.error_body`). Kept from
Ollama: absent ``temperature`` means 1.0, a truncated answer is still ``completed``, ``store``
is answered ``false`` and nothing is stored, so ``previous_response_id`` is Ollama's 404 for an
unknown response; ``background`` and ``conversation`` are refused; other fields (``include``,
``truncation``, ``metadata``) are ignored. Beyond it: ``tool_choice`` reaches the native
``tool_choice``, ``json_object`` means ``format: "json"``, a ``developer`` message is a system
message, and text that came before a tool call is kept as a message item.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from ollamactl.runtime.http import inference
from ollamactl.runtime.http.openai import (
    IMAGE_PREFIXES,
    SSE,
    OpenAIError,
    native_lines,
    native_request,
    openai_errors,
    request_body,
    sse,
    think_from_effort,
)

Event = tuple[str, dict[str, Any]]
_ROLES = ("user", "assistant", "system", "developer")
PREVIOUS_NOT_FOUND = {"error": {
    "type": "invalid_request_error", "code": "previous_response_not_found",
    "param": "previous_response_id",
    "message": "previous_response_id was not found or has expired; resend the full conversation"}}


def _bad(message: str) -> OpenAIError:
    return OpenAIError(400, message)


def _content(where: str, raw: Any) -> tuple[str, list[str]]:
    """Text (concatenated, as Ollama does) and base64 images of a message's content."""
    if raw is None or isinstance(raw, str):
        return raw or "", []
    if not isinstance(raw, list):
        raise _bad(f"{where}: content must be a string or array")
    text: list[str] = []
    images: list[str] = []
    for position, part in enumerate(raw):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text"):
            text.append(str(part.get("text") or ""))
        elif kind == "input_image":
            url = str(part.get("image_url") or "")
            if not url:
                continue  # a file_id: nothing to read it from
            prefix = next((p for p in IMAGE_PREFIXES if url.startswith(p)), None)
            if prefix is None:
                raise _bad("invalid image input")
            images.append(url[len(prefix):])
        elif kind == "input_file":
            raise _bad("file inputs are not currently supported")
        else:
            raise _bad(f"{where}: content[{position}]: unknown content type: {kind}")
    return "".join(text), images


def _arguments(raw: Any) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise _bad(f"failed to parse function call arguments: {exc}") from None
    if not isinstance(value, dict):
        raise _bad("failed to parse function call arguments: not a JSON object")
    return value


def _input(raw: Any) -> list[dict[str, Any]]:
    """Native messages for ``input``: a function call joins the assistant message before it,
    and a reasoning item's text becomes the thinking of the next assistant message."""
    if raw is None or isinstance(raw, str):
        return [{"role": "user", "content": raw}] if raw else []
    if not isinstance(raw, list):
        raise _bad("input must be a string or array")
    messages: list[dict[str, Any]] = []
    thinking = ""
    for position, item in enumerate(raw):
        where = f"input[{position}]"
        if not isinstance(item, dict):
            raise _bad(f"{where}: input item must be an object")
        kind = item.get("type") or ("message" if item.get("role") else None)
        if kind == "reasoning":
            thinking = str(item.get("encrypted_content") or "")
        elif kind == "message":
            content, images = _content(where, item.get("content"))
            role = item.get("role") or "user"
            if role not in _ROLES:
                raise _bad(f'{where}: role must be "user", "assistant", "system" or "developer"')
            message: dict[str, Any] = {"role": "system" if role == "developer" else role,
                                       "content": content}
            if images:
                message["images"] = images
            if role == "assistant" and thinking:
                message["thinking"], thinking = thinking, ""
            messages.append(message)
        elif kind == "function_call":
            call = {"id": str(item.get("call_id") or ""), "function": {
                "name": str(item.get("name") or ""),
                "arguments": _arguments(item.get("arguments"))}}
            if not messages or messages[-1]["role"] != "assistant":
                messages.append({"role": "assistant", "content": ""})
            messages[-1].setdefault("tool_calls", []).append(call)
            if thinking:
                messages[-1]["thinking"], thinking = thinking, ""
        elif kind == "function_call_output":
            output, images = _content(where, item.get("output"))
            message = {"role": "tool", "content": output,
                       "tool_call_id": str(item.get("call_id") or "")}
            if images:
                message["images"] = images
            messages.append(message)
        elif kind is None:
            raise _bad(f"{where}: input item missing required 'type' field")
        else:
            raise _bad(f"{where}: unknown input item type: {json.dumps(kind)}")
    if thinking:
        messages.append({"role": "assistant", "content": "", "thinking": thinking})
    return messages


def _tools(raw: Any) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        raise _bad("tools must be a list of objects")
    return [{"type": tool.get("type", "function"), "function": {
        "name": tool.get("name"), "description": tool.get("description") or "",
        "parameters": tool.get("parameters")}} for tool in raw]


def _tool_choice(raw: Any) -> Any:
    if raw in ("none", "auto", "required"):
        return raw
    if isinstance(raw, dict) and raw.get("type") == "function" and raw.get("name"):
        return {"type": "function", "function": {"name": raw["name"]}}
    raise _bad('tool_choice must be "none", "auto", "required" or '
               '{"type": "function", "name": ...}')


def _format(text: Any) -> Any:
    spec = text.get("format") if isinstance(text, dict) else None
    if not isinstance(spec, dict):
        return None
    kind = spec.get("type")
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        if not isinstance(spec.get("schema"), dict):
            raise _bad("text.format json_schema needs a schema object")
        return spec["schema"]
    return None


def to_chat_request(body: dict[str, Any]) -> dict[str, Any]:
    """The native ``/api/chat`` body for a Responses request; a defect is a 400 naming it."""
    if body.get("background") or body.get("conversation") is not None:
        raise _bad("background and conversation are not supported")
    messages = _input(body.get("input"))
    if not messages:  # the native would only load the model
        raise _bad("input is required")
    if body.get("instructions"):
        messages.insert(0, {"role": "system", "content": str(body["instructions"])})
    options: dict[str, Any] = {
        "temperature": 1.0 if body.get("temperature") is None else body["temperature"]}
    if body.get("top_p") is not None:
        options["top_p"] = body["top_p"]
    if body.get("max_output_tokens") is not None:
        options["num_predict"] = body["max_output_tokens"]
    native: dict[str, Any] = {"model": str(body.get("model") or ""), "messages": messages,
                              "options": options, "stream": body.get("stream") is True}
    tools = _tools(body.get("tools"))
    if tools:
        native["tools"] = tools
        if body.get("tool_choice") is not None:
            native["tool_choice"] = _tool_choice(body["tool_choice"])
    response_format = _format(body.get("text"))
    if response_format is not None:
        native["format"] = response_format
    effort = _object(body.get("reasoning")).get("effort")
    if effort is not None and not isinstance(effort, str):
        raise _bad("reasoning.effort must be a string")
    think = think_from_effort(body)
    if think is not None:
        native["think"] = think
    return native


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _envelope(body: dict[str, Any], ident: str, status: str, output: list[dict[str, Any]],
             usage: dict[str, Any] | None) -> dict[str, Any]:
    """The ``response`` object around ``output``: the request's settings echoed, Ollama's
    defaults for what it does not support."""
    reasoning = _object(body.get("reasoning"))
    text = _object(body.get("text"))
    return {
        "id": ident, "object": "response", "created_at": int(time.time()),
        "completed_at": int(time.time()) if status == "completed" else None,
        "status": status, "incomplete_details": None, "model": str(body.get("model") or ""),
        "previous_response_id": None, "instructions": body.get("instructions") or None,
        "output": output, "error": None, "tools": body.get("tools") or [],
        "tool_choice": body.get("tool_choice") or "auto",
        "truncation": body.get("truncation") or "disabled", "parallel_tool_calls": True,
        "text": {"format": text.get("format") or {"type": "text"}},
        "top_p": 1.0 if body.get("top_p") is None else body["top_p"],
        "presence_penalty": 0, "frequency_penalty": 0, "top_logprobs": 0,
        "temperature": 1.0 if body.get("temperature") is None else body["temperature"],
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")}
        if reasoning.get("effort") or reasoning.get("summary") else None,
        "usage": usage, "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": None, "store": False, "background": False,
        "service_tier": "default", "metadata": {}, "safety_identifier": None,
        "prompt_cache_key": None}


def _usage(final: dict[str, Any]) -> dict[str, Any]:
    prompt, completion = int(final.get("prompt_eval_count", 0)), int(final.get("eval_count", 0))
    return {"input_tokens": prompt, "output_tokens": completion,
            "total_tokens": prompt + completion, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0}}


def _reasoning_item(ident: str, thinking: str) -> dict[str, Any]:
    return {"id": ident, "type": "reasoning",
            "summary": [{"type": "summary_text", "text": thinking}],
            "encrypted_content": thinking}


def _message_item(ident: str, text: str, status: str) -> dict[str, Any]:
    return {"id": ident, "type": "message", "status": status, "role": "assistant",
            "content": [_text_part(text)] if status == "completed" else []}


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _call_item(ident: str, call: dict[str, Any], status: str) -> dict[str, Any]:
    function = call.get("function") or {}
    return {"id": ident, "type": "function_call", "status": status, "call_id": call.get("id"),
            "name": function.get("name"),
            "arguments": json.dumps(function.get("arguments") or {})
            if status == "completed" else ""}


class Ids:
    """The ids of one response and its items (Ollama's ``resp_``/``msg_`` plus a number)."""

    def __init__(self) -> None:
        self.response = f"resp_{random.randrange(999999)}"
        self.message = f"msg_{random.randrange(999999)}"
        self.reasoning = f"rs_{self.response}"

    def call(self, position: int) -> str:
        return f"fc_{self.response}_{position}"


def to_response(final: dict[str, Any], body: dict[str, Any], ids: Ids) -> dict[str, Any]:
    """The ``response`` object for a native non-streamed answer: reasoning, then the message
    (always, when there is no tool call), then one ``function_call`` item per call."""
    message = final.get("message") or {}
    calls = message.get("tool_calls") or []
    output: list[dict[str, Any]] = []
    if message.get("thinking"):
        output.append(_reasoning_item(ids.reasoning, message["thinking"]))
    if message.get("content") or not calls:
        output.append(_message_item(ids.message, message.get("content") or "", "completed"))
    output += [_call_item(ids.call(i), call, "completed") for i, call in enumerate(calls)]
    return _envelope(body, ids.response, "completed", output, _usage(final))


class ResponseEvents:
    """Native stream chunks to Responses events, numbered by ``sequence_number``; the output
    items open and close in order (reasoning, message, function calls)."""

    def __init__(self, body: dict[str, Any], ids: Ids) -> None:
        self.body = body
        self.ids = ids
        self.sequence = 0
        self.started = False
        self.output: list[dict[str, Any]] = []
        self.thinking: str | None = None   # open reasoning item's text
        self.text: str | None = None       # open message item's text
        self.calls = 0

    def _event(self, name: str, **data: Any) -> Event:
        event = {"type": name, "sequence_number": self.sequence, **data}
        self.sequence += 1
        return name, event

    def _close_reasoning(self) -> list[Event]:
        if self.thinking is None:
            return []
        item = _reasoning_item(self.ids.reasoning, self.thinking)
        index, self.thinking = len(self.output), None
        self.output.append(item)
        return [self._event("response.reasoning_summary_text.done", item_id=item["id"],
                            output_index=index, summary_index=0,
                            text=item["summary"][0]["text"]),
                self._event("response.output_item.done", output_index=index, item=item)]

    def _close_message(self) -> list[Event]:
        if self.text is None:
            return []
        item = _message_item(self.ids.message, self.text, "completed")
        index, self.text = len(self.output), None
        self.output.append(item)
        where = {"item_id": item["id"], "output_index": index, "content_index": 0}
        return [self._event("response.output_text.done", **where, text=item["content"][0]["text"],
                            logprobs=[]),
                self._event("response.content_part.done", **where, part=item["content"][0]),
                self._event("response.output_item.done", output_index=index, item=item)]

    def _thinking(self, delta: str) -> list[Event]:
        events = []
        if self.thinking is None:
            self.thinking = ""
            events.append(self._event(
                "response.output_item.added", output_index=len(self.output),
                item={"id": self.ids.reasoning, "type": "reasoning", "summary": []}))
        self.thinking += delta
        events.append(self._event("response.reasoning_summary_text.delta",
                                  item_id=self.ids.reasoning, output_index=len(self.output),
                                  summary_index=0, delta=delta))
        return events

    def _content(self, delta: str) -> list[Event]:
        events = self._close_reasoning()
        where = {"item_id": self.ids.message, "output_index": len(self.output),
                 "content_index": 0}
        if self.text is None:
            self.text = ""
            events += [self._event("response.output_item.added", output_index=len(self.output),
                                   item=_message_item(self.ids.message, "", "in_progress")),
                       self._event("response.content_part.added", **where,
                                   part=_text_part(""))]
        self.text += delta
        events.append(self._event("response.output_text.delta", **where, delta=delta,
                                  logprobs=[]))
        return events

    def _call(self, call: dict[str, Any]) -> list[Event]:
        events = self._close_reasoning() + self._close_message()
        done = _call_item(self.ids.call(self.calls), call, "completed")
        index = len(self.output)
        self.calls += 1
        self.output.append(done)
        where = {"item_id": done["id"], "output_index": index}
        events.append(self._event("response.output_item.added", output_index=index,
                                  item=_call_item(done["id"], call, "in_progress")))
        if done["arguments"]:
            events.append(self._event("response.function_call_arguments.delta", **where,
                                      delta=done["arguments"]))
        return [*events,
                self._event("response.function_call_arguments.done", **where,
                            arguments=done["arguments"]),
                self._event("response.output_item.done", output_index=index, item=done)]

    def _lifecycle(self, name: str, status: str, **extra: Any) -> Event:
        return self._event(name, response=_envelope(self.body, self.ids.response, status,
                                                   list(self.output), None) | extra)

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        if not self.started:
            self.started = True
            events += [self._lifecycle("response.created", "in_progress"),
                       self._lifecycle("response.in_progress", "in_progress")]
        message = chunk.get("message") or {}
        if message.get("thinking"):
            events += self._thinking(message["thinking"])
        for call in message.get("tool_calls") or ():
            events += self._call(call)
        if message.get("content") and not self.calls:  # Ollama drops text after a call
            events += self._content(message["content"])
        if chunk.get("done"):
            events += self._close_reasoning() + self._close_message()
            events.append(self._lifecycle("response.completed", "completed",
                                          usage=_usage(chunk)))
        return events

    def failed(self, message: str) -> list[Event]:
        """A native error in mid-stream: ``response.failed`` with the reason."""
        return [self._lifecycle("response.failed", "failed",
                                error={"code": "server_error", "message": message})]


def _event(name: str, data: dict[str, Any]) -> bytes:
    """One named SSE event (the Responses stream names each event)."""
    return f"event: {name}\n".encode() + sse(data)


@openai_errors
async def create_response(request: Request) -> Response:
    """``POST /v1/responses``: one ``response`` object, or its events with ``stream: true``."""
    body = await request_body(request)
    if body.get("previous_response_id"):
        return JSONResponse(PREVIOUS_NOT_FOUND, status_code=404)
    native = to_chat_request(body)
    answer = await inference.chat(native_request(request, native))
    ids = Ids()
    if not native["stream"]:
        (final,) = [item async for item in native_lines(answer)]
        return JSONResponse(to_response(final, body, ids))

    converter = ResponseEvents(body, ids)

    async def events() -> AsyncIterator[bytes]:
        async for item in native_lines(answer):
            if "error" in item:
                for name, data in converter.failed(str(item["error"])):
                    yield _event(name, data)
                return
            for name, data in converter.feed(item):
                yield _event(name, data)

    return StreamingResponse(events(), media_type=SSE, headers={"Cache-Control": "no-cache"})
