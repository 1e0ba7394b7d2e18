"""/v1/responses with the official `openai` client against the real server and SmolLM2: text, a
function call and its output, streaming events, errors in OpenAI's shape."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from ollamactl.runtime.store.bundled import import_bundled
from tests.integration.server_process import SMOLLM2, Server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

openai = pytest.importorskip("openai")


# `smollm2:135m` as `pull` imports it, with the template that shows tools
SERVER_STOCK = functools.partial(import_bundled, name=SMOLLM2)

WEATHER: Any = {"type": "function", "name": "get_weather",
                "description": "Get the current weather in a city", "strict": False,
                "parameters": {"type": "object", "properties": {"city": {
                    "type": "string", "description": "The city"}}, "required": ["city"]}}
ASK = "What is the weather in Paris?"
CALL_TOKENS = 24  # the forced call is 22 tokens of SmolLM2's output: 16 would cut it


@pytest.fixture
def client(server: Server) -> Iterator[Any]:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0) as official:
        yield official


def test_text_response(client: Any) -> None:
    response = client.responses.create(model=SMOLLM2, input="Say hi", max_output_tokens=8,
                                       temperature=0, instructions="You are brief.")
    assert response.id.startswith("resp_") and response.object == "response"
    assert response.status == "completed" and response.model == SMOLLM2
    (item,) = response.output
    assert item.type == "message" and item.role == "assistant"
    assert response.output_text and item.content[0].type == "output_text"
    assert 0 < response.usage.output_tokens <= 8
    assert response.usage.total_tokens == (response.usage.input_tokens
                                           + response.usage.output_tokens)


def test_function_call_then_its_output(client: Any) -> None:
    first = client.responses.create(model=SMOLLM2, input=ASK, tools=[WEATHER],
                                    tool_choice="required", temperature=0,
                                    max_output_tokens=CALL_TOKENS)
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and call.call_id.startswith("call_")
    assert json.loads(call.arguments) == {"city": "Paris"}
    follow = [{"role": "user", "content": ASK}, call.model_dump(exclude_none=True),
              {"type": "function_call_output", "call_id": call.call_id,
               "output": "18 degrees and sunny"}]
    second = client.responses.create(model=SMOLLM2, input=follow, tools=[WEATHER],
                                     tool_choice="none", temperature=0, max_output_tokens=8)
    assert [item.type for item in second.output] == ["message"] and second.output_text


def test_streamed_events(client: Any) -> None:
    events = list(client.responses.create(model=SMOLLM2, input="Say hi", max_output_tokens=8,
                                          temperature=0, stream=True))
    kinds = [event.type for event in events]
    assert kinds[:4] == ["response.created", "response.in_progress",
                         "response.output_item.added", "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.completed"]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    text = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    completed = events[-1].response
    assert text and completed.output_text == text and completed.usage.output_tokens > 0


def test_streamed_function_call(client: Any) -> None:
    with client.responses.stream(model=SMOLLM2, input=ASK, tools=[WEATHER],
                                 tool_choice="required", temperature=0,
                                 max_output_tokens=CALL_TOKENS) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.done" in kinds
    (call,) = final.output
    assert call.type == "function_call" and json.loads(call.arguments) == {"city": "Paris"}


def test_errors_take_openai_shape(server: Server, client: Any) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.responses.create(model="missing:latest", input="hi", max_output_tokens=4)
    assert missing.value.body["message"] == "model 'missing:latest' not found"
    with pytest.raises(openai.NotFoundError) as previous:
        client.responses.create(model=SMOLLM2, input="hi", previous_response_id="resp_1")
    assert previous.value.code == "previous_response_not_found"
    reply = requests.post(f"{server.url}/v1/responses", timeout=10, json={
        "model": SMOLLM2, "input": [{"role": "user", "content": [{"type": "input_audio"}]}]})
    assert reply.status_code == 400
    assert reply.json()["error"]["type"] == "invalid_request_error"
    assert "unknown content type: input_audio" in reply.json()["error"]["message"]
