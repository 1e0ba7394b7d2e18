"""Format checks and constraint building (decoding under them: tests/integration)."""

from __future__ import annotations

from typing import Any

import pytest

from ollamactl.runtime.prompting.grammar import (
    AT_START,
    InvalidFormat,
    check_format,
    compile_constraint,
    tools_constraint,
)
from ollamactl.runtime.prompting.tools import parse_tools

STOCK_TOOL = {"type": "function", "function": {
    "name": "get_current_stock_price", "description": "Get the current price for a stock",
    "parameters": {"type": "object", "properties": {"ticker_symbol": {
        "type": "string", "description": "The ticker symbol of the stock"}},
        "required": ["ticker_symbol"]}}}
PERSON = {"type": "object", "properties": {"name": {"type": "string"},
                                           "age": {"type": "integer"}},
          "required": ["name", "age"]}


def test_format_json_and_schema_become_constraints() -> None:
    assert check_format(None) is None
    assert check_format("") is None
    assert check_format("json") == {"kind": "json"}
    assert check_format(PERSON) == {"kind": "schema", "schema": PERSON}


@pytest.mark.parametrize(("value", "shown"), [
    ("yaml", r'"\"yaml\""'), (42, '"42"'), (["json"], r'"[\"json\"]"'),
    ({"type": 12}, r'"{\"type\":12}"'),
])
def test_bad_format_gets_ollamas_message(value: Any, shown: str) -> None:
    with pytest.raises(InvalidFormat) as caught:
        check_format(value)
    assert str(caught.value) == (
        f'invalid format: {shown}; expected "json" or a valid JSON Schema object')


def test_tools_constraint_keeps_a_named_tool_only() -> None:
    tools = parse_tools([STOCK_TOOL, {"type": "function", "function": {"name": "other"}}])
    spec = tools_constraint(tools, forced=True, only="other")
    assert spec is not None and [t["name"] for t in spec["tools"]] == ["other"]
    assert tools_constraint(tools, only="missing") is None


def test_compiled_grammars_have_a_root_and_json_safe_strings() -> None:
    tools = parse_tools([STOCK_TOOL])
    forced = compile_constraint(tools_constraint(tools, forced=True) or {})
    assert forced.full is not None and "root ::= call" in forced.full
    assert '"\\"get_current_stock_price\\""' in forced.full
    lazy = compile_constraint(tools_constraint(tools) or {})
    assert lazy.full is None
    assert set(lazy.lazy) == {"<tool_call>", "[TOOL_CALLS]", "<|python_tag|>", AT_START}
    schema = compile_constraint({"kind": "schema", "schema": PERSON}).full or ""
    assert '[^"\\\\\\x7F\\x00-\\x1F]' in schema
    with pytest.raises(ValueError, match="unknown constraint"):
        compile_constraint({"kind": "yaml"})
