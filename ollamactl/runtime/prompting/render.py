"""Rendering a prompt: chat messages through the model's template into special-token-safe
segments. This runs in a template worker process (:mod:`template_worker`), never in the server;
the server's side is :mod:`prompt`.

Template choice, first that applies: the request's ``template`` override, the Modelfile TEMPLATE
layer (Ollama's Go-template syntax, see :mod:`gotemplate`; a template using ``{%`` is read as
Jinja), the GGUF's ``tokenizer.chat_template`` (Jinja, rendered in an
``ImmutableSandboxedEnvironment`` with the helpers Hugging Face templates expect), a built-in
turn format for the family (Gemma 3), else ``{{ .Prompt }}``.

Message content is user data: it never reaches the tokenizer as template text. Each content
string is swapped for a random sentinel before rendering and put back afterwards as a segment
with ``parse_special=False``, so ``<|im_end|>`` typed by a user stays plain text. The same goes
for ``tojson``/``json`` output (tool definitions, tool-call arguments).

A template is code from whoever made the model or sent the request, so a render has a time
budget (:data:`RENDER_TIMEOUT_S`), a step budget (Go actions, or the Python lines a Jinja
template runs) and an output budget, and its worker a memory cap; a render past one is a
:class:`TemplateError`.
"""
from __future__ import annotations

import contextvars
import datetime as dt
import functools
import json
import re
import secrets
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

from ollamactl.errors import ModelError
from ollamactl.runtime.prompting import gotemplate

if TYPE_CHECKING:
    from ollamactl.runtime.store.models import LocalModel

DEFAULT_GO_TEMPLATE = "{{ .Prompt }}"
# The template values of a request that leaves ``think`` unset (see schemas.ThinkValue).
NO_THINK: Mapping[str, Any] = {"Think": False, "ThinkLevel": "", "IsThinkSet": False}
_FAMILY_TEMPLATES = {"gemma3": "gemma3.gotmpl"}
_CONTENT_KEYS = ("content", "thinking")
# Budgets of one render, besides gotemplate's and the worker's memory cap: real chat templates
# take milliseconds and ~100 Python lines per message, so 10000 turns stay far below both.
RENDER_TIMEOUT_S = 3.0
MAX_JINJA_STEPS = 4_000_000
MAX_INT_BITS = 1 << 16  # a Jinja ``*`` or ``**`` on integers (chat templates count turns)


class TemplateError(ModelError):
    """The model's (or the request's) template failed to render, or was refused."""


class _OverBudget(BaseException):
    """A Jinja render passed a budget (steps, time, output, a binary operation's size); a
    BaseException, so that no ``except Exception`` on the way (Jinja's own) can swallow it."""


@dataclass(frozen=True)
class TemplateSource:
    """What rendering needs of a model; it crosses to the template worker as JSON."""

    name: str
    template: str | None
    chat_template: str | None
    family: str
    bos_token: str | None
    eos_token: str | None
    add_bos: bool

    @classmethod
    def of(cls, model: LocalModel) -> TemplateSource:
        return cls(model.name.display, model.template, model.chat_template,
                   model.details.family, model.bos_token, model.eos_token, model.add_bos)


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt as ``(text, parse_special)`` segments.

    Tokenize each segment with ``special=parse_special`` and concatenate the tokens; add the BOS
    token only for the first segment (``add_bos=True`` lets llama.cpp decide per the model's
    ``tokenizer.ggml.add_bos_token``; a BOS written by the template has been removed).
    """

    segments: tuple[tuple[str, bool], ...]

    @property
    def text(self) -> str:
        return "".join(text for text, _ in self.segments)


class _Sentinels:
    """Random placeholders for user data; ``split`` turns rendered text back into segments."""

    def __init__(self) -> None:
        self.nonce = secrets.token_hex(8)
        self.values: list[str] = []
        self.pattern = re.compile("\x02" + self.nonce + r"(\d{1,9})\x03")

    def wrap(self, value: str) -> str:
        if not value:
            return value
        self.values.append(value)
        return f"\x02{self.nonce}{len(self.values) - 1}\x03"

    def split(self, rendered: str) -> Prompt:
        segments: list[tuple[str, bool]] = []
        pos = 0
        for match in self.pattern.finditer(rendered):
            segments.append((rendered[pos:match.start()], True))
            segments.append((self.values[int(match.group(1))], False))
            pos = match.end()
        segments.append((rendered[pos:], True))
        merged: list[tuple[str, bool]] = []
        for text, special in segments:
            if not text:
                continue
            if special and self.nonce in text:
                raise TemplateError("the chat template altered message content in a way that "
                                    "cannot be rendered safely")
            if merged and merged[-1][1] == special:
                merged[-1] = (merged[-1][0] + text, special)
            else:
                merged.append((text, special))
        return Prompt(tuple(merged))


# ----- Jinja (GGUF tokenizer.chat_template) ----------------------------------------------------

# The render in progress on this thread/task, for the environment-wide tojson filter.
_CURRENT_SENTINELS: contextvars.ContextVar[_Sentinels | None] = contextvars.ContextVar(
    "ollamactl_prompt_sentinels", default=None)


def _raise_exception(message: str) -> None:
    raise TemplateError(f"chat template error: {message}")


def _strftime_now(fmt: str) -> str:
    return dt.datetime.now().strftime(fmt)


@functools.lru_cache(maxsize=1)
def _jinja_environment() -> Any:
    import jinja2.ext
    from jinja2.exceptions import SecurityError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class _StrictSandbox(ImmutableSandboxedEnvironment):
        """Reaching for an unsafe attribute fails at once instead of rendering empty; ``*``,
        ``**`` and ``+``, one C call each however large the result, are sized first."""

        intercepted_binops = frozenset({"*", "**", "+"})

        def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
            raise SecurityError(f"access to attribute {attribute!r} of "
                                f"{type(obj).__name__!r} object is unsafe")

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            _check_binop(operator, left, right)
            return super().call_binop(context, operator, left, right)

    env = _StrictSandbox(trim_blocks=True, lstrip_blocks=True,
                         extensions=[jinja2.ext.loopcontrols])
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.filters["tojson"] = _tojson
    return env


def _check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse a binary operation whose result would pass the render's output budget (strings,
    lists) or MAX_INT_BITS (integers), before Python computes it."""
    limit = gotemplate.MAX_OUTPUT_LENGTH
    sized = (str, list, tuple)
    if operator == "+" and isinstance(left, sized) and isinstance(right, sized):
        if len(left) + len(right) > limit:
            raise _OverBudget(f"a '+' would make more than {limit} items")
        return
    counts = [v for v in (left, right) if isinstance(v, int)]
    if len(counts) != 2:
        if operator == "*" and counts and any(isinstance(v, sized) for v in (left, right)):
            seq = left if isinstance(left, sized) else right
            if len(seq) * counts[0] > limit:
                raise _OverBudget(f"a '*' would make more than {limit} items")
        return
    bits = [abs(v).bit_length() for v in counts]
    if operator == "*":
        size = bits[0] + bits[1]
    elif operator == "**":
        size = bits[0] * max(0, right) if bits[0] > 1 else 0
    else:
        return
    if size > MAX_INT_BITS:
        raise _OverBudget(f"a '{operator}' would make an integer of more than {MAX_INT_BITS} "
                          "bits")


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    """Hugging Face's ``tojson`` (no HTML escaping); the output is data, so it is wrapped."""
    text = json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)
    sentinels = _CURRENT_SENTINELS.get()
    return sentinels.wrap(text) if sentinels is not None else text


@functools.lru_cache(maxsize=16)
def _compile_jinja(source: str) -> Any:
    import jinja2

    if len(source) > gotemplate.MAX_TEMPLATE_LENGTH:  # compiling is not traced: bound it here
        raise TemplateError(f"chat template of {len(source)} characters is over the limit of "
                            f"{gotemplate.MAX_TEMPLATE_LENGTH}")
    try:
        return _jinja_environment().from_string(source)
    except jinja2.TemplateError as exc:
        raise TemplateError(f"invalid chat template: {exc}") from exc


def _budgeted(chunks: Any, deadline: float) -> str:
    """Join a Jinja render's output while counting the Python lines it runs (a tracer on this
    thread, the previous one restored after) and the characters it writes."""
    steps = 0
    size = 0

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal steps
        steps += 1
        if steps > MAX_JINJA_STEPS:
            raise _OverBudget(f"more than {MAX_JINJA_STEPS} steps (the limit of one render)")
        if steps % 1024 == 0 and time.monotonic() > deadline:
            raise _OverBudget(f"took longer than {RENDER_TIMEOUT_S:g} s")
        return trace

    out: list[str] = []
    previous = sys.gettrace()
    sys.settrace(trace)
    try:
        for chunk in chunks:
            size += len(chunk)
            if size > gotemplate.MAX_OUTPUT_LENGTH:
                raise _OverBudget(f"output too large (more than {gotemplate.MAX_OUTPUT_LENGTH} "
                                  "characters)")
            out.append(chunk)
    finally:
        sys.settrace(previous)
    return "".join(out)


def _render_jinja(source: str, context: dict[str, Any], sentinels: _Sentinels,
                  deadline: float) -> str:
    import jinja2
    from jinja2.exceptions import SecurityError

    template = _compile_jinja(source)
    token = _CURRENT_SENTINELS.set(sentinels)
    try:
        return _budgeted(template.generate(**context), deadline)
    except _OverBudget as exc:
        raise TemplateError(f"chat template stopped: {exc}") from None
    except SecurityError as exc:
        raise TemplateError(f"chat template refused by the sandbox: {exc}") from exc
    except TemplateError:
        raise
    except (jinja2.TemplateError, TypeError, ValueError, AttributeError, KeyError,
            IndexError, RecursionError, ArithmeticError) as exc:
        raise TemplateError(f"chat template failed: {exc}") from exc
    finally:
        _CURRENT_SENTINELS.reset(token)


# ----- Go templates (Modelfile TEMPLATE) ---------------------------------------------------------


def _render_go(source: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
               think: Mapping[str, Any], sentinels: _Sentinels, deadline: float) -> str:
    template = gotemplate.parse(source)
    hook: Callable[[str], str] = sentinels.wrap
    if template.uses_messages:
        system = "\n\n".join(m["content"] for m in messages if m.get("role") == "system")
        values = {"System": system, "Messages": messages, "Tools": tools or [],
                  "Prompt": "", "Response": "", "Suffix": "", **think}
        return template.render(values, json_hook=hook, deadline=deadline)
    # Ollama's legacy loop: one execution per (system, prompt, response) turn; the last one is
    # cut at {{ .Response }} so the model writes the answer.
    out: list[str] = []
    system = prompt = response = ""

    def turn(*, last: bool = False) -> str:
        return template.render({"System": system, "Prompt": prompt, "Response": response,
                                **think}, cut_at_response=last, json_hook=hook,
                               deadline=deadline)

    for message in messages:
        role, content = message.get("role"), message.get("content") or ""
        if role == "system":
            if prompt or response:
                out.append(turn())
                system = prompt = response = ""
            system = content
        elif role == "user":
            if response:
                out.append(turn())
                system = prompt = response = ""
            prompt = content
        elif role == "assistant":
            response = content
    out.append(turn(last=True))
    return "".join(out)


@functools.lru_cache(maxsize=4)
def family_template(family: str) -> str | None:
    """The built-in Go template for a family whose GGUF carries no chat template (Gemma 3)."""
    name = _FAMILY_TEMPLATES.get(family)
    if name is None:
        return None
    from ollamactl.templating import template_root

    return template_root().joinpath("chat").joinpath(name).read_text(encoding="utf-8")


# ----- rendering ---------------------------------------------------------------------------------


def _prepare(messages: list[dict[str, Any]], sentinels: _Sentinels) -> list[dict[str, Any]]:
    prepared: list[dict[str, Any]] = []
    for message in messages:
        if not isinstance(message, dict):
            raise ModelError("each message must be an object")
        copy = dict(message)
        copy["role"] = str(copy.get("role") or "").lower()
        for key in _CONTENT_KEYS:
            if key in copy:
                value = copy[key]
                copy[key] = sentinels.wrap(value) if isinstance(value, str) else value
        copy.setdefault("content", "")
        prepared.append(copy)
    return prepared


def _render(source: TemplateSource, messages: list[dict[str, Any]], *,
            tools: list[dict[str, Any]] | None, think: Mapping[str, Any],
            template_override: str | None, warnings: list[str]) -> Prompt:
    deadline = time.monotonic() + RENDER_TIMEOUT_S
    sentinels = _Sentinels()
    prepared = _prepare(messages, sentinels)
    go_source = template_override if template_override is not None else source.template
    rendered: str | None = None
    if go_source and "{%" in go_source:
        rendered = _render_jinja(go_source, _jinja_context(source, prepared, tools, think),
                                 sentinels, deadline)
    elif go_source:
        try:
            rendered = _render_go(go_source, prepared, tools, think, sentinels, deadline)
        except gotemplate.TemplateSyntaxError as exc:
            if template_override is not None or not source.chat_template:
                raise TemplateError(str(exc)) from exc
            warnings.append(f"{source.name}: TEMPLATE not in the supported Go subset ({exc}); "
                            "using the GGUF chat template")
        except gotemplate.TemplateExecError as exc:
            raise TemplateError(str(exc)) from exc
    if rendered is None and source.chat_template:
        rendered = _render_jinja(source.chat_template,
                                 _jinja_context(source, prepared, tools, think), sentinels,
                                 deadline)
    if rendered is None:
        fallback = family_template(source.family) or DEFAULT_GO_TEMPLATE
        try:
            rendered = _render_go(fallback, prepared, tools, think, sentinels, deadline)
        except (gotemplate.TemplateSyntaxError, gotemplate.TemplateExecError) as exc:
            raise TemplateError(str(exc)) from exc
    return sentinels.split(_without_bos(source, rendered))


def _without_bos(source: TemplateSource, rendered: str) -> str:
    """The rendered text less a BOS the template wrote where llama.cpp adds one itself."""
    bos = source.bos_token
    if bos and source.add_bos and rendered.startswith(bos):
        return rendered[len(bos):]
    return rendered


def _render_fill(source: TemplateSource, fill: Mapping[str, str], *, think: Mapping[str, Any],
                 template_override: str | None) -> Prompt:
    """Ollama's fill-in-the-middle render: the Go template executed once with ``.Prompt`` and
    ``.Suffix`` (both user data, kept out of special-token parsing), no messages."""
    go_source = template_override if template_override is not None else source.template
    if not go_source or "{%" in go_source:
        raise TemplateError(f"{source.name} does not support insert")
    sentinels = _Sentinels()
    values = {"System": "", "Prompt": sentinels.wrap(fill["prompt"]),
              "Suffix": sentinels.wrap(fill["suffix"]), "Response": "", **think}
    try:
        rendered = gotemplate.parse(go_source).render(
            values, json_hook=sentinels.wrap, deadline=time.monotonic() + RENDER_TIMEOUT_S)
    except (gotemplate.TemplateSyntaxError, gotemplate.TemplateExecError) as exc:
        raise TemplateError(str(exc)) from exc
    return sentinels.split(_without_bos(source, rendered))


def _jinja_context(source: TemplateSource, messages: list[dict[str, Any]],
                   tools: list[dict[str, Any]] | None, think: Mapping[str, Any]
                   ) -> dict[str, Any]:
    last_role = messages[-1]["role"] if messages else "user"
    context: dict[str, Any] = {
        "messages": messages,
        "add_generation_prompt": last_role != "assistant",
        "bos_token": source.bos_token or "",
        "eos_token": source.eos_token or "",
    }
    if tools:
        context["tools"] = tools
    if think.get("IsThinkSet"):  # Qwen3's and SmolLM3's switch
        context["enable_thinking"] = bool(think.get("Think"))
    return context


def render_job(job: Mapping[str, Any]) -> tuple[Prompt, list[str]]:
    """The template worker's side of a render: the prompt, and warnings for the server's log.
    A job with ``fill`` (``prompt`` and ``suffix``) is a fill-in-the-middle render.

    Raises:
        TemplateError: see :func:`prompt.render_chat`.
    """
    warnings: list[str] = []
    source, think = TemplateSource(**job["source"]), job.get("think") or NO_THINK
    if job.get("fill"):
        return _render_fill(source, job["fill"], think=think,
                            template_override=job.get("template")), warnings
    prompt = _render(source, list(job["messages"]), tools=job.get("tools"), think=think,
                     template_override=job.get("template"), warnings=warnings)
    return prompt, warnings
