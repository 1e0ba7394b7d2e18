"""Constrained decoding: structured output (``format``) and schema-valid tool calls.

Everything here runs in the server, before a runner sees the request:

- :func:`check_format` turns a request's ``format`` into a constraint or a 400 with Ollama's
  message; :func:`tools_constraint` describes the tools whose calls must follow their schemas;
- :func:`compile_constraint` builds GBNF with llama-cpp-python's JSON-Schema converter (pure
  Python, loaded without the native library) and :meth:`CompiledConstraint.wire` is what the
  runner gets: the grammar text and, for a lazy grammar, its trigger patterns. The batching
  engine (:mod:`ollamactl.runtime.runner.batch`) only parses it into the sequence's sampler chain.

Request-derived grammars are bounded before any of that work runs (:func:`check_schema_limits`,
:func:`check_gbnf`): llama.cpp's parser recurses once per parenthesised group and overflows the
runner's stack past ~16000 of them, and the converter writes ``maxLength: n`` as n nested groups
and ``minItems: n`` as n copies, so an unchecked 169-byte schema killed every sequence on its
runner, and ``minItems: 100000000`` asked for gigabytes of grammar. A schema past a limit gets
a 400 that names the limit.

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
import functools
import importlib.util
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ollamactl.runtime.prompting.tool_markers import (
    MISTRAL_TAG,
    PYTHON_TAG,
    TOOL_CALL_CLOSE,
    TOOL_CALL_OPEN,
)

if TYPE_CHECKING:
    from ollamactl.runtime.prompting.tools import Tool

# Limits on request-derived grammars. Real schemas (OpenAI/Ollama structured-output examples,
# Pydantic models, MCP tool definitions) are a few KiB, a handful of levels deep, and repeat
# things tens of times; each limit is one to two orders of magnitude above that, and below
# what makes llama.cpp or the converter misbehave.
MAX_SCHEMA_BYTES = 64 * 1024    # one format, or one tool's parameters, as compact JSON
MAX_SCHEMA_DEPTH = 32           # nested JSON objects/arrays in one schema (16 object levels)
MAX_KEY_CHARS = 256             # a property or $defs name (rule names are paths of them)
MAX_PATTERN_CHARS = 1024        # a "pattern" regex (emails, dates, ids are under 200)
# minLength, maxLength, minItems, maxItems and a pattern's {m,n}: the converter writes n
# nested optional groups, and llama.cpp itself refuses more than 1000 of those.
MAX_REPETITION = 1000
MAX_GRAMMAR_BYTES = 2 << 20     # the GBNF text: llama.cpp parses this much in ~50 ms
MAX_GRAMMAR_NESTING = 2048      # parenthesised groups inside each other (llama.cpp: ~16000)
# llama.cpp matches a grammar without merging equal stacks, so each optional item a pattern
# can skip to (``?``, ``*``, ``{0,n}``, an optional group) multiplies the work per character.
# Per sampled token on SmolLM2: ``([^x]?){8}`` 0.28 s, ``{16}`` 1.3 s; ``([^x]*){12}`` 3 s,
# ``{20}`` 260 s, while the runner's other sequences wait. A pattern may chain at most this
# many (:func:`pattern_chain`; real patterns chain 1 to 5), and a schema's patterns together
# cost at most MAX_PATTERN_COST, 2 ** chain each (two patterns at the limit, in parallel).
MAX_PATTERN_CHAIN = 8
MAX_PATTERN_COST = 512

_REPEAT_KEYS = ("minLength", "maxLength", "minItems", "maxItems")
_QUANTIFIER = re.compile(r"\{([^}]*)\}")
REGEX_SPECIAL = frozenset("\\^$.|?*+()[]{}")


class GrammarError(ValueError):
    """A request's constraint cannot be turned into a grammar; the text is the 400."""


class SchemaLimit(GrammarError):
    """A schema, or the grammar made from it, is past one of the limits above."""


class InvalidFormat(ValueError):
    """``format`` is neither ``"json"`` nor a JSON Schema object; the text is Ollama's 400."""

    def __init__(self, value: Any) -> None:
        raw = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        super().__init__(
            f'invalid format: {json.dumps(raw, ensure_ascii=False)}; '
            'expected "json" or a valid JSON Schema object')


def _depth_ok(value: Any) -> bool:
    """Whether ``value`` nests at most MAX_SCHEMA_DEPTH containers (iterative: the check itself
    must not recurse on hostile input)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else \
            node if isinstance(node, list) else ()
        for child in children:
            if isinstance(child, dict | list):
                if depth >= MAX_SCHEMA_DEPTH:
                    return False
                stack.append((child, depth + 1))
    return True


@dataclass(frozen=True)
class _Piece:
    """How a piece of a pattern chains optional items (see :func:`pattern_chain`)."""

    lead: int       # optional items from its start up to the first thing it must match
    trail: int      # optional items after the last thing it must match, to its end
    best: int       # the longest chain inside it
    required: bool  # it must match at least one character
    total: int      # optional items passed when it matches nothing (not required)


_ATOM = _Piece(0, 0, 0, True, 0)
_NOTHING = _Piece(0, 0, 0, False, 0)


class _Sequence:
    """Pieces one after another: a required piece ends the running chain."""

    def __init__(self) -> None:
        self.run = self.best = 0
        self.lead: int | None = None
        self.alternatives: list[_Piece] = []

    def add(self, piece: _Piece) -> None:
        self.best = max(self.best, piece.best, self.run + piece.lead)
        if piece.required:
            if self.lead is None:
                self.lead = self.run + piece.lead
            self.run = piece.trail
        else:
            self.run = max(self.run + piece.total, piece.trail)

    def branch(self) -> None:
        """``|``: the sequence so far is one alternative."""
        self.alternatives.append(self._piece())
        self.run = self.best = 0
        self.lead = None

    def _piece(self) -> _Piece:
        best = max(self.best, self.run)
        if self.lead is None:
            return _Piece(self.run, self.run, best, False, self.run)
        return _Piece(self.lead, self.run, best, True, 0)

    def piece(self) -> _Piece:
        pieces = [*self.alternatives, self._piece()]
        optional = [p.total for p in pieces if not p.required]
        return _Piece(max(p.lead for p in pieces), max(p.trail for p in pieces),
                      max(p.best for p in pieces), not optional, max(optional, default=0))


def _repeated(piece: _Piece, low: int, high: int | None) -> _Piece:
    """``piece`` under a quantifier; the converter writes ``{n}`` as n copies."""
    if high == low:
        if low == 0:
            return _NOTHING
        if not piece.required:
            total = piece.total * low
            return _Piece(total, total, max(piece.best, total), False, total)
        return _Piece(piece.lead, piece.trail,
                      max(piece.best, piece.trail + piece.lead if low > 1 else 0), True, 0)
    if not piece.required:
        total = piece.total * (high if high is not None else max(low, 1)) + 1
        return _Piece(total, total, max(piece.best, total), False, total)
    best = max(piece.best, piece.trail + piece.lead + 1)
    if low == 0:
        return _Piece(piece.lead + 1, piece.trail + 1, best, False, 1)
    return _Piece(piece.lead, piece.trail + 1, best, True, 0)


def _quantifier(pattern: str, i: int) -> tuple[int, int | None, int] | None:
    """The quantifier at ``pattern[i]`` as (low, high, its length); None when there is none."""
    c = pattern[i:i + 1]
    if c and c in "?*+":
        return {"?": (0, 1), "*": (0, None), "+": (1, None)}[c] + (1,)
    match = _QUANTIFIER.match(pattern, i) if c == "{" else None
    if match is None:
        return None
    parts = [part.strip() for part in match.group(1).split(",")]
    try:
        counts = [int(part) if part else None for part in parts]
    except ValueError:
        return None
    low = counts[0] or 0
    high = counts[-1] if len(counts) > 1 else low
    return low, high, match.end() - i


def pattern_chain(pattern: str) -> int:
    r"""The longest chain of optional items a pattern lets llama.cpp skip between without
    matching a character, as the converter expands it (``(a?){5}`` chains 5, ``\d+Y`` none).
    Iterative: a deeply nested pattern costs no recursion."""
    stack = [_Sequence()]
    i = 0
    while i < len(pattern):
        c = pattern[i]
        piece: _Piece | None = None
        if c == "(":
            stack.append(_Sequence())
            i += 2 if pattern.startswith("(?", i) else 1
            continue
        if c == ")" and len(stack) > 1:
            piece = stack.pop().piece()
            i += 1
        elif c == "|":
            stack[-1].branch()
            i += 1
            continue
        elif c in "^$":
            i += 1
            continue
        elif c == "[":
            end = i + 1
            while end < len(pattern) and pattern[end] != "]":
                end += 2 if pattern[end] == "\\" else 1
            piece, i = _ATOM, end + 1
        else:
            piece, i = _ATOM, i + (2 if c == "\\" else 1)
        while (quantifier := _quantifier(pattern, i)) is not None:
            low, high, length = quantifier
            piece = _repeated(piece, low, high)  # the converter reads ``a*?`` as ``(a*)?``
            i += length
        stack[-1].add(piece)
    while len(stack) > 1:  # unclosed groups: the converter refuses them; measure them anyway
        piece = stack.pop().piece()
        stack[-1].add(piece)
    return stack[0].piece().best


def _check_pattern(pattern: str, where: str) -> int:
    """Raises SchemaLimit for a pattern past the limits; returns its chain."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise SchemaLimit(f"{where}: pattern of {len(pattern)} characters is over the limit "
                          f"of {MAX_PATTERN_CHARS}")
    for match in _QUANTIFIER.finditer(pattern):  # read as the converter reads them: int()
        for part in match.group(1).split(","):
            try:
                count = int(part.strip())
            except ValueError:
                continue
            if count > MAX_REPETITION:
                raise SchemaLimit(f"{where} repeats {{{match.group(1)}}}, over the limit of "
                                  f"{MAX_REPETITION} repetitions")
    chain = pattern_chain(pattern)
    if chain > MAX_PATTERN_CHAIN:
        raise SchemaLimit(f"{where} chains {chain} optional items (?, *, {{0,n}}, optional "
                          f"groups) with nothing required between them, over the limit of "
                          f"{MAX_PATTERN_CHAIN}")
    return chain


def check_schema_limits(schema: Any, what: str) -> None:
    """Refuse a schema whose grammar would cost more than the limits allow, before anything
    (the JSON Schema validator included) walks it recursively.

    Raises:
        SchemaLimit: the first limit passed, named in the message with ``what`` and the place.
    """
    if not _depth_ok(schema):
        raise SchemaLimit(f"{what}: schema nests more than {MAX_SCHEMA_DEPTH} levels deep")
    size = len(json.dumps(schema, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_SCHEMA_BYTES:
        raise SchemaLimit(f"{what}: schema of {size} bytes is over the limit of "
                          f"{MAX_SCHEMA_BYTES} bytes")
    stack: list[tuple[Any, str]] = [(schema, "")]
    cost = 0
    while stack:
        node, path = stack.pop()
        if isinstance(node, list):
            stack.extend((item, f"{path}/{i}") for i, item in enumerate(node))
            continue
        if not isinstance(node, dict):
            continue
        for key, value in node.items():
            where = f"{what}: {path}/{key}"
            if len(key) > MAX_KEY_CHARS:
                raise SchemaLimit(f"{what}: a key of {len(key)} characters at {path or '/'} "
                                  f"is over the limit of {MAX_KEY_CHARS}")
            if key in _REPEAT_KEYS and isinstance(value, int | float) \
                    and not isinstance(value, bool) and value > MAX_REPETITION:
                raise SchemaLimit(f"{where} is {json.dumps(value)}, over the limit of "
                                  f"{MAX_REPETITION} repetitions")
            if key == "pattern" and isinstance(value, str):
                cost += 2 ** _check_pattern(value, where)
                if cost > MAX_PATTERN_COST:
                    raise SchemaLimit(f"{what}: the schema's patterns together cost more than "
                                      f"{MAX_PATTERN_COST} (2 ** the chain of each)")
            stack.append((value, f"{path}/{key}"))


def check_format(value: Any) -> dict[str, Any] | None:
    """The constraint for a request's ``format`` (None when it asks for none).

    Raises:
        InvalidFormat: a string other than ``"json"``, a non-object, or an object that is not
            a valid JSON Schema.
        SchemaLimit: a schema past the limits (checked first).
    """
    if value is None or value == "":
        return None
    if value == "json":
        return {"kind": "json"}
    if not isinstance(value, dict):
        raise InvalidFormat(value)
    check_schema_limits(value, "format")
    from jsonschema import exceptions, validators  # on first use: ~30 ms of imports

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


# --- GBNF ----------------------------------------------------------------------------------

AT_START = "{"  # a bare JSON call opening the answer


def gbnf_nesting(text: str) -> int:
    """The deepest nesting of parenthesised groups in GBNF ``text`` (string literals,
    character classes and comments skipped): what llama.cpp's parser recurses on."""
    depth = deepest = 0
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in "\"[":
            close = '"' if c == '"' else "]"
            i += 1
            while i < n and text[i] != close:
                i += 2 if text[i] == "\\" else 1
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif c == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif c == ")":
            depth -= 1
        i += 1
    return deepest


def check_gbnf(text: str) -> None:
    """Refuse GBNF that llama.cpp would spend unbounded memory or stack on.

    Raises:
        SchemaLimit: the text is too long, or its groups nest too deep.
    """
    if len(text) > MAX_GRAMMAR_BYTES:
        raise SchemaLimit(f"the grammar for this request is {len(text)} bytes, over the limit "
                          f"of {MAX_GRAMMAR_BYTES} bytes")
    if (nesting := gbnf_nesting(text)) > MAX_GRAMMAR_NESTING:
        raise SchemaLimit(f"the grammar for this request nests {nesting} groups deep, over the "
                          f"limit of {MAX_GRAMMAR_NESTING}")


@dataclass(frozen=True)
class CompiledConstraint:
    """GBNF for the whole answer (``full``), or per trigger text once a call starts (``lazy``)."""

    full: str | None = None
    lazy: dict[str, str] = field(default_factory=dict)

    def wire(self) -> dict[str, Any]:
        """What the runner gets: ``{"gbnf": text}``, plus ``triggers`` (regexes) when lazy.

        Raises:
            SchemaLimit: the text past :data:`MAX_GRAMMAR_BYTES` or too deeply nested.
        """
        if self.full is not None:
            check_gbnf(self.full)
            return {"gbnf": self.full}
        text, patterns = _lazy_grammar(self.lazy)
        check_gbnf(text)
        return {"gbnf": text, "triggers": patterns}


def _lazy_grammar(lazy: Mapping[str, str]) -> tuple[str, list[str]]:
    """One grammar and its trigger patterns from the per-trigger lazy grammars.

    Every lazy grammar is the same rule set plus its own ``root``; llama.cpp feeds a lazy
    grammar the text from the trigger on, so the combined root starts each alternative with
    its trigger's literal text.
    """
    base = ""
    alternatives: list[str] = []
    patterns: list[str] = []
    for trigger, gbnf in lazy.items():
        base, _, root = gbnf.rpartition("\nroot ::= ")
        literal = json.dumps(trigger, ensure_ascii=False)
        alternatives.append(f"{literal} {root}")
        if trigger == AT_START:
            patterns.append(r"^\s*(\{)[\s\S]*$")
        else:
            patterns.append("(" + "".join("\\" + c if c in REGEX_SPECIAL else c
                                          for c in trigger) + ")")
    return f"{base}\nroot ::= " + " | ".join(f"( {a} )" for a in alternatives), patterns


@functools.lru_cache(maxsize=1)
def _converter_class() -> Any:
    """llama-cpp-python's ``SchemaConverter`` (stdlib-only Python), loaded from its file on its
    own: importing ``llama_cpp.llama_grammar`` would run the package's ``__init__`` and load
    libllama into the server, which never loads native inference code."""
    found = importlib.util.find_spec("llama_cpp")
    if found is None or not found.submodule_search_locations:
        raise GrammarError("structured output needs llama-cpp-python, which is not installed")
    path = Path(next(iter(found.submodule_search_locations))) / "llama_grammar.py"
    spec = importlib.util.spec_from_file_location("ollamactl_llama_grammar", path)
    if spec is None or spec.loader is None:
        raise GrammarError(f"cannot load the JSON-Schema converter from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    base: Any = module.SchemaConverter

    class BoundedConverter(base):  # type: ignore[misc]
        """Stops adding rules once their text passes MAX_GRAMMAR_BYTES, so the converter never
        holds more than one rule past the budget."""

        def __init__(self) -> None:
            super().__init__(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
            self.size = 0

        def _add_rule(self, name: str, rule: str) -> str:
            before = len(self._rules)
            key = str(super()._add_rule(name, rule))
            if len(self._rules) > before:
                self.size += len(key) + len(rule) + 5
                if self.size > MAX_GRAMMAR_BYTES:
                    raise SchemaLimit(f"the grammar for this request is over the limit of "
                                      f"{MAX_GRAMMAR_BYTES} bytes")
            return key

    return BoundedConverter


def _converter() -> Any:
    return _converter_class()()


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
    """GBNF for a constraint made by :func:`check_format` or :func:`tools_constraint`. CPU
    work bounded by the limits above: call it off the event loop.

    Raises:
        SchemaLimit: the grammar would pass :data:`MAX_GRAMMAR_BYTES`.
        GrammarError: a schema the converter cannot express (its reason in the message).
        ValueError: an unknown constraint kind (a bug, not a request's fault).
    """
    kind = spec.get("kind")
    if kind not in ("json", "schema", "tools"):
        raise ValueError(f"unknown constraint kind {kind!r}")
    try:
        if kind == "json":
            return CompiledConstraint(full=_schema_gbnf({"type": "object"}))
        if kind == "schema":
            return CompiledConstraint(full=_schema_gbnf(spec["schema"]))
        _, base = _tools_base(spec["tools"])
    except GrammarError:
        raise
    except RecursionError:
        raise SchemaLimit("the schema's references or patterns nest too deeply") from None
    except (AssertionError, KeyError, TypeError, ValueError, AttributeError,
            IndexError) as exc:  # the converter's own ways of saying "unsupported"
        raise GrammarError(f"unsupported JSON Schema: {exc}"[:500]) from None
    if spec.get("forced"):
        return CompiledConstraint(full=f"{base}\nroot ::= call")
    close = json.dumps(TOOL_CALL_CLOSE)
    return CompiledConstraint(lazy={
        # Hermes writes one call per tag, SmolLM2 a list of them
        TOOL_CALL_OPEN: f'{base}\nroot ::= space ( call | "[" space call ( "," space call )* '
                        f'"]" space ) {close}',
        MISTRAL_TAG: f'{base}\nroot ::= space "[" space call ( "," space call )* "]"',
        PYTHON_TAG: f"{base}\nroot ::= space call",
        AT_START: f"{base}\nroot ::= call-body",
    })
