"""Tool calling: the tools a request offers, the prompt that shows them, the calls a model emits.

A request's ``tools`` are checked once (:func:`parse_tools`): each must be a function with a
name and a ``parameters`` object that is a valid JSON Schema, else the request gets a 400.
Tools go to the model's template, which must be able to show them (the ``tools`` capability,
see :mod:`capabilities`); :func:`prepare_messages` turns earlier tool calls and results into
plain text for a template that cannot.

The model's output is parsed by :class:`ToolCallParser`, incrementally so that streaming can
hold back a call until it is whole. Formats understood:

- bare JSON at the start of the answer: ``{"name": ..., "arguments": {...}}`` (or a list);
- Hermes/Qwen style ``<tool_call>{...}</tool_call>``, and SmolLM2's ``<tool_call>[{...}, ...]
  </tool_call>`` (a list of calls);
- Llama 3.1 style ``<|python_tag|>{"name": ..., "parameters": {...}}`` and
  ``<function=name>{...}</function>``;
- Mistral ``[TOOL_CALLS][{...}]`` and ``[TOOL_CALLS]name[ARGS]{...}``.

Only calls to a tool the request offered count; anything else stays content.
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ollamactl.runtime.prompting.grammar import SchemaLimit, check_schema_limits
from ollamactl.runtime.prompting.tool_markers import (
    FUNCTION_CLOSE,
    FUNCTION_OPEN,
    MARKERS,
    MISTRAL_TAG,
    PYTHON_TAG,
    TOOL_CALL_CLOSE,
    TOOL_CALL_OPEN,
)

_ID_ALPHABET = string.ascii_lowercase + string.digits
_DECODER = json.JSONDecoder()

_CLOSERS = {TOOL_CALL_OPEN: TOOL_CALL_CLOSE, FUNCTION_OPEN: FUNCTION_CLOSE}
_ARGUMENT_KEYS = ("arguments", "parameters", "args")


class InvalidTools(ValueError):
    """A request's ``tools`` (or a message's ``tool_calls``) are malformed; the text is the 400."""


@dataclass(frozen=True)
class Tool:
    """One function a request offers: its name, description and parameter schema."""

    name: str
    description: str
    parameters: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"type": "function", "function": {
            "name": self.name, "description": self.description, "parameters": self.parameters}}


@dataclass(frozen=True)
class ToolCall:
    """A call the model made; ``arguments`` is a JSON object, key order as the model wrote it."""

    name: str
    arguments: dict[str, Any]
    index: int = 0
    id: str = field(default_factory=lambda: new_call_id())

    def to_native(self) -> dict[str, Any]:
        """Ollama's shape: arguments as an object."""
        return {"id": self.id,
                "function": {"index": self.index, "name": self.name, "arguments": self.arguments}}

    def to_openai(self) -> dict[str, Any]:
        """OpenAI's shape: arguments as a JSON string."""
        return {"id": self.id, "index": self.index, "type": "function",
                "function": {"name": self.name, "arguments": json.dumps(self.arguments)}}


def new_call_id() -> str:
    """``call_`` + 8 lowercase letters/digits, as Ollama makes them."""
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


def _check_schema(schema: Any, where: str) -> dict[str, Any]:
    from jsonschema import exceptions, validators

    if not isinstance(schema, dict):
        raise InvalidTools(f"{where} must be a JSON Schema object")
    try:
        check_schema_limits(schema, where)  # its grammar is built from it: bounded first
    except SchemaLimit as exc:
        raise InvalidTools(str(exc)) from None
    try:
        validators.validator_for(schema).check_schema(schema)
    except exceptions.SchemaError as exc:
        raise InvalidTools(f"{where} is not a valid JSON Schema: {exc.message}") from exc
    if schema.get("type", "object") != "object":
        raise InvalidTools(f"{where} must describe an object (\"type\": \"object\")")
    return schema


def parse_tools(raw: Sequence[Any] | None) -> list[Tool]:
    """Check a request's ``tools``.

    Raises:
        InvalidTools: a tool that is not a function, has no name, or whose ``parameters``
            are not a JSON Schema for an object, or one past the grammar's schema limits.
    """
    tools: list[Tool] = []
    for position, item in enumerate(raw or ()):
        where = f"tools[{position}]"
        if not isinstance(item, dict):
            raise InvalidTools(f"{where} must be an object")
        if item.get("type", "function") != "function":
            raise InvalidTools(f"{where}: unsupported tool type {item.get('type')!r}")
        function = item.get("function")
        if not isinstance(function, dict):
            raise InvalidTools(f"{where}.function must be an object")
        name = function.get("name")
        if not isinstance(name, str) or not name.strip():
            raise InvalidTools(f"{where}.function.name is required")
        description = function.get("description") or ""
        if not isinstance(description, str):
            raise InvalidTools(f"{where}.function.description must be a string")
        parameters = function.get("parameters")
        if parameters is None:
            parameters = {"type": "object", "properties": {}}
        tools.append(Tool(name, description, _check_schema(
            parameters, f"{where}.function.parameters")))
    return tools


def _arguments_of(call: Mapping[str, Any]) -> dict[str, Any]:
    function = call.get("function") if isinstance(call.get("function"), dict) else call
    assert isinstance(function, Mapping)
    arguments = function.get("arguments", {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError as exc:
            raise InvalidTools("invalid tool call arguments") from exc
    if not isinstance(arguments, dict):
        raise InvalidTools("invalid tool call arguments")
    return arguments


def render_call_text(call: Mapping[str, Any]) -> str:
    """An earlier assistant tool call as Hermes-style ``<tool_call>`` text."""
    function = call.get("function") if isinstance(call.get("function"), dict) else call
    assert isinstance(function, Mapping)
    body = json.dumps({"name": function.get("name", ""), "arguments": _arguments_of(call)},
                      ensure_ascii=False)
    return f"{TOOL_CALL_OPEN}\n{body}\n{TOOL_CALL_CLOSE}"


def prepare_messages(messages: Sequence[Mapping[str, Any]], *,
                     template_has_tools: bool) -> list[dict[str, Any]]:
    """Messages ready for the model's template.

    With ``template_has_tools`` (or no tool traffic) the messages pass unchanged. Otherwise
    earlier assistant ``tool_calls`` become ``<tool_call>`` text and consecutive ``tool``
    results become one user turn of ``<tool_response>`` blocks, so that a history with tool
    traffic still renders through a template that knows only user and assistant turns
    (Gemma's). Tools themselves never reach such a template: the request gets a 400.
    """
    plain = [dict(m) for m in messages]
    if template_has_tools or not any(m.get("role") == "tool" or m.get("tool_calls")
                                     for m in plain):
        return plain
    out: list[dict[str, Any]] = []
    for message in plain:
        role = message.get("role")
        if role == "assistant" and message.get("tool_calls"):
            calls = "\n".join(render_call_text(c) for c in message["tool_calls"])
            content = f"{message.get('content') or ''}\n{calls}".strip()
            out.append({"role": "assistant", "content": content})
        elif role == "tool":
            name = message.get("tool_name") or message.get("name") or ""
            label = f' name="{name}"' if name else ""
            block = f"<tool_response{label}>\n{message.get('content') or ''}\n</tool_response>"
            if out and out[-1].get("role") == "user" and out[-1].get("_tool_results"):
                out[-1]["content"] += "\n" + block
            else:
                out.append({"role": "user", "content": block, "_tool_results": True})
        else:
            out.append({k: v for k, v in message.items() if k != "tool_calls"})
    for message in out:
        message.pop("_tool_results", None)
    return out


def _as_call(value: Any, names: Iterable[str]) -> tuple[str, dict[str, Any]] | None:
    """A (name, arguments) pair when ``value`` is a call to one of ``names``."""
    if not isinstance(value, dict):
        return None
    if isinstance(value.get("function"), dict):
        value = value["function"]
    name = value.get("name")
    if not isinstance(name, str) or name not in set(names):
        return None
    for key in _ARGUMENT_KEYS:
        if key in value:
            arguments = value[key]
            if isinstance(arguments, str):
                try:
                    arguments = json.loads(arguments)
                except ValueError:
                    return None
            return (name, arguments) if isinstance(arguments, dict) else None
    return name, {}


def _calls_in(value: Any, names: Sequence[str]) -> list[tuple[str, dict[str, Any]]] | None:
    """All calls in a JSON value (an object or a list of objects), or None if any is not one."""
    items = value if isinstance(value, list) else [value]
    calls = [_as_call(item, names) for item in items]
    if not calls or any(call is None for call in calls):
        return None
    return [call for call in calls if call is not None]


def _decode_json(text: str, start: int) -> tuple[Any, int] | None:
    """The JSON value at ``text[start:]`` (whitespace skipped) and where it ends; None if
    it is not complete (yet)."""
    while start < len(text) and text[start] in " \t\r\n":
        start += 1
    try:
        return _DECODER.raw_decode(text, start)
    except ValueError:
        return None


def _longest_marker_prefix(text: str) -> int:
    """Length of the longest suffix of ``text`` that could start a marker."""
    best = 0
    for marker in MARKERS:
        for size in range(min(len(marker) - 1, len(text)), 0, -1):
            if text.endswith(marker[:size]):
                best = max(best, size)
                break
    return best


class ToolCallParser:
    """Splits model output into content and whole tool calls, as pieces arrive.

    ``feed`` returns the content that is safe to show now and the calls completed by this
    piece; ``finish`` flushes what was held back (an unfinished call stays content).
    """

    def __init__(self, tools: Sequence[Tool] | Sequence[str]) -> None:
        self.names = [t if isinstance(t, str) else t.name for t in tools]
        self.buffer = ""
        self.seen_text = False      # content other than whitespace was already shown
        self.marker: str | None = None
        self.swallow = ""          # a closing tag still expected after a call
        self.count = 0

    def _make(self, pairs: Sequence[tuple[str, dict[str, Any]]]) -> list[ToolCall]:
        calls = []
        for name, arguments in pairs:
            calls.append(ToolCall(name, arguments, index=self.count))
            self.count += 1
        return calls

    def feed(self, text: str) -> tuple[str, list[ToolCall]]:
        self.buffer += text
        content: list[str] = []
        calls: list[ToolCall] = []
        while self._step(content, calls, final=False):
            pass
        return "".join(content), calls

    def finish(self) -> tuple[str, list[ToolCall]]:
        content: list[str] = []
        calls: list[ToolCall] = []
        while self._step(content, calls, final=True):
            pass
        content.append(self.buffer)
        self.buffer = ""
        return "".join(content), calls

    def _step(self, content: list[str], calls: list[ToolCall], *, final: bool) -> bool:
        """One transition; True while progress was made."""
        if not self.buffer:
            return False
        if self.swallow:
            stripped = self.buffer.lstrip()
            if stripped.startswith(self.swallow):
                self.buffer = stripped[len(self.swallow):]
                self.swallow = ""
                return True
            if self.swallow.startswith(stripped) and not final:
                return False
            self.swallow = ""
        if self.marker is not None:
            return self._step_call(content, calls, final=final)
        if not self.seen_text and self.count == 0:
            stripped = self.buffer.lstrip()
            if not stripped:
                return False
            if stripped.startswith(MISTRAL_TAG[:len(stripped)]) and not final \
                    and len(stripped) < len(MISTRAL_TAG):
                return False
            if (stripped[0] in "{[" and not stripped.startswith(MISTRAL_TAG)) \
                    or stripped.startswith("```"):
                return self._step_bare(content, calls, final=final)
        positions = [(self.buffer.find(m), m) for m in MARKERS if m in self.buffer]
        if positions:
            at, marker = min(positions)
            self._emit(content, self.buffer[:at])
            self.buffer = self.buffer[at + len(marker):]
            self.marker = marker
            return True
        keep = 0 if final else _longest_marker_prefix(self.buffer)
        self._emit(content, self.buffer[:len(self.buffer) - keep])
        self.buffer = self.buffer[len(self.buffer) - keep:]
        return False

    def _emit(self, content: list[str], text: str) -> None:
        if text:
            content.append(text)
            if text.strip():
                self.seen_text = True

    def _step_bare(self, content: list[str], calls: list[ToolCall], *, final: bool) -> bool:
        """Output that opens with JSON (or a fenced block): a call, or just content."""
        text = self.buffer
        start = len(text) - len(text.lstrip())
        fenced = text.startswith("```", start)
        if fenced:
            newline = text.find("\n", start)
            if newline < 0:
                if final:
                    self._emit(content, text)
                    self.buffer = ""
                return False
            start = newline + 1
        decoded = _decode_json(text, start)
        if decoded is None:
            if final:
                self._emit(content, text)
                self.buffer = ""
            return False
        value, end = decoded
        pairs = _calls_in(value, self.names)
        if pairs is None:
            self._emit(content, text)
            self.buffer = ""
            self.seen_text = True
            return False
        calls.extend(self._make(pairs))
        self.buffer = text[end:]
        self.swallow = "```" if fenced else ""
        return True

    def _step_call(self, content: list[str], calls: list[ToolCall], *, final: bool) -> bool:
        marker = self.marker
        assert marker is not None
        text = self.buffer
        name_prefix: str | None = None
        start = 0
        if marker == FUNCTION_OPEN:
            close = text.find(">")
            if close < 0:
                return self._give_up(content, final)
            name_prefix, start = text[:close].strip(), close + 1
        elif marker == MISTRAL_TAG and "[ARGS]" in text \
                and not text.lstrip().startswith(("[", "{")):
            at = text.find("[ARGS]")
            name_prefix, start = text[:at].strip(), at + len("[ARGS]")
        body = text[start:].lstrip()
        if body and body[0] not in "{[" and name_prefix is None and marker != MISTRAL_TAG:
            return self._not_a_call(content, len(text))
        decoded = _decode_json(text, start)
        if decoded is None:
            return self._give_up(content, final)
        value, end = decoded
        if name_prefix is not None:
            value = {"name": name_prefix, "arguments": value}
        pairs = _calls_in(value, self.names)
        if pairs is None:
            return self._not_a_call(content, end)
        calls.extend(self._make(pairs))
        self.buffer = text[end:]
        self.swallow = _CLOSERS.get(marker, "")
        self.marker = None
        if marker == PYTHON_TAG and self.buffer.lstrip().startswith(";"):
            self.buffer = self.buffer.lstrip()[1:]
            self.marker = PYTHON_TAG
        return True

    def _not_a_call(self, content: list[str], end: int) -> bool:
        """What followed a marker is no call: show marker and text up to ``end`` as content."""
        self._emit(content, (self.marker or "") + self.buffer[:end])
        self.buffer = self.buffer[end:]
        self.marker = None
        return True

    def _give_up(self, content: list[str], final: bool) -> bool:
        """An incomplete call: wait for more, or at the end show it as content."""
        if final:
            self._emit(content, (self.marker or "") + self.buffer)
            self.buffer = ""
            self.marker = None
        return False


def parse_tool_calls(text: str,
                     tools: Sequence[Tool] | Sequence[str]) -> tuple[str, list[ToolCall]]:
    """Parse a whole answer: the content left over and the calls found."""
    parser = ToolCallParser(tools)
    content, calls = parser.feed(text)
    tail, more = parser.finish()
    return content + tail, calls + more


@dataclass(frozen=True)
class ToolChoice:
    """OpenAI's ``tool_choice``: ``forced`` for required/named, ``only`` for a named one."""

    forced: bool = False
    only: str | None = None
    disabled: bool = False


def parse_tool_choice(value: Any, tools: Sequence[Tool]) -> ToolChoice:
    """``none`` | ``auto`` | ``required`` | ``{"type": "function", "function": {"name"}}``.

    Raises:
        InvalidTools: another value, or a named function that is not among the tools.
    """
    if value is None or value == "auto":
        return ToolChoice()
    if value == "none":
        return ToolChoice(disabled=True)
    if value == "required":
        if not tools:
            raise InvalidTools('tool_choice "required" needs at least one tool')
        return ToolChoice(forced=True)
    if isinstance(value, dict) and isinstance(value.get("function"), dict):
        name = value["function"].get("name")
        if name not in {t.name for t in tools}:
            raise InvalidTools(f"tool_choice names the unknown function {name!r}")
        return ToolChoice(forced=True, only=str(name))
    raise InvalidTools('tool_choice must be "none", "auto", "required" or a named function')
