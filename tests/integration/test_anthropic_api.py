"""/v1/messages with the official `anthropic` client against the real server and SmolLM2: text,
a tool call and its result, streaming events, errors in Anthropic's shape."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from ollamactl.runtime.store.bundled import import_bundled
from tests.integration.server_process import SMOLLM2, Server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

anthropic = pytest.importorskip("anthropic")


# `smollm2:135m` as `pull` imports it, with the template that shows tools
SERVER_STOCK = functools.partial(import_bundled, name=SMOLLM2)

WEATHER: Any = {"name": "get_weather", "description": "Get the current weather in a city",
                "input_schema": {"type": "object", "properties": {"city": {
                    "type": "string", "description": "The city"}}, "required": ["city"]}}
ASK: Any = [{"role": "user", "content": "What is the weather in Paris?"}]
HI: Any = [{"role": "user", "content": "Say hi"}]
CALL_TOKENS = 24  # the forced call is 22 tokens of SmolLM2's output: 16 would cut it
GREEDY = {"temperature": 0}  # the client (2.x) no longer has sampling arguments of its own


@pytest.fixture
def client(server: Server) -> Iterator[Any]:
    with anthropic.Anthropic(base_url=server.url, api_key="x", max_retries=0) as official:
        yield official


def test_text_message(client: Any) -> None:
    message = client.messages.create(model=SMOLLM2, max_tokens=8, messages=HI, extra_body=GREEDY,
                                     system="You are brief.")
    assert message.id.startswith("msg_") and message.type == "message"
    assert message.role == "assistant" and message.model == SMOLLM2
    (block,) = message.content
    assert block.type == "text" and block.text
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert 0 < message.usage.output_tokens <= 8 and message.usage.input_tokens > 0


def test_forced_tool_use_then_its_result(client: Any) -> None:
    first = client.messages.create(model=SMOLLM2, max_tokens=CALL_TOKENS, messages=ASK,
                                   tools=[WEATHER], tool_choice={"type": "any"},
                                   extra_body=GREEDY)
    assert first.stop_reason == "tool_use"
    (call,) = [block for block in first.content if block.type == "tool_use"]
    assert call.name == "get_weather" and call.id.startswith("call_")
    assert call.input == {"city": "Paris"}
    said = [block.model_dump() for block in first.content]
    follow = [*ASK, {"role": "assistant", "content": said},
              {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                            "content": "18 degrees and sunny"}]}]
    second = client.messages.create(model=SMOLLM2, max_tokens=8, messages=follow,
                                    tools=[WEATHER], tool_choice={"type": "none"},
                                    extra_body=GREEDY)
    assert second.stop_reason in ("end_turn", "max_tokens")
    assert [block.type for block in second.content] == ["text"]


def test_streamed_text_matches_its_events(client: Any) -> None:
    with client.messages.stream(model=SMOLLM2, max_tokens=8, messages=HI,
                                extra_body=GREEDY) as stream:
        events = list(stream)
        final = stream.get_final_message()
    kinds = [event.type for event in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert kinds[1] == "content_block_start" and "message_delta" in kinds
    deltas = "".join(event.delta.text for event in events if event.type == "content_block_delta")
    assert deltas and final.content[0].text == deltas
    assert final.stop_reason in ("end_turn", "max_tokens") and final.usage.output_tokens > 0


def test_streamed_tool_use_accumulates_its_input(client: Any) -> None:
    with client.messages.stream(model=SMOLLM2, max_tokens=CALL_TOKENS, messages=ASK,
                                tools=[WEATHER], tool_choice={"type": "any"},
                                extra_body=GREEDY) as stream:
        final = stream.get_final_message()
    (call,) = [block for block in final.content if block.type == "tool_use"]
    assert call.name == "get_weather" and call.input == {"city": "Paris"}
    assert final.stop_reason == "tool_use"


def test_thinking_asked_of_a_model_that_cannot_think_is_dropped(client: Any) -> None:
    message = client.messages.create(model=SMOLLM2, max_tokens=4, messages=HI,
                                     thinking={"type": "enabled", "budget_tokens": 1024})
    assert [block.type for block in message.content] == ["text"]


def test_errors_take_anthropic_shape(server: Server, client: Any) -> None:
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="missing:latest", max_tokens=4, messages=HI)
    assert missing.value.body["error"] == {"type": "not_found_error",
                                           "message": "model 'missing:latest' not found"}
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model=SMOLLM2, max_tokens=0, messages=HI)
    reply = requests.post(f"{server.url}/v1/messages", data=b"{oops", timeout=10,
                          headers={"x-api-key": "x", "anthropic-version": "2023-06-01"})
    assert reply.status_code == 400
    body = reply.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "invalid JSON" in body["error"]["message"]
