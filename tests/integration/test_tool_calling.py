"""Tool calling and structured output on /api/chat and /api/generate: the real server, the real
SmolLM2 model and the official `ollama` client (the seed's stock-price program)."""

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

ollama = pytest.importorskip("ollama")


# `smollm2:135m` as `pull` imports it, with the template that shows tools (conftest reads it)
SERVER_STOCK = functools.partial(import_bundled, name=SMOLLM2)


# The seed's tool definition, verbatim.
STOCK_TOOL = {
    'type': 'function',
    'function': {
        'name': 'get_current_stock_price',
        'description': 'Get the current price for a stock',
        'parameters': {
            'type': 'object',
            'properties': {
                'ticker_symbol': {
                    'type': 'string',
                    'description': 'The ticker symbol of the stock',
                },
            },
            'required': ['ticker_symbol'],
        },
    },
}
QUESTION = "What is the current price of MSFT"
FEW_SHOT = [
    {"role": "user", "content": "What is the current price of AAPL"},
    {"role": "assistant", "content": "", "tool_calls": [{"function": {
        "name": "get_current_stock_price", "arguments": {"ticker_symbol": "AAPL"}}}]},
    {"role": "user", "content": QUESTION},
]
PERSON = {"type": "object", "properties": {"name": {"type": "string"},
                                           "age": {"type": "integer"}},
          "required": ["name", "age"]}
GREEDY = {"temperature": 0, "num_predict": 48, "seed": 1}


@pytest.fixture
def client(server: Server) -> Iterator[Any]:
    with ollama.Client(host=server.url) as official:
        yield official


def _seed_program(response: Any, looked_up: list[str]) -> list[str]:
    """The seed's function_map + call_function_safely, with only the stock lookup stubbed."""
    printed: list[str] = []

    def get_current_stock_price(ticker_symbol: str) -> float:
        looked_up.append(ticker_symbol)
        return 427.4599914550781

    function_map = {
        'get_current_stock_price': get_current_stock_price,
    }

    def call_function_safely(response: Any, function_map: dict[str, Any]) -> None:
        tool_call = response['message']['tool_calls'][0]
        function_name = tool_call['function']['name']
        arguments = tool_call['function']['arguments']
        function_to_call = function_map.get(function_name)
        if function_to_call:
            try:
                result = function_to_call(**arguments)
                printed.append(f"The current price of {arguments['ticker_symbol']} is : {result}")
            except TypeError as e:
                printed.append(f"Argument error: {e}")
        else:
            printed.append(f"{function_name} is not a recognized function")

    call_function_safely(response, function_map)
    return printed


def _check_call(response: Any) -> dict[str, Any]:
    calls = response['message']['tool_calls']
    assert calls, response
    function = calls[0]['function']
    assert function['name'] == 'get_current_stock_price'
    arguments = function['arguments']
    assert isinstance(arguments, dict)
    jsonschema.validate(arguments, STOCK_TOOL['function']['parameters'])
    return dict(arguments)


def test_seed_program_dispatches_every_tool_call(client: Any) -> None:
    emitted = 0
    for messages in ([{'role': 'user', 'content': QUESTION}], FEW_SHOT):
        response = client.chat(model=SMOLLM2, messages=messages, tools=[STOCK_TOOL],
                               options=GREEDY)
        if response['message'].get('tool_calls'):
            emitted += 1
            arguments = _check_call(response)
            looked_up: list[str] = []
            printed = _seed_program(response, looked_up)
            assert looked_up == [arguments['ticker_symbol']]
            assert printed == [f"The current price of {arguments['ticker_symbol']} is : "
                               "427.4599914550781"]
    assert emitted >= 1


def test_model_emits_a_tool_call_end_to_end(server: Server, client: Any) -> None:
    """Shown one earlier call, the real model starts `<tool_call>`; the grammar keeps the
    arguments schema-valid; the parser turns the text into message.tool_calls."""
    response = client.chat(model=SMOLLM2, messages=FEW_SHOT, tools=[STOCK_TOOL], options=GREEDY)
    assert response['message']['content'] == ""
    assert _check_call(response) == {'ticker_symbol': 'MSFT'}
    call = response['message']['tool_calls'][0]
    assert response.done_reason == "stop"
    raw = requests.post(f"{server.url}/api/chat", json={
        "model": SMOLLM2, "messages": FEW_SHOT, "tools": [STOCK_TOOL], "options": GREEDY,
        "stream": False}, timeout=60).json()
    (native,) = raw["message"]["tool_calls"]
    assert native["id"].startswith("call_") and len(native["id"]) == 13
    assert native["function"]["index"] == 0
    assert call['function']['arguments'] == native["function"]["arguments"]


def test_streaming_delivers_the_tool_call_whole(client: Any) -> None:
    chunks = list(client.chat(model=SMOLLM2, messages=FEW_SHOT, tools=[STOCK_TOOL],
                              options=GREEDY, stream=True))
    with_calls = [c for c in chunks if c['message'].get('tool_calls')]
    assert len(with_calls) == 1
    assert _check_call(with_calls[0]) == {'ticker_symbol': 'MSFT'}
    assert "".join(c['message']['content'] for c in chunks) == ""
    assert chunks[-1]['done']


def test_tool_results_flow_into_the_next_turn(client: Any) -> None:
    first = client.chat(model=SMOLLM2, messages=FEW_SHOT, tools=[STOCK_TOOL], options=GREEDY)
    follow = [*FEW_SHOT, first['message'],
              {'role': 'tool', 'content': '427.46', 'tool_name': 'get_current_stock_price'}]
    second = client.chat(model=SMOLLM2, messages=follow, tools=[STOCK_TOOL],
                         options={**GREEDY, "num_predict": 24})
    assert second['message']['content'] or second['message'].get('tool_calls')


def test_required_tool_choice_forces_a_schema_valid_call(server: Server) -> None:
    raw = requests.post(f"{server.url}/api/chat", json={
        "model": SMOLLM2, "messages": [{"role": "user", "content": QUESTION}],
        "tools": [STOCK_TOOL], "tool_choice": "required", "options": GREEDY,
        "stream": False}, timeout=60).json()
    assert raw["message"]["tool_calls"][0]["function"]["arguments"] == {"ticker_symbol": "MSFT"}


@pytest.mark.parametrize("stream", [False, True])
def test_format_schema_output_validates(client: Any, stream: bool) -> None:
    options = {"temperature": 0, "num_predict": 64}
    if stream:
        text = "".join(c['message']['content'] for c in client.chat(
            model=SMOLLM2, messages=[{'role': 'user', 'content': 'Describe a person as JSON'}],
            format=PERSON, options=options, stream=True))
        generated = "".join(c['response'] for c in client.generate(
            model=SMOLLM2, prompt='A person as JSON', format=PERSON, options=options,
            stream=True))
    else:
        text = client.chat(model=SMOLLM2, messages=[{'role': 'user', 'content':
                                                     'Describe a person as JSON'}],
                           format=PERSON, options=options)['message']['content']
        generated = client.generate(model=SMOLLM2, prompt='A person as JSON', format=PERSON,
                                    options=options)['response']
    jsonschema.validate(json.loads(text), PERSON)
    jsonschema.validate(json.loads(generated), PERSON)


def test_format_json_returns_an_object(server: Server) -> None:
    reply = requests.post(f"{server.url}/api/generate", json={
        "model": SMOLLM2, "prompt": 'Reply with {"ok": true}', "format": "json",
        "options": {"temperature": 0, "num_predict": 64}, "stream": False}, timeout=60).json()
    assert isinstance(json.loads(reply["response"]), dict)


@pytest.mark.parametrize(("body", "status", "needle"), [
    ({"format": "yaml"}, 400,
     'invalid format: "\\"yaml\\""; expected "json" or a valid JSON Schema object'),
    ({"format": 7}, 400, 'expected "json" or a valid JSON Schema object'),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": "oops"}}}]}, 400, "not a valid JSON Schema"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": [1]}}]}, 400,
     "must be a JSON Schema object"),
    ({"tools": [STOCK_TOOL], "tool_choice": "always"}, 400, "tool_choice"),
])
def test_bad_tools_and_formats_get_400(server: Server, body: dict[str, Any], status: int,
                                       needle: str) -> None:
    reply = requests.post(f"{server.url}/api/chat", json={
        "model": SMOLLM2, "messages": [{"role": "user", "content": "hi"}], "stream": False,
        **body}, timeout=30)
    assert reply.status_code == status
    assert needle in reply.json()["error"]
    if "format" in body:
        generate = requests.post(f"{server.url}/api/generate", json={
            "model": SMOLLM2, "prompt": "hi", "format": body["format"]}, timeout=30)
        assert generate.status_code == 400 and needle in generate.json()["error"]



def test_run_repl_set_format_json_and_system(server: Server) -> None:
    import os
    import pty
    import subprocess
    import sys

    env = {**os.environ, "OLLAMA_HOST": server.url.removeprefix("http://"), "HOME": os.environ.get(
        "HOME", "/tmp")}
    script = "\n".join(["/set system You reply with JSON objects.", "/set format json",
                        '/set parameter num_predict 48', '/set parameter temperature 0',
                        'Reply with {"ok": true}', "/set noformat", "/bye", ""])
    primary, secondary = pty.openpty()  # a terminal on stdin: the interactive REPL
    try:
        proc = subprocess.Popen([sys.executable, "-m", "ollamactl", "run", SMOLLM2],
                                stdin=secondary, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=env, text=True)
        os.write(primary, script.encode())
        out, err = proc.communicate(timeout=120)
    finally:
        os.close(primary)
        os.close(secondary)
    assert proc.returncode == 0, err
    assert "Set system message." in out and "Set format to 'json' mode." in out
    assert "Disabled format." in out
    answer = out.split("Set format to 'json' mode.", 1)[1].split("Disabled format.", 1)[0]
    replies = [line.split(">>> ")[-1] for line in answer.splitlines()]
    (reply,) = [line for line in replies if line.startswith("{")]
    assert isinstance(json.loads(reply), dict)
