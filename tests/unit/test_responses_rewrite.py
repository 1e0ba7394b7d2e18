"""The Responses rewrite without a server: Responses requests to native chat bodies, native
answers and stream chunks to ``response`` objects and events (the shapes Ollama's
``openai/responses.go`` makes)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ollamactl.runtime.http.openai import OpenAIError
from ollamactl.runtime.http.responses import Ids, ResponseEvents, to_chat_request, to_response

WEATHER = {"type": "function", "name": "get_weather", "description": "Weather for a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"]}}


def _request(**fields: Any) -> dict[str, Any]:
    return {"model": "smollm2:135m", "input": "Hi", **fields}


def test_string_input_with_instructions_and_options() -> None:
    native = to_chat_request(_request(instructions="Be brief.", max_output_tokens=8, top_p=0.5,
                                      stream=True, store=True, include=["x"]))
    assert native == {"model": "smollm2:135m", "stream": True,
                      "messages": [{"role": "system", "content": "Be brief."},
                                   {"role": "user", "content": "Hi"}],
                      "options": {"temperature": 1.0, "top_p": 0.5, "num_predict": 8}}


def test_items_history_with_function_call_and_output() -> None:
    native = to_chat_request(_request(tools=[WEATHER], tool_choice="required", input=[
        {"role": "developer", "content": "Use tools."},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "Weather "}, {"type": "input_text", "text": "now?"},
            {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "think"},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather",
         "arguments": '{"city": "Oslo"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
        {"role": "assistant", "content": [{"type": "output_text", "text": "It is 18C."}]}]))
    assert native["messages"] == [
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": "Weather now?", "images": ["AAAA"]},
        {"role": "assistant", "content": "", "thinking": "think", "tool_calls": [
            {"id": "call_1", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]},
        {"role": "tool", "content": "18C", "tool_call_id": "call_1"},
        {"role": "assistant", "content": "It is 18C."}]
    assert native["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather for a city",
        "parameters": WEATHER["parameters"]}}]
    assert native["tool_choice"] == "required"


def test_formats_and_reasoning() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert to_chat_request(_request(text={"format": {
        "type": "json_schema", "name": "x", "schema": schema}}))["format"] == schema
    assert to_chat_request(_request(text={"format": {"type": "json_object"}}))["format"] == "json"
    assert "format" not in to_chat_request(_request(text={"format": {"type": "text"}}))
    assert to_chat_request(_request(reasoning={"effort": "high"}))["think"] == "high"
    assert to_chat_request(_request(reasoning={"effort": "none"}))["think"] is False
    named = to_chat_request(_request(tools=[WEATHER],
                                     tool_choice={"type": "function", "name": "get_weather"}))
    assert named["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


@pytest.mark.parametrize(("fields", "needle"), [
    ({"input": 5}, "input must be a string or array"),
    ({"input": []}, "input is required"),
    ({"input": [{"role": "robot", "content": "x"}]}, "role must be"),
    ({"input": [{"content": "no type"}]}, "input[0]: input item missing required 'type' field"),
    ({"input": [{"type": "item_reference", "id": "x"}]}, 'unknown input item type: "item_'),
    ({"input": [{"role": "user", "content": [{"type": "input_audio"}]}]},
     "unknown content type: input_audio"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
     "file inputs are not currently supported"),
    ({"input": [{"role": "user", "content": [{"type": "input_image",
                                              "image_url": "https://x/y.png"}]}]},
     "invalid image input"),
    ({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{oops"}]},
     "failed to parse function call arguments"),
    ({"background": True}, "background and conversation are not supported"),
    ({"conversation": "conv_1"}, "background and conversation are not supported"),
    ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice must be"),
    ({"text": {"format": {"type": "json_schema", "name": "x"}}}, "needs a schema object"),
    ({"reasoning": {"effort": "enormous"}}, "invalid reasoning value"),
])
def test_bad_requests_are_400s(fields: dict[str, Any], needle: str) -> None:
    with pytest.raises(OpenAIError) as caught:
        to_chat_request(_request(**fields))
    assert caught.value.status == 400 and needle in caught.value.message


def _final(**message: Any) -> dict[str, Any]:
    return {"model": "m", "done": True, "done_reason": "stop", "prompt_eval_count": 9,
            "eval_count": 4, "message": {"role": "assistant", "content": "", **message}}


def test_text_answer_becomes_a_response() -> None:
    ids = Ids()
    body = _request(instructions="Be brief.", temperature=0)
    response = to_response(_final(content="Hello"), body, ids)
    assert response["id"] == ids.response and response["id"].startswith("resp_")
    assert response["object"] == "response" and response["status"] == "completed"
    assert response["model"] == "smollm2:135m" and response["instructions"] == "Be brief."
    assert response["temperature"] == 0 and response["store"] is False
    assert response["output"] == [{"id": ids.message, "type": "message", "status": "completed",
                                   "role": "assistant", "content": [{
                                       "type": "output_text", "text": "Hello",
                                       "annotations": [], "logprobs": []}]}]
    assert response["usage"]["input_tokens"] == 9 and response["usage"]["total_tokens"] == 13


def test_tool_call_answer_becomes_function_call_items() -> None:
    ids = Ids()
    response = to_response(_final(thinking="hmm", tool_calls=[{"id": "call_a", "function": {
        "index": 0, "name": "get_weather", "arguments": {"city": "Oslo"}}}]), _request(), ids)
    reasoning, call = response["output"]
    assert reasoning == {"id": ids.reasoning, "type": "reasoning",
                         "summary": [{"type": "summary_text", "text": "hmm"}],
                         "encrypted_content": "hmm"}
    assert call == {"id": ids.call(0), "type": "function_call", "status": "completed",
                    "call_id": "call_a", "name": "get_weather",
                    "arguments": json.dumps({"city": "Oslo"})}


def _chunk(**message: Any) -> dict[str, Any]:
    return {"model": "m", "done": False, "message": {"role": "assistant", "content": "",
                                                      **message}}


def _run(chunks: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    converter = ResponseEvents(_request(), Ids())
    events = []
    for chunk in chunks:
        events += converter.feed(chunk)
    return events


def test_text_stream_events() -> None:
    events = _run([_chunk(content="Hel"), _chunk(content="lo"), _final()])
    assert [name for name, _ in events] == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.content_part.added", "response.output_text.delta",
        "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.completed"]
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert all(data["type"] == name for name, data in events)
    assert events[0][1]["response"]["status"] == "in_progress"
    assert events[6][1]["text"] == "Hello"
    completed = events[-1][1]["response"]
    assert completed["status"] == "completed" and completed["usage"]["output_tokens"] == 4
    assert completed["output"][0]["content"][0]["text"] == "Hello"


def test_reasoning_then_tool_call_stream_events() -> None:
    events = _run([_chunk(thinking="hmm"),
                   _chunk(tool_calls=[{"id": "call_a", "function": {
                       "name": "get_weather", "arguments": {"city": "Oslo"}}}]),
                   _chunk(content="ignored after a call"), _final()])
    assert [name for name, _ in events] == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.reasoning_summary_text.delta", "response.reasoning_summary_text.done",
        "response.output_item.done", "response.output_item.added",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done", "response.completed"]
    added = events[6][1]
    assert added["output_index"] == 1
    assert added["item"]["status"] == "in_progress" and added["item"]["arguments"] == ""
    assert json.loads(events[8][1]["arguments"]) == {"city": "Oslo"}
    output = events[-1][1]["response"]["output"]
    assert [item["type"] for item in output] == ["reasoning", "function_call"]


def test_native_error_in_mid_stream_fails_the_response() -> None:
    converter = ResponseEvents(_request(), Ids())
    converter.feed(_chunk(content="Hi"))
    ((name, data),) = converter.failed("runner crashed")
    assert name == "response.failed" and data["response"]["status"] == "failed"
    assert data["response"]["error"] == {"code": "server_error", "message": "runner crashed"}
