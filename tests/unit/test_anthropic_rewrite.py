"""The Messages rewrite without a server: Anthropic requests to native chat bodies, native answers
and stream chunks to Anthropic messages and events (the shapes Ollama's anthropic package
makes)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from ollamactl.runtime.http.anthropic import (
    MessageEvents,
    error_body,
    estimate_input_tokens,
    stop_reason,
    to_chat_request,
    to_message,
)
from ollamactl.runtime.http.requests import ApiError

PNG = base64.b64encode(b"\x89PNG fake").decode()
WEATHER = {"name": "get_weather", "description": "Weather for a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                            "required": ["city"]}}


def _request(**fields: Any) -> dict[str, Any]:
    return {"model": "smollm2:135m", "max_tokens": 16,
            "messages": [{"role": "user", "content": "Hi"}], **fields}


def test_plain_request_maps_sampling_and_stream() -> None:
    native = to_chat_request(_request(system="Be brief.", temperature=0, top_p=0.5, top_k=3,
                                      stop_sequences=["END"], stream=True))
    assert native == {"model": "smollm2:135m", "stream": True,
                      "messages": [{"role": "system", "content": "Be brief."},
                                   {"role": "user", "content": "Hi"}],
                      "options": {"num_predict": 16, "temperature": 0, "top_p": 0.5,
                                  "top_k": 3, "stop": ["END"]}}


def test_system_blocks_and_text_blocks_are_concatenated() -> None:
    native = to_chat_request(_request(
        system=[{"type": "text", "text": "A."}, {"type": "text", "text": "B."}],
        messages=[{"role": "user", "content": [{"type": "text", "text": "one "},
                                               {"type": "text", "text": "two"}]}]))
    assert native["messages"] == [{"role": "system", "content": "A.B."},
                                  {"role": "user", "content": "one two"}]


def test_tool_round_trip_history() -> None:
    native = to_chat_request(_request(tools=[WEATHER], tool_choice={"type": "any"}, messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "need a tool", "signature": "x"},
            {"type": "tool_use", "id": "call_1", "name": "get_weather",
             "input": {"city": "Paris"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "call_1",
             "content": [{"type": "text", "text": "18C"}]},
            {"type": "text", "text": "And tomorrow?"}]}]))
    assert native["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather for a city",
        "parameters": WEATHER["input_schema"]}}]
    assert native["tool_choice"] == "required"
    assert native["messages"][1:] == [
        {"role": "assistant", "content": "", "thinking": "need a tool", "tool_calls": [
            {"id": "call_1", "function": {"name": "get_weather",
                                          "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "18C", "tool_call_id": "call_1", "tool_name": "get_weather"},
        {"role": "user", "content": "And tomorrow?"}]


@pytest.mark.parametrize(("choice", "native"), [
    ({"type": "auto"}, "auto"), ({"type": "none"}, "none"),
    ({"type": "tool", "name": "get_weather"},
     {"type": "function", "function": {"name": "get_weather"}})])
def test_tool_choice_maps_onto_the_native_one(choice: Any, native: Any) -> None:
    assert to_chat_request(_request(tools=[WEATHER], tool_choice=choice))["tool_choice"] == native


def test_images_and_thinking() -> None:
    native = to_chat_request(_request(thinking={"type": "enabled", "budget_tokens": 1024},
                                      messages=[{"role": "user", "content": [
                                          {"type": "image", "source": {
                                              "type": "base64", "media_type": "image/png",
                                              "data": PNG}},
                                          {"type": "text", "text": "What is it?"}]}]))
    assert native["messages"] == [{"role": "user", "content": "What is it?", "images": [PNG]}]
    assert native["think"] is True
    assert to_chat_request(_request(thinking={"type": "disabled"}))["think"] is False
    assert to_chat_request(_request(output_config={"effort": "xhigh"}))["think"] == "high"
    assert "think" not in to_chat_request(_request())


@pytest.mark.parametrize(("fields", "needle"), [
    ({"model": ""}, "model is required"),
    ({"max_tokens": 0}, "max_tokens is required and must be positive"),
    ({"max_tokens": True}, "max_tokens is required and must be positive"),
    ({"messages": []}, "messages is required"),
    ({"messages": [{"role": "user", "content": ""}]}, "messages have no content"),
    ({"messages": [{"role": "robot", "content": "x"}]}, 'must be "user" or "assistant"'),
    ({"messages": [{"role": "user", "content": 5}]}, "must be a string or a list"),
    ({"messages": [{"role": "assistant", "content": [
        {"type": "tool_use", "name": "f", "input": {}}]}]}, "missing required 'id'"),
    ({"messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "url", "url": "http://x"}}]}]},
     "Only base64 images are supported"),
    ({"messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "data": "%%%"}}]}]},
     "invalid base64 image data"),
    ({"tools": [{"description": "no name"}]}, "tools[0].name is required"),
    ({"tools": [{"name": "f", "input_schema": "x"}]}, "invalid input_schema"),
    ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "web search"),
    ({"tools": [WEATHER], "tool_choice": {"type": "sometimes"}}, "tool_choice must be"),
    ({"system": 3}, "system must be"),
])
def test_bad_requests_are_400s(fields: dict[str, Any], needle: str) -> None:
    with pytest.raises(ApiError) as caught:
        to_chat_request(_request(**fields))
    assert caught.value.status == 400 and needle in caught.value.message


def test_error_bodies_take_anthropic_types() -> None:
    body = error_body(404, "model 'x' not found")
    assert body["type"] == "error" and body["request_id"].startswith("req_")
    assert body["error"] == {"type": "not_found_error", "message": "model 'x' not found"}
    assert error_body(400, "bad")["error"]["type"] == "invalid_request_error"
    assert error_body(503, "busy")["error"]["type"] == "overloaded_error"
    assert error_body(500, "boom")["error"]["type"] == "api_error"


@pytest.mark.parametrize(("reason", "calls", "expected"), [
    ("stop", False, "end_turn"), ("length", False, "max_tokens"), ("stop", True, "tool_use"),
    ("other", False, "stop_sequence"), (None, False, None)])
def test_stop_reasons(reason: str | None, calls: bool, expected: str | None) -> None:
    assert stop_reason(reason, calls) == expected


def test_final_answer_becomes_a_message() -> None:
    final = {"model": "m", "done": True, "done_reason": "stop", "prompt_eval_count": 9,
             "eval_count": 4, "message": {
                 "role": "assistant", "content": "Let me check.", "thinking": "hmm",
                 "tool_calls": [{"id": "call_a", "function": {
                     "index": 0, "name": "get_weather", "arguments": {"city": "Oslo"}}}]}}
    message = to_message(final, "msg_1", "smollm2:135m")
    assert message == {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "smollm2:135m",
        "content": [{"type": "thinking", "thinking": "hmm"},
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "call_a", "name": "get_weather",
                     "input": {"city": "Oslo"}}],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 9, "output_tokens": 4}}


def _chunk(**message: Any) -> dict[str, Any]:
    return {"model": "m", "done": False, "message": {"role": "assistant", "content": "",
                                                      **message}}


def test_stream_events_number_blocks_in_order() -> None:
    converter = MessageEvents("msg_1", "smollm2:135m", 7)
    events = []
    for chunk in (_chunk(thinking="Let me "), _chunk(thinking="see."), _chunk(content="Hi"),
                  _chunk(content=" there"),
                  _chunk(tool_calls=[{"id": "call_a", "function": {
                      "name": "get_weather", "arguments": {"city": "Oslo"}}}]),
                  {"model": "m", "done": True, "done_reason": "stop", "prompt_eval_count": 9,
                   "eval_count": 5, "message": {"role": "assistant", "content": ""}}):
        events += converter.feed(chunk)
    names = [name for name, _ in events]
    assert names == ["message_start",
                     "content_block_start", "content_block_delta", "content_block_delta",
                     "content_block_stop",
                     "content_block_start", "content_block_delta", "content_block_delta",
                     "content_block_stop",
                     "content_block_start", "content_block_delta", "content_block_stop",
                     "message_delta", "message_stop"]
    assert all(data["type"] == name for name, data in events)
    start = events[0][1]["message"]
    assert start["usage"] == {"input_tokens": 7, "output_tokens": 0} and start["content"] == []
    blocks = [data for name, data in events if name == "content_block_start"]
    assert [(b["index"], b["content_block"]) for b in blocks] == [
        (0, {"type": "thinking", "thinking": ""}), (1, {"type": "text", "text": ""}),
        (2, {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {}})]
    deltas = [data["delta"] for name, data in events if name == "content_block_delta"]
    assert deltas[0] == {"type": "thinking_delta", "thinking": "Let me "}
    assert deltas[2] == {"type": "text_delta", "text": "Hi"}
    assert deltas[4]["type"] == "input_json_delta"
    assert json.loads(deltas[4]["partial_json"]) == {"city": "Oslo"}
    assert events[-2][1] == {"type": "message_delta",
                             "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                             "usage": {"input_tokens": 9, "output_tokens": 5}}


def test_stream_of_text_that_hits_the_limit() -> None:
    converter = MessageEvents("msg_1", "m", 3)
    events = converter.feed(_chunk(content="Hello")) + converter.feed(
        {"done": True, "done_reason": "length", "prompt_eval_count": 4, "eval_count": 1,
         "message": {"role": "assistant", "content": ""}})
    assert [name for name, _ in events] == ["message_start", "content_block_start",
                                            "content_block_delta", "content_block_stop",
                                            "message_delta", "message_stop"]
    assert events[-2][1]["delta"]["stop_reason"] == "max_tokens"


def test_input_token_estimate_is_a_quarter_of_the_characters() -> None:
    assert estimate_input_tokens({"messages": []}) == 1
    body = _request(system="x" * 400)
    assert estimate_input_tokens(body) > 100
