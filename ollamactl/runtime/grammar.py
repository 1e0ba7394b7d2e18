"""Constrained decoding: structured output (``format``) and schema-valid tool calls.

Two halves that meet in a plain JSON *constraint* sent with each runner request:

- server side (no llama_cpp): :func:`check_format` turns a request's ``format`` into a
  constraint or a 400 with Ollama's message; :func:`tools_constraint` describes the tools whose
  calls must follow their schemas;
- runner side: :func:`compile_constraint` builds GBNF with llama_cpp's JSON-Schema converter;
  the batching engine (``batch.py``) puts it in each sequence's sampler chain (lazy grammars
  with their trigger words). The server never imports llama_cpp.

Constraint shapes (JSON):
    {"kind": "json"}                                any JSON object
    {"kind": "schema", "schema": {...}}             JSON valid against the schema
    {"kind": "tools", "tools": [{"name", "parameters"}], "forced": bool}

For tools, ``forced`` (``tool_choice`` required or a named function) constrains the answer
from its first token to one call. Otherwise decoding is free until the model starts a tool
call (``<tool_call>``, ``[TOOL_CALLS]``, ``<|python_tag|>``, or ``{`` opening the answer);
from there the rest of the call is constrained, so its name is one of the tools and its
arguments validate against that tool's schema.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ollamactl.runtime.tools import MISTRAL_TAG, PYTHON_TAG, TOOL_CALL_CLOSE, TOOL_CALL_OPEN, Tool


class InvalidFormat(ValueError):
    """``format`` is neither ``"json"`` nor a JSON Schema object; the text is Ollama's 400."""

    def __init__(self, value: Any) -> None:
        raw = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        super().__init__(
            f'invalid format: {json.dumps(raw, ensure_ascii=False)}; '
            'expected "json" or a valid JSON Schema object')


def check_format(value: Any) -> dict[str, Any] | None:
    """The constraint for a request's ``format`` (None when it asks for none).

    Raises:
        InvalidFormat: a string other than ``"json"``, a non-object, or an object that is not
            a valid JSON Schema.
    """
    from jsonschema import exceptions, validators

    if value is None or value == "":
        return None
    if value == "json":
        return {"kind": "json"}
    if not isinstance(value, dict):
        raise InvalidFormat(value)
    try:
        validators.validator_for(value).check_schema(value)
    except exceptions.SchemaError as exc:
        raise InvalidFormat(value) from exc
    return {"kind": "schema", "schema": value}


def tools_constraint(tools: Sequence[Tool], *, forced: bool = False,
                     only: str | None = None) -> dict[str, Any] | None:
    """The constraint for tool calls; ``only`` keeps one named tool (OpenAI's named choice)."""
    chosen = [t for t in tools if only is None or t.name == only]
    if not chosen:
        return None
    return {"kind": "tools", "forced": forced,
            "tools": [{"name": t.name, "parameters": t.parameters} for t in chosen]}


# --- runner side -------------------------------------------------------------------------

AT_START = "{"  # a bare JSON call opening the answer


@dataclass(frozen=True)
class CompiledConstraint:
    """GBNF for the whole answer (``full``), or per trigger text once a call starts (``lazy``)."""

    full: str | None = None
    lazy: dict[str, str] = field(default_factory=dict)


def _converter() -> Any:
    from llama_cpp.llama_grammar import SchemaConverter

    return SchemaConverter(  # type: ignore[no-untyped-call]
        prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)


def _grammar_text(converter: Any) -> str:
    """The converter's rules, with JSON's ban on raw control characters inside strings
    (this converter's ``char`` rule lacks it, and a raw newline would not parse)."""
    text = str(converter.format_grammar())
    return text.replace('char ::= [^"\\\\] |', 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |')


def _schema_gbnf(schema: Mapping[str, Any]) -> str:
    converter = _converter()
    resolved = converter.resolve_refs(copy.deepcopy(dict(schema)), "format")
    converter.visit(resolved, "")
    return _grammar_text(converter)


def _tools_base(tools: Sequence[Mapping[str, Any]]) -> tuple[Any, str]:
    """A converter holding ``call`` / ``call-body`` rules for every tool, and its text."""
    converter = _converter()
    alternatives = []
    for position, tool in enumerate(tools):
        schema = converter.resolve_refs(copy.deepcopy(dict(tool["parameters"])), f"tool{position}")
        arguments = converter.visit(schema, f"tool{position}-arguments")
        name = converter._format_literal(json.dumps(tool["name"], ensure_ascii=False))
        alternatives.append(
            f'{name} space "," space ("\\"arguments\\"" | "\\"parameters\\"") space ":" space '
            f"{arguments}")
    converter._add_rule(
        "call-body", 'space "\\"name\\"" space ":" space ( ' + " | ".join(alternatives)
        + ' ) "}" space')
    converter._add_rule("call", '"{" call-body')
    return converter, _grammar_text(converter)


def compile_constraint(spec: Mapping[str, Any]) -> CompiledConstraint:
    """GBNF for a constraint made by :func:`check_format` or :func:`tools_constraint`."""
    kind = spec.get("kind")
    if kind == "json":
        return CompiledConstraint(full=_schema_gbnf({"type": "object"}))
    if kind == "schema":
        return CompiledConstraint(full=_schema_gbnf(spec["schema"]))
    if kind == "tools":
        _, base = _tools_base(spec["tools"])
        if spec.get("forced"):
            return CompiledConstraint(full=f"{base}\nroot ::= call")
        close = json.dumps(TOOL_CALL_CLOSE)
        return CompiledConstraint(lazy={
            TOOL_CALL_OPEN: f"{base}\nroot ::= space call {close}",
            MISTRAL_TAG: f'{base}\nroot ::= space "[" space call ( "," space call )* "]"',
            PYTHON_TAG: f"{base}\nroot ::= space call",
            AT_START: f"{base}\nroot ::= call-body",
        })
    raise ValueError(f"unknown constraint kind {kind!r}")
