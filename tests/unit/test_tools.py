"""Tool definitions, tool traffic for templates without tools, and parsing of tool calls in
every known format."""

from __future__ import annotations

import json
import re

import pytest

from ollamactl.runtime.prompting.tools import (
    InvalidTools,
    Tool,
    ToolCallParser,
    ToolChoice,
    new_call_id,
    parse_tool_calls,
    parse_tool_choice,
    parse_tools,
    prepare_messages,
)

STOCK_TOOL = {
    "type": "function",
    "function": {
        "name": "get_current_stock_price",
        "description": "Get the current price for a stock",
        "parameters": {
            "type": "object",
            "properties": {"ticker_symbol": {"type": "string",
                                             "description": "The ticker symbol of the stock"}},
            "required": ["ticker_symbol"],
        },
    },
}
NAMES = ["get_current_stock_price", "get_weather"]


def test_parse_tools_accepts_the_seed_tool() -> None:
    (tool,) = parse_tools([STOCK_TOOL])
    assert tool.name == "get_current_stock_price"
    assert tool.parameters["required"] == ["ticker_symbol"]


@pytest.mark.parametrize(("parameters", "needle"), [
    ({"type": "object", "properties": "ticker"}, "not a valid JSON Schema"),
    ({"type": "object", "required": "ticker_symbol"}, "not a valid JSON Schema"),
    ("a string", "must be a JSON Schema object"),
    ({"type": "string"}, "must describe an object"),
])
def test_parse_tools_rejects_parameters_that_are_no_schema(parameters: object, needle: str) -> None:
    bad = {"type": "function", "function": {"name": "f", "parameters": parameters}}
    with pytest.raises(InvalidTools, match=needle):
        parse_tools([bad])


@pytest.mark.parametrize("bad", [
    "f", {"type": "retrieval"}, {"type": "function"}, {"type": "function", "function": {}},
    {"type": "function", "function": {"name": " "}},
])
def test_parse_tools_rejects_malformed_tools(bad: object) -> None:
    with pytest.raises(InvalidTools):
        parse_tools([bad])


def test_call_ids_look_like_ollamas() -> None:
    ids = {new_call_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(re.fullmatch(r"call_[a-z0-9]{8}", i) for i in ids)


def test_prepare_messages_rewrites_tool_traffic_for_a_template_without_tools() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is the current price of MSFT"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "get_current_stock_price",
                          "arguments": {"ticker_symbol": "MSFT"}}}]},
        {"role": "tool", "content": "427.46", "tool_name": "get_current_stock_price"},
        {"role": "tool", "content": "second"},
    ]
    out = prepare_messages(messages, template_has_tools=False)
    assert [m["role"] for m in out] == ["system", "user", "assistant", "user"]
    assert out[0] == {"role": "system", "content": "Be brief."}
    assert out[2]["content"] == ('<tool_call>\n{"name": "get_current_stock_price", '
                                 '"arguments": {"ticker_symbol": "MSFT"}}\n</tool_call>')
    assert out[3]["content"].count("<tool_response") == 2
    assert "427.46" in out[3]["content"]
    assert all("tool_calls" not in m and "_tool_results" not in m for m in out)


def test_prepare_messages_leaves_tool_templates_alone() -> None:
    messages = [{"role": "user", "content": "hi"}]
    assert prepare_messages(messages, template_has_tools=True) == messages
    assert prepare_messages(messages, template_has_tools=False) == messages


def test_prepare_messages_rejects_arguments_that_are_no_json() -> None:
    messages = [{"role": "assistant", "tool_calls": [{"function": {"name": "f",
                                                                    "arguments": "{oops"}}]}]
    with pytest.raises(InvalidTools, match="invalid tool call arguments"):
        prepare_messages(messages, template_has_tools=False)


@pytest.mark.parametrize("text", [
    '{"name": "get_current_stock_price", "arguments": {"ticker_symbol": "MSFT"}}',
    '  [{"name": "get_current_stock_price", "arguments": {"ticker_symbol": "MSFT"}}]',
    '```json\n{"name": "get_current_stock_price", "arguments": {"ticker_symbol": "MSFT"}}\n```',
    '<tool_call>\n{"name": "get_current_stock_price", "arguments": {"ticker_symbol": "MSFT"}}\n'
    '</tool_call>',
    '<tool_call>[{"name": "get_current_stock_price", "arguments": "{\\"ticker_symbol\\": '
    '\\"MSFT\\"}"}]</tool_call>',
    '<|python_tag|>{"name": "get_current_stock_price", "parameters": {"ticker_symbol": "MSFT"}}',
    '{"name": "get_current_stock_price", "parameters": {"ticker_symbol": "MSFT"}}',
    '<function=get_current_stock_price>{"ticker_symbol": "MSFT"}</function>',
    '[TOOL_CALLS][{"name": "get_current_stock_price", "arguments": {"ticker_symbol": "MSFT"}}]',
    '[TOOL_CALLS]get_current_stock_price[ARGS]{"ticker_symbol": "MSFT"}',
    '{"type": "function", "function": {"name": "get_current_stock_price", '
    '"arguments": {"ticker_symbol": "MSFT"}}}',
])
def test_every_format_parses_to_the_same_call(text: str) -> None:
    content, calls = parse_tool_calls(text, NAMES)
    assert content.strip() == ""
    assert [(c.name, c.arguments) for c in calls] == [
        ("get_current_stock_price", {"ticker_symbol": "MSFT"})]
    assert calls[0].to_native()["function"]["arguments"] == {"ticker_symbol": "MSFT"}
    assert json.loads(calls[0].to_openai()["function"]["arguments"]) == {"ticker_symbol": "MSFT"}


def test_text_around_a_tagged_call_stays_content() -> None:
    text = ('Let me look.<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}'
            '</tool_call> Done.')
    content, calls = parse_tool_calls(text, NAMES)
    assert content == "Let me look. Done."
    assert calls[0].arguments == {"city": "Paris"}


def test_unknown_tools_and_plain_json_are_content() -> None:
    for text in ['{"name": "rm_rf", "arguments": {}}', '{"answer": 42}',
                 '<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>',
                 'The price is 42 <tool_call> maybe', '<tool_call>{"name": "get_weather", "argu']:
        content, calls = parse_tool_calls(text, NAMES)
        assert calls == []
        assert content == text


def test_several_calls_get_increasing_indexes() -> None:
    text = ('<tool_call>{"name": "get_weather", "arguments": {"city": "A"}}</tool_call>\n'
            '<tool_call>{"name": "get_weather", "arguments": {"city": "B"}}</tool_call>')
    _, calls = parse_tool_calls(text, NAMES)
    assert [(c.index, c.arguments["city"]) for c in calls] == [(0, "A"), (1, "B")]
    assert calls[0].id != calls[1].id


def test_streaming_delivers_each_call_whole_and_content_promptly() -> None:
    text = ('Checking. <tool_call>\n{"name": "get_weather", "arguments": {"city": "Tokyo"}}\n'
            '</tool_call>')
    parser = ToolCallParser([Tool("get_weather", "", {"type": "object"})])
    shown: list[str] = []
    calls_at: list[int] = []
    for at in range(0, len(text), 3):
        content, calls = parser.feed(text[at:at + 3])
        shown.append(content)
        if calls:
            calls_at.append(at)
            assert calls[0].arguments == {"city": "Tokyo"}
    tail, more = parser.finish()
    assert more == [] and len(calls_at) == 1
    assert "".join(shown) + tail == "Checking. "
    assert "".join(shown[:4]).startswith("Checking.")
    assert not any("<" in piece for piece in shown)


def test_tool_choice_values() -> None:
    tools = parse_tools([STOCK_TOOL])
    assert parse_tool_choice(None, tools) == ToolChoice()
    assert parse_tool_choice("none", tools).disabled
    assert parse_tool_choice("required", tools) == ToolChoice(forced=True)
    named = {"type": "function", "function": {"name": "get_current_stock_price"}}
    assert parse_tool_choice(named, tools) == ToolChoice(forced=True,
                                                         only="get_current_stock_price")
    for bad in ("always", {"type": "function", "function": {"name": "nope"}}):
        with pytest.raises(InvalidTools):
            parse_tool_choice(bad, tools)
    with pytest.raises(InvalidTools):
        parse_tool_choice("required", [])
