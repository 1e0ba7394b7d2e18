"""Request bodies bound as Ollama's Go structs bind them: strict JSON types, Go's error texts,
null as unset, keys matched case-insensitively, unknown keys ignored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ollamactl.host import detect
from ollamactl.runtime.http.app import create_app
from ollamactl.runtime.http.binding import UnmarshalError, bind
from ollamactl.runtime.http.openapi import openapi_schema
from ollamactl.runtime.http.schemas import (
    BadRequest,
    ChatRequest,
    CreateRequest,
    GenerateRequest,
    Message,
    parse_body,
)
from ollamactl.settings import load_server_config


def refused(schema: type, body: str) -> str:
    with pytest.raises(BadRequest) as caught:
        parse_body(schema, json.loads(body))
    return str(caught.value)


@pytest.mark.parametrize(("body", "message"), [
    ('{"stream": "true"}', "json: cannot unmarshal string into Go struct field "
                           "GenerateRequest.stream of type bool"),
    ('{"raw": 1}', "json: cannot unmarshal number into Go struct field GenerateRequest.raw of "
                   "type bool"),
    ('{"prompt": 5}', "json: cannot unmarshal number into Go struct field GenerateRequest.prompt "
                      "of type string"),
    ('{"top_logprobs": 1.5}', "json: cannot unmarshal number 1.5 into Go struct field "
                              "GenerateRequest.top_logprobs of type int"),
    ('{"top_logprobs": true}', "json: cannot unmarshal bool into Go struct field "
                               "GenerateRequest.top_logprobs of type int"),
    ('{"top_logprobs": 99999999999999999999}', "json: cannot unmarshal number "
     "99999999999999999999 into Go struct field GenerateRequest.top_logprobs of type int"),
    ('{"context": "1,2"}', "json: cannot unmarshal string into Go struct field "
                           "GenerateRequest.context of type []int"),
    ('{"context": [1, "2"]}', "json: cannot unmarshal string into Go struct field "
                              "GenerateRequest.context of type int"),
    ('{"options": []}', "json: cannot unmarshal array into Go struct field "
                        "GenerateRequest.options of type map[string]interface {}"),
    ("[1, 2]", "json: cannot unmarshal array into Go value of type api.GenerateRequest"),
    ('"text"', "json: cannot unmarshal string into Go value of type api.GenerateRequest"),
])
def test_a_wrong_type_is_refused_with_gos_text(body: str, message: str) -> None:
    assert refused(GenerateRequest, body) == message


def test_a_nested_field_names_its_struct_and_its_path() -> None:
    # Go names the innermost struct and the JSON keys from the top, without array indices
    assert refused(ChatRequest, '{"messages": [{"role": "user"}, {"role": "user", '
                                '"content": 5}]}') == (
        "json: cannot unmarshal number into Go struct field Message.messages.content of type "
        "string")
    assert refused(ChatRequest, '{"messages": "hi"}') == (
        "json: cannot unmarshal string into Go struct field ChatRequest.messages of type "
        "[]api.Message")
    assert refused(ChatRequest, '{"messages": ["hi"]}') == (
        "json: cannot unmarshal string into Go struct field ChatRequest.messages of type "
        "api.Message")
    assert refused(CreateRequest, '{"files": {"a.gguf": 7}}') == (
        "json: cannot unmarshal number into Go struct field CreateRequest.files of type string")


def test_null_leaves_a_field_unset_and_a_null_body_is_an_empty_request() -> None:
    req = parse_body(GenerateRequest, {"model": None, "stream": None, "raw": None,
                                       "context": None, "top_logprobs": None})
    assert req == GenerateRequest()
    assert parse_body(GenerateRequest, None) == GenerateRequest()
    # a null element is the element type's zero value
    assert parse_body(GenerateRequest, {"context": [1, None]}).context == [1, 0]
    chat = parse_body(ChatRequest, {"messages": [None, {"role": "user", "content": "hi"}]})
    assert chat.messages == [Message(), Message(role="user", content="hi")]


def test_keys_match_without_case_and_unknown_keys_are_ignored() -> None:
    req = parse_body(GenerateRequest, {"Model": "m", "STREAM": False, "Prompt": "p",
                                       "unknown": {"deep": [1]}, "Top_LogProbs": 3})
    assert (req.model, req.stream, req.prompt, req.top_logprobs) == ("m", False, "p", 3)
    # two keys for one field: the later one wins, as in Go
    assert parse_body(GenerateRequest, {"model": "a", "Model": "b"}).model == "b"


def test_values_are_kept_as_sent_and_nothing_is_coerced() -> None:
    body: dict[str, Any] = {"model": "m", "format": {"type": "object"}, "keep_alive": "5m",
                            "options": {"temperature": 0, "stop": ["x"]}, "think": "high",
                            "images": ["aGk="], "context": [1, 2]}
    req = parse_body(GenerateRequest, body)
    assert (req.format, req.keep_alive, req.options, req.think, req.images, req.context) == (
        body["format"], "5m", body["options"], "high", ["aGk="], [1, 2])
    create = parse_body(CreateRequest, {"from": "base", "adapters": {"a.gguf": "sha256:x"},
                                        "license": ["MIT", "BSD"]})
    assert (create.from_, create.adapters, create.license) == (
        "base", {"a.gguf": "sha256:x"}, ["MIT", "BSD"])


def test_a_message_is_its_set_fields() -> None:
    message = parse_body(ChatRequest, {"messages": [{"role": "tool", "content": "4",
                                                     "tool_name": "add"}]}).messages
    assert message is not None
    assert message[0].as_dict() == {"role": "tool", "content": "4", "tool_name": "add"}


def test_a_field_type_binds_alone_with_gos_value_text() -> None:
    assert bind(list[str], ["MIT"]) == ["MIT"]
    with pytest.raises(UnmarshalError, match=r"^json: cannot unmarshal number into Go value of "
                                             r"type string$"):
        bind(list[str], ["MIT", 1])


def test_the_openapi_document_describes_the_bound_fields(tmp_path: Path) -> None:
    config = load_server_config({"OLLAMA_MODELS": str(tmp_path)}, detect())
    document = openapi_schema(create_app(config))
    generate = document["paths"]["/api/generate"]["post"]["requestBody"]["content"]
    ref = generate["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert schema["properties"]["stream"] == {"type": "boolean"}
    assert schema["properties"]["context"] == {"type": "array", "items": {"type": "integer"}}
    chat = document["components"]["schemas"]["ChatRequest"]["properties"]["messages"]
    assert chat == {"type": "array", "items": {"$ref": "#/components/schemas/Message"}}
    assert "from" in document["components"]["schemas"]["CreateRequest"]["properties"]
