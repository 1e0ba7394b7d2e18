"""The /v1 layer with the official `openai` client against the real server and SmolLM2."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
import requests

from ollamactl.runtime.store.bundled import import_bundled
from tests.integration.server_process import SMOLLM2, Server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

openai = pytest.importorskip("openai")


# `smollm2:135m` as `pull` imports it, with the template that shows tools (conftest reads it)
SERVER_STOCK = functools.partial(import_bundled, name=SMOLLM2)


STOCK_TOOL: Any = {"type": "function", "function": {
    "name": "get_current_stock_price", "description": "Get the current price for a stock",
    "parameters": {"type": "object", "properties": {"ticker_symbol": {
        "type": "string", "description": "The ticker symbol of the stock"}},
        "required": ["ticker_symbol"]}}}
QUESTION: Any = [{"role": "user", "content": "What is the current price of MSFT"}]
PERSON = {"type": "object", "properties": {"name": {"type": "string"},
                                           "age": {"type": "integer"}},
          "required": ["name", "age"]}


@pytest.fixture
def client(server: Server) -> Iterator[Any]:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="ollama", max_retries=0) as official:
        yield official


def test_required_tool_choice_returns_the_seed_call(client: Any) -> None:
    completion = client.chat.completions.create(
        model=SMOLLM2, messages=QUESTION, tools=[STOCK_TOOL], tool_choice="required",
        temperature=0, max_tokens=48)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_current_stock_price"
    assert isinstance(call.function.arguments, str)
    assert json.loads(call.function.arguments) == {"ticker_symbol": "MSFT"}
    assert completion.id.startswith("chatcmpl-")
    assert completion.usage.completion_tokens > 0
    assert completion.usage.total_tokens == (completion.usage.prompt_tokens
                                             + completion.usage.completion_tokens)


def test_named_tool_choice_and_tool_results_in_history(client: Any) -> None:
    named = {"type": "function", "function": {"name": "get_current_stock_price"}}
    first = client.chat.completions.create(model=SMOLLM2, messages=QUESTION, tools=[STOCK_TOOL],
                                           tool_choice=named, temperature=0, max_tokens=48)
    call = first.choices[0].message.tool_calls[0]
    jsonschema.validate(json.loads(call.function.arguments),
                        STOCK_TOOL["function"]["parameters"])
    follow = [*QUESTION, first.choices[0].message.model_dump(exclude_none=True),
              {"role": "tool", "tool_call_id": call.id, "content": "427.46"}]
    second = client.chat.completions.create(model=SMOLLM2, messages=follow, tools=[STOCK_TOOL],
                                            tool_choice="none", temperature=0, max_tokens=16)
    assert second.choices[0].message.content
    assert not second.choices[0].message.tool_calls


def test_streaming_chat_with_usage_ends_in_done(server: Server, client: Any) -> None:
    chunks = list(client.chat.completions.create(
        model=SMOLLM2, messages=[{"role": "user", "content": "Say hi"}], max_tokens=8,
        stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({c.created for c in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and
              c.choices[0].finish_reason]
    assert finish == ["length"] or finish == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    raw = requests.post(f"{server.url}/v1/chat/completions", json={
        "model": SMOLLM2, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4,
        "stream": True}, timeout=60)
    assert raw.headers["content-type"].startswith("text/event-stream")
    events = [line for line in raw.text.split("\n\n") if line]
    assert events[-1] == "data: [DONE]"
    assert all(e.startswith("data: ") for e in events)


@pytest.mark.parametrize("stream", [False, True])
def test_response_format_json_schema_validates(client: Any, stream: bool) -> None:
    response_format = {"type": "json_schema", "json_schema": {"name": "person",
                                                               "schema": PERSON}}
    kwargs: dict[str, Any] = dict(model=SMOLLM2, temperature=0, max_tokens=64,
                                  messages=[{"role": "user", "content": "A person as JSON"}],
                                  response_format=response_format)
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in
                       client.chat.completions.create(stream=True, **kwargs) if c.choices)
    else:
        text = client.chat.completions.create(**kwargs).choices[0].message.content
    jsonschema.validate(json.loads(text), PERSON)


def test_json_object_response_format(client: Any) -> None:
    reply = client.chat.completions.create(
        model=SMOLLM2, temperature=0, max_tokens=64, response_format={"type": "json_object"},
        messages=[{"role": "user", "content": 'Reply with {"ok": true}'}])
    assert isinstance(json.loads(reply.choices[0].message.content), dict)


def test_completions_plain_and_streaming(client: Any) -> None:
    done = client.completions.create(model=SMOLLM2, prompt="The sky is", max_tokens=6,
                                     temperature=0)
    assert done.object == "text_completion" and done.id.startswith("cmpl-")
    assert done.choices[0].text and done.choices[0].finish_reason in ("stop", "length")
    chunks = list(client.completions.create(model=SMOLLM2, prompt="The sky is", max_tokens=6,
                                            temperature=0, stream=True,
                                            stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == done.choices[0].text
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


def test_models_list_and_show(server: Server, client: Any) -> None:
    (model,) = client.models.list().data
    assert model.id == SMOLLM2 and model.owned_by == "library" and model.created > 0
    assert client.models.retrieve(SMOLLM2).id == SMOLLM2
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("missing:latest")
    body = requests.get(f"{server.url}/v1/models/missing:latest", timeout=10).json()
    assert body == {"error": {"message": "model 'missing:latest' not found",
                              "type": "not_found_error", "param": None, "code": None}}


@pytest.mark.parametrize(("body", "needle"), [
    ({"messages": []}, "[] is too short - 'messages'"),
    ({"messages": QUESTION, "response_format": {"type": "json_schema", "json_schema": {
        "schema": {"type": 5}}}}, "invalid format"),
    ({"messages": QUESTION, "tools": [{"type": "function", "function": {
        "name": "f", "parameters": {"type": "object", "properties": 3}}}]},
     "not a valid JSON Schema"),
    ({"messages": [{"role": "assistant", "content": "", "tool_calls": [{
        "id": "call_1", "type": "function", "function": {"name": "f",
                                                        "arguments": "{oops"}}]}]},
     "invalid tool call arguments"),
])
def test_bad_requests_get_openai_errors(server: Server, body: dict[str, Any], needle: str) -> None:
    reply = requests.post(f"{server.url}/v1/chat/completions", json={"model": SMOLLM2, **body},
                          timeout=30)
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert needle in error["message"] and error["type"] == "invalid_request_error"


def test_real_server_guards_origin_and_host(server: Server) -> None:
    allowed = requests.post(f"{server.url}/v1/chat/completions", headers={
        "Origin": "http://localhost:3000"}, json={"model": SMOLLM2, "messages": []}, timeout=10)
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:3000"
    evil = requests.get(f"{server.url}/api/tags", headers={"Origin": "https://evil.example"},
                        timeout=10)
    assert evil.status_code == 403
    rebound = requests.get(f"{server.url}/api/tags", headers={"Host": "evil.example"}, timeout=10)
    assert rebound.status_code == 403 and rebound.content == b""
    assert requests.get(f"{server.url}/api/tags", timeout=10).status_code == 200
