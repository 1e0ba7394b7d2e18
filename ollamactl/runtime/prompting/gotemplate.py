"""A documented subset of Go's text/template, enough for Ollama Modelfile TEMPLATEs.

Supported:
    text; ``{{ pipeline }}`` output; ``{{-``/``-}}`` whitespace trimming; ``{{/* comments */}}``;
    ``if`` / ``else if`` / ``else`` / ``end``; ``range [$i, $v :=] X`` (with ``else``);
    ``$x := expr`` and ``$x = expr``; fields ``.A.B``, ``.``, ``$``, ``$.A``, ``$x.A``;
    literals "string", `raw`, numbers, true/false/nil; parenthesised sub-expressions;
    functions eq ne lt le gt ge and or not len slice index print json.
Not supported (a :class:`TemplateSyntaxError` says so): pipes ``|``, ``with``, ``define``,
``template``, ``block``, ``break``/``continue``, method calls.

Field names are Go's exported names; on the dict values they map to the JSON keys
(``.Role`` -> ``role``, ``.ToolCalls`` -> ``tool_calls``).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ollamactl.errors import ModelError

MAX_TEMPLATE_LENGTH = 1 << 20
# Budgets of one render: what it writes plus the strings its functions build (so doubling a
# variable in a loop is caught as it grows), and the actions, range iterations and function
# calls it runs (nested ``range`` runs their product). A chat of 10000 turns through Llama
# 3.1's TEMPLATE takes 140000 steps (0.5 s) and a few MiB.
MAX_OUTPUT_LENGTH = 64 << 20
MAX_STEPS = 1_000_000
MAX_NESTING = 64


class TemplateSyntaxError(ModelError):
    """The template is not valid in the supported subset."""


class TemplateExecError(ModelError):
    """The template failed while rendering (bad argument to a function, ...)."""


_ACTION_RE = re.compile(r"\{\{(-[ \t\r\n])?(.*?)([ \t\r\n]-)?\}\}", re.S)
_TOKEN_RE = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<raw>`[^`]*`)
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<declare>:=)
      | (?P<assign>=)
      | (?P<lparen>\()
      | (?P<rparen>\))
      | (?P<comma>,)
      | (?P<pipe>\|)
      | (?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
      | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.)
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.X,
)


@dataclass
class _Expr:
    """A command: a single operand or a function applied to operands."""

    kind: str  # "lit", "field", "var", "call"
    value: Any = None
    args: list[_Expr] = field(default_factory=list)


@dataclass
class _Node:
    kind: str  # text, print, if, range, assign
    text: str = ""
    expr: _Expr | None = None
    branches: list[tuple[_Expr, list[_Node]]] = field(default_factory=list)
    body: list[_Node] = field(default_factory=list)
    else_body: list[_Node] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    declare: bool = False


def _tokenize(action: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = action.strip()
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None or match.end() == pos:
            raise TemplateSyntaxError(f"template: unexpected {text[pos:pos + 10]!r} in action")
        kind = match.lastgroup or ""
        if kind == "pipe":
            raise TemplateSyntaxError("template: pipes (|) are not supported")
        tokens.append((kind, match.group(kind)))
        pos = match.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return tokens


class _ExprParser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.pos = 0

    def done(self) -> bool:
        return self.pos >= len(self.tokens)

    def command(self, stop: str | None = None) -> _Expr:
        operands: list[_Expr] = []
        while not self.done() and self.tokens[self.pos][0] != stop:
            operands.append(self.operand())
        if not operands:
            raise TemplateSyntaxError("template: missing value in action")
        first = operands[0]
        if first.kind == "func":
            return _Expr("call", first.value, operands[1:])
        if len(operands) > 1:
            raise TemplateSyntaxError("template: unexpected arguments after a value")
        return first

    def operand(self) -> _Expr:
        kind, text = self.tokens[self.pos]
        self.pos += 1
        if kind == "string":
            try:
                return _Expr("lit", json.loads(text))
            except ValueError:
                raise TemplateSyntaxError(f"template: bad string {text}") from None
        if kind == "raw":
            return _Expr("lit", text[1:-1])
        if kind == "number":
            return _Expr("lit", float(text) if "." in text else int(text))
        if kind == "field":
            return _Expr("field", [p for p in text.split(".") if p])
        if kind == "var":
            head, *rest = text.split(".")
            return _Expr("var", (head, rest))
        if kind == "lparen":
            inner = self.command(stop="rparen")
            if self.done():
                raise TemplateSyntaxError("template: unclosed parenthesis")
            self.pos += 1
            return inner
        if kind == "ident":
            if text in ("true", "false"):
                return _Expr("lit", text == "true")
            if text == "nil":
                return _Expr("lit", None)
            if text not in _FUNCTIONS and text not in _SHORT_CIRCUIT:
                raise TemplateSyntaxError(f'template: function "{text}" not defined')
            return _Expr("func", text)
        raise TemplateSyntaxError(f"template: unexpected {text!r}")


def _parse_expr(action: str) -> _Expr:
    parser = _ExprParser(_tokenize(action))
    expr = parser.command()
    if not parser.done():
        raise TemplateSyntaxError(f"template: unexpected {parser.tokens[parser.pos][1]!r}")
    return expr


def _lex(source: str) -> list[tuple[str, str]]:
    """Split into ("text", s) and ("action", s) items, applying trim markers."""
    items: list[tuple[str, str]] = []
    pos = 0
    trim_next = False
    for match in _ACTION_RE.finditer(source):
        text = source[pos:match.start()]
        if trim_next:
            text = text.lstrip()
        if match.group(1):
            text = text.rstrip()
        if text:
            items.append(("text", text))
        body = match.group(2)
        if not body.strip().startswith("/*"):
            items.append(("action", body))
        elif not body.strip().endswith("*/"):
            raise TemplateSyntaxError("template: unclosed comment")
        trim_next = bool(match.group(3))
        pos = match.end()
    tail = source[pos:]
    if trim_next:
        tail = tail.lstrip()
    if "{{" in tail:
        raise TemplateSyntaxError("template: unclosed action")
    if tail:
        items.append(("text", tail))
    return items


_RANGE_VARS_RE = re.compile(r"^\s*(\$[A-Za-z0-9_]*)\s*(?:,\s*(\$[A-Za-z0-9_]*)\s*)?:=\s*(.*)$",
                            re.S)
_ASSIGN_RE = re.compile(r"^\s*(\$[A-Za-z0-9_]+)\s*(:=|=)\s*(.*)$", re.S)


def _parse(items: list[tuple[str, str]]) -> list[_Node]:
    root: list[_Node] = []
    # Stack of (node, list being filled); the node's kind tells where else/end go.
    stack: list[tuple[_Node, list[_Node]]] = []
    current = root
    for kind, body in items:
        if kind == "text":
            current.append(_Node("text", text=body))
            continue
        action = body.strip()
        word = action.split(None, 1)[0] if action else ""
        rest = action[len(word):].strip()
        if word == "if":
            if len(stack) >= MAX_NESTING:
                raise TemplateSyntaxError("template: nesting too deep")
            node = _Node("if")
            node.branches.append((_parse_expr(rest), []))
            current.append(node)
            stack.append((node, current))
            current = node.branches[-1][1]
        elif word == "range":
            if len(stack) >= MAX_NESTING:
                raise TemplateSyntaxError("template: nesting too deep")
            node = _Node("range")
            match = _RANGE_VARS_RE.match(rest)
            if match:
                node.names = [n for n in (match.group(1), match.group(2)) if n]
                rest = match.group(3)
            node.expr = _parse_expr(rest)
            current.append(node)
            stack.append((node, current))
            current = node.body
        elif word == "else":
            if not stack:
                raise TemplateSyntaxError("template: unexpected {{else}}")
            node, _parent = stack[-1]
            if rest.startswith("if ") and node.kind == "if":
                node.branches.append((_parse_expr(rest[3:]), []))
                current = node.branches[-1][1]
            elif rest:
                raise TemplateSyntaxError(f"template: unsupported {{{{else {rest}}}}}")
            else:
                current = node.else_body
        elif word == "end":
            if not stack:
                raise TemplateSyntaxError("template: unexpected {{end}}")
            _node, current = stack.pop()
        elif word in ("with", "define", "template", "block", "break", "continue"):
            raise TemplateSyntaxError(f"template: {{{{{word}}}}} is not supported")
        else:
            assign = _ASSIGN_RE.match(action)
            if assign:
                current.append(_Node("assign", names=[assign.group(1)],
                                     declare=assign.group(2) == ":=",
                                     expr=_parse_expr(assign.group(3))))
            else:
                current.append(_Node("print", expr=_parse_expr(action)))
    if stack:
        raise TemplateSyntaxError("template: unexpected EOF (missing {{end}})")
    return root


def _truth(value: Any) -> bool:
    if value is None or value is False:
        return False
    if isinstance(value, int | float | str | list | tuple | dict):
        return bool(value)
    return True


def _go_names(name: str) -> list[str]:
    snake = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()
    return [name, name[:1].lower() + name[1:], snake]


def _field(value: Any, name: str) -> Any:
    if isinstance(value, dict):
        for key in _go_names(name):
            if key in value:
                return value[key]
        return None
    if value is None:
        return None
    raise TemplateExecError(f"template: can't evaluate field {name} in type "
                            f"{type(value).__name__}")


def _to_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def _compare(op: str) -> Callable[..., Any]:
    def compare(a: Any, b: Any) -> bool:
        try:
            if op == "lt":
                return bool(a < b)
            if op == "le":
                return bool(a <= b)
            if op == "gt":
                return bool(a > b)
            return bool(a >= b)
        except TypeError:
            raise TemplateExecError(f"template: {op}: incompatible types") from None
    return compare


def _slice(value: Any, *indices: Any) -> Any:
    if not isinstance(value, list | str) or not 1 <= len(indices) <= 2 \
            or not all(isinstance(i, int) for i in indices):
        raise TemplateExecError("template: slice needs a list or string and 1-2 indices")
    start = indices[0]
    end = indices[1] if len(indices) == 2 else len(value)
    if not 0 <= start <= end <= len(value):
        raise TemplateExecError("template: slice index out of range")
    return value[start:end]


def _index(value: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(value, list) and isinstance(key, int) and 0 <= key < len(value):
            value = value[key]
        elif isinstance(value, dict):
            value = value.get(key)
        else:
            raise TemplateExecError("template: index out of range")
    return value


def _len(value: Any) -> int:
    if not isinstance(value, list | str | dict):
        raise TemplateExecError("template: len of a value without length")
    return len(value)


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "eq": lambda a, *bs: any(a == b for b in bs),
    "ne": lambda a, b: a != b,
    "lt": _compare("lt"),
    "le": _compare("le"),
    "gt": _compare("gt"),
    "ge": _compare("ge"),
    "not": lambda a: not _truth(a),
    "len": _len,
    "slice": _slice,
    "index": _index,
    "print": lambda *args: "".join(_to_text(a) for a in args),
    "json": lambda a: json.dumps(a, ensure_ascii=False, separators=(",", ":")),
}


# Evaluated lazily in _eval (Go stops at the first falsy / truthy argument).
_SHORT_CIRCUIT = ("and", "or")


class _Cut(Exception):
    """Raised to stop rendering at ``.Response`` (Ollama's last-turn cut)."""


@dataclass
class _State:
    root: Any
    scopes: list[dict[str, Any]]
    out: list[str]
    cut_at: str | None
    json_hook: Callable[[str], str] | None
    deadline: float | None = None
    size: int = 0
    steps: int = 0

    def lookup(self, name: str) -> Any:
        if name == "$":
            return self.root
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        raise TemplateExecError(f'template: undefined variable "{name}"')

    def assign(self, name: str, value: Any, *, declare: bool) -> None:
        if declare:
            self.scopes[-1][name] = value
            return
        for scope in reversed(self.scopes):
            if name in scope:
                scope[name] = value
                return
        raise TemplateExecError(f'template: undefined variable "{name}"')

    def step(self) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise TemplateExecError(f"template: more than {MAX_STEPS} steps (the limit of one "
                                    "render)")
        if self.deadline is not None and self.steps % 256 == 0 \
                and time.monotonic() > self.deadline:
            raise TemplateExecError("template: rendering took too long")

    def charge(self, text: str) -> None:
        self.size += len(text)
        if self.size > MAX_OUTPUT_LENGTH:
            raise TemplateExecError(f"template: output too large (more than "
                                    f"{MAX_OUTPUT_LENGTH} characters)")

    def write(self, text: str) -> None:
        self.charge(text)
        self.out.append(text)


def _eval(expr: _Expr, dot: Any, state: _State) -> Any:
    if expr.kind == "lit":
        return expr.value
    if expr.kind == "field":
        value = dot
        for part in expr.value:
            if part == state.cut_at:
                raise _Cut
            value = _field(value, part)
        return value
    if expr.kind == "var":
        head, rest = expr.value
        value = state.lookup(head)
        for part in rest:
            if part == state.cut_at:
                raise _Cut
            value = _field(value, part)
        return value
    if expr.kind == "call":
        name = expr.value
        if name == "and":
            result: Any = True
            for arg in expr.args:
                result = _eval(arg, dot, state)
                if not _truth(result):
                    return result
            return result
        if name == "or":
            result = False
            for arg in expr.args:
                result = _eval(arg, dot, state)
                if _truth(result):
                    return result
            return result
        args = [_eval(arg, dot, state) for arg in expr.args]
        state.step()
        try:
            result = _FUNCTIONS[name](*args)
        except TypeError:
            raise TemplateExecError(f"template: wrong number of arguments for {name}") from None
        if isinstance(result, str):
            state.charge(result)
            if name == "json" and state.json_hook is not None:
                return state.json_hook(result)
        return result
    if expr.kind == "func":
        return _FUNCTIONS[expr.value]()
    raise TemplateExecError("template: bad expression")


def _run(nodes: list[_Node], dot: Any, state: _State) -> None:
    for node in nodes:
        state.step()
        if node.kind == "text":
            state.write(node.text)
        elif node.kind == "print":
            assert node.expr is not None
            state.write(_printed(_eval(node.expr, dot, state), state))
        elif node.kind == "assign":
            assert node.expr is not None
            state.assign(node.names[0], _eval(node.expr, dot, state), declare=node.declare)
        elif node.kind == "if":
            for condition, body in node.branches:
                if _truth(_eval(condition, dot, state)):
                    _scoped(body, dot, state)
                    break
            else:
                _scoped(node.else_body, dot, state)
        elif node.kind == "range":
            assert node.expr is not None
            items = _eval(node.expr, dot, state)
            if isinstance(items, dict):
                pairs = list(sorted(items.items()))
            elif isinstance(items, list):
                pairs = list(enumerate(items))
            elif isinstance(items, int) and not isinstance(items, bool):
                pairs = [(i, i) for i in range(min(items, 1 << 16))]
            elif items is None:
                pairs = []
            else:
                raise TemplateExecError("template: range can't iterate over this value")
            if not pairs:
                _scoped(node.else_body, dot, state)
            for key, item in pairs:
                state.step()
                state.scopes.append({})
                if len(node.names) == 1:
                    state.scopes[-1][node.names[0]] = item
                elif len(node.names) == 2:
                    state.scopes[-1][node.names[0]] = key
                    state.scopes[-1][node.names[1]] = item
                try:
                    _run(node.body, item, state)
                finally:
                    state.scopes.pop()


def _printed(value: Any, state: _State) -> str:
    """What ``{{ value }}`` writes. Objects and lists come out as compact JSON, as Ollama's
    template types print themselves (``{{ .Tools }}``, ``{{ .Function.Arguments }}``), and
    being data they go through ``json_hook`` like ``json``'s output."""
    if not isinstance(value, dict | list):
        return _to_text(value)
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    state.charge(text)
    return state.json_hook(text) if state.json_hook is not None else text


def _scoped(body: list[_Node], dot: Any, state: _State) -> None:
    state.scopes.append({})
    try:
        _run(body, dot, state)
    finally:
        state.scopes.pop()


@dataclass(frozen=True)
class GoTemplate:
    """A parsed template; :meth:`render` runs it on a dict of values."""

    source: str
    nodes: list[_Node]

    @property
    def uses_messages(self) -> bool:
        """Whether the template walks ``.Messages`` itself (else Ollama's legacy turn loop)."""
        return ".Messages" in self.source

    def identifiers(self) -> set[str]:
        """The field and variable names the template reads, lower-cased (Ollama's
        ``Template.Vars``): ``tools`` for ``.Tools`` or ``$.Tools``, ``suffix`` for ``.Suffix``.
        Ollama decides a model's capabilities from them."""
        found: set[str] = set()
        for expr in _expressions(self.nodes):
            if expr.kind == "field":
                found.update(part.lower() for part in expr.value)
            elif expr.kind == "var":
                head, rest = expr.value
                found.update(part.lower() for part in (head, *rest))
        return found

    def thinking_tags(self) -> tuple[str, str]:
        """The texts around ``.Thinking`` in a turn, as Ollama's ``thinking.InferTags`` finds
        them: for a ``.Thinking`` inside a ``range`` over ``.Messages``, the first and last
        text of the nearest enclosing list (trimmed), a later match overriding an earlier
        one; ``("", "")`` when there is none."""
        tags = ["", ""]

        def found(where: list[_Node]) -> None:
            if where and where[0].kind == "text":
                tags[0] = where[0].text.strip()
            if where and where[-1].kind == "text":
                tags[1] = where[-1].text.strip()

        def visit(nodes: list[_Node], over_messages: bool | None) -> None:
            for node in nodes:
                if node.kind in ("print", "assign") and over_messages \
                        and _reads_field(node.expr, "Thinking"):
                    found(nodes)
                elif node.kind == "if":
                    # ``else if`` nests an if in a list of its own (no text), as Go parses it
                    if over_messages and _reads_field(node.branches[0][0], "Thinking"):
                        found(nodes)
                    for _, body in node.branches:
                        visit(body, over_messages)
                    visit(node.else_body, over_messages)
                elif node.kind == "range":
                    messages = _reads_field(node.expr, "Messages")
                    if messages and _reads_field(node.expr, "Thinking"):
                        found(nodes)
                    visit(node.body, messages)
                    visit(node.else_body, messages)

        visit(self.nodes, None)
        return tags[0], tags[1]

    def render(self, values: dict[str, Any], *, cut_at_response: bool = False,
               json_hook: Callable[[str], str] | None = None,
               deadline: float | None = None) -> str:
        """Render with ``values`` as dot. ``cut_at_response`` stops at the first ``.Response``
        (the open last turn). ``json_hook`` may wrap each ``json`` result. ``deadline`` is a
        ``time.monotonic()`` value the render must not run past.

        Raises:
            TemplateExecError: a function got bad arguments, an undefined variable, a budget
                (steps, output, deadline) passed...
        """
        state = _State(root=values, scopes=[{}], out=[],
                       cut_at="Response" if cut_at_response else None, json_hook=json_hook,
                       deadline=deadline)
        try:
            _run(self.nodes, values, state)
        except _Cut:
            pass
        except RecursionError:
            raise TemplateExecError("template: too deeply nested") from None
        return "".join(state.out)


def _expressions(nodes: list[_Node]) -> list[_Expr]:
    """Every expression of ``nodes`` and what they contain, sub-expressions included."""
    found: list[_Expr] = []
    pending: list[_Expr] = []
    for node in nodes:
        pending.extend(e for e in (node.expr, *(c for c, _ in node.branches)) if e is not None)
        found.extend(_expressions(node.body) + _expressions(node.else_body))
        for _, body in node.branches:
            found.extend(_expressions(body))
    while pending:
        expr = pending.pop()
        found.append(expr)
        pending.extend(expr.args)
    return found


def _reads_field(expr: _Expr | None, name: str) -> bool:
    """Whether ``expr`` reads a field starting ``.name`` (``.Thinking``, ``.Messages``),
    directly or in an argument (a ``$.name`` variable does not count, as in Go's walk)."""
    if expr is None:
        return False
    return any(e.kind == "field" and e.value[:1] == [name]
               for e in _expressions([_Node("print", expr=expr)]))


def parse(source: str) -> GoTemplate:
    """Parse ``source`` in the supported subset.

    Raises:
        TemplateSyntaxError: unsupported or malformed syntax, with what was found.
    """
    if len(source) > MAX_TEMPLATE_LENGTH:
        raise TemplateSyntaxError("template: too long")
    try:
        return GoTemplate(source, _parse(_lex(source)))
    except RecursionError:
        raise TemplateSyntaxError("template: too deeply nested") from None
