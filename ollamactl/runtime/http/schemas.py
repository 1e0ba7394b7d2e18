"""Request bodies of the native API and the value rules Ollama applies to them.

The bodies are dataclasses bound as Go binds Ollama's structs (:mod:`binding`: strict types,
Go's error texts). Responses are plain dicts built in :mod:`inference` and :mod:`management`:
on the token path a dict and one ``json.dumps`` per chunk cost less than a model round trip.
Field names follow api/types.go.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from ollamactl.runtime.http.binding import UnmarshalError, bind
from ollamactl.settings import Invalid, parse_go_duration

T = TypeVar("T")


class BadRequest(ValueError):
    """The body is not acceptable; the message goes back as a 400 ``{"error": ...}``."""


@dataclass
class Message:
    role: str = ""
    content: str = ""
    thinking: str | None = None
    images: list[str] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The fields that are set, as the templates and the store read a message."""
        return {name: value for name, value in vars(self).items() if value is not None}


@dataclass
class GenerateRequest:
    model: str = ""
    prompt: str = ""
    suffix: str = ""
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    stream: bool | None = None
    raw: bool = False
    format: Any = None
    options: dict[str, Any] | None = None
    keep_alive: Any = None
    images: list[str] | None = None
    think: Any = None
    truncate: bool | None = None  # unset/true: a prompt longer than num_ctx is cut (false: 400)
    shift: bool | None = None     # unset/true: a full context shifts (false: ends, "length")
    logprobs: bool = False
    top_logprobs: int = 0


@dataclass
class ChatRequest:
    model: str = ""
    messages: list[Message] | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None      # OpenAI's, also accepted natively: none|auto|required|named
    stream: bool | None = None
    format: Any = None
    options: dict[str, Any] | None = None
    keep_alive: Any = None
    think: Any = None
    truncate: bool | None = None
    shift: bool | None = None
    logprobs: bool = False
    top_logprobs: int = 0


@dataclass
class EmbedRequest:
    model: str = ""
    input: Any = None            # a string or a list of strings, checked by the handler
    truncate: bool | None = None
    dimensions: int = 0
    options: dict[str, Any] | None = None
    keep_alive: Any = None


@dataclass
class EmbeddingRequest:
    """The legacy ``/api/embeddings``: one ``prompt``."""

    model: str = ""
    prompt: str = ""
    options: dict[str, Any] | None = None
    keep_alive: Any = None


@dataclass
class ModelRequest:
    """show / delete / pull: ``model`` or the deprecated ``name``. ``system`` and ``options``:
    show answers as if they were the model's (Ollama's REPL sends its session's)."""

    model: str = ""
    name: str = ""
    verbose: bool = False
    insecure: bool = False
    stream: bool | None = None
    system: str = ""
    options: dict[str, Any] | None = None

    @property
    def target(self) -> str:
        return self.model or self.name


@dataclass
class CopyRequest:
    source: str = ""
    destination: str = ""


@dataclass
class CreateRequest:
    model: str = ""
    name: str = ""
    from_: str | None = field(default=None, metadata={"json": "from"})
    files: dict[str, str] | None = None
    adapters: dict[str, str] | None = None
    template: str | None = None
    system: str | None = None
    license: Any = None           # a string or a list of strings
    parameters: dict[str, Any] | None = None
    messages: list[Message] | None = None
    stream: bool | None = None
    quantize: str | None = None

    @property
    def target(self) -> str:
        return self.model or self.name


def parse_body(schema: type[T], data: Any) -> T:
    """Bind a decoded JSON body; Go's one-line error for the first value of a wrong type."""
    try:
        return bind(schema, data)
    except UnmarshalError as exc:
        raise BadRequest(str(exc)) from None


def parse_keep_alive(value: Any) -> float | None:
    """A request's keep_alive in seconds (math.inf = forever); None when absent.

    Numbers are seconds, strings are Go durations that must carry a unit (``"300"`` is refused
    as Ollama refuses it), negatives mean forever.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise BadRequest("Unsupported type: 'bool'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = parse_go_duration(value)
        except Invalid:
            raise BadRequest(f'time: missing unit in duration "{value}"'
                             if value.strip().lstrip("+-").replace(".", "").isdigit()
                             else f'time: invalid duration "{value}"') from None
    else:
        raise BadRequest(f"Unsupported type: '{type(value).__name__}'")
    if not math.isfinite(seconds) or seconds < 0:
        return math.inf
    return seconds


MAX_TOP_LOGPROBS = 20


@dataclass(frozen=True)
class Logprobs:
    """A request that asked for logprobs: each token's, and ``top`` alternatives."""

    top: int = 0


def parse_logprobs(logprobs: bool, top_logprobs: int) -> Logprobs | None:
    """``logprobs``/``top_logprobs`` as Ollama reads them: ``top_logprobs`` outside 0..20 is
    refused (even without ``logprobs``), and applies only with ``logprobs`` on."""
    if not 0 <= top_logprobs <= MAX_TOP_LOGPROBS:
        raise BadRequest(f"top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}")
    return Logprobs(top_logprobs) if logprobs else None


THINK_LEVELS = ("high", "medium", "low", "max")
_THINK_CHOICES = '("high", "medium", "low", "max", true, or false)'


@dataclass(frozen=True)
class ThinkValue:
    """A request's ``think``: unset (None), a bool, or a level; api/types.go's ThinkValue."""

    value: bool | str | None = None

    @property
    def enabled(self) -> bool:
        """Thinking asked for: true or any level."""
        return self.value is True or isinstance(self.value, str)

    def template_values(self) -> dict[str, Any]:
        """``.Think``, ``.ThinkLevel`` (``true`` reads as ``medium``) and ``.IsThinkSet``."""
        level = self.value if isinstance(self.value, str) else "medium" if self.enabled else ""
        return {"Think": self.enabled, "ThinkLevel": level, "IsThinkSet": self.value is not None}


def parse_think(value: Any) -> ThinkValue:
    """A request's ``think`` checked as Ollama's JSON binding checks it, with its messages."""
    if value is None or isinstance(value, bool):
        return ThinkValue(value)
    if isinstance(value, str):
        if value not in THINK_LEVELS:
            quoted = json.dumps(value, ensure_ascii=False)
            raise BadRequest(f"invalid think value: {quoted} (must be {_THINK_CHOICES[1:-1]})")
        return ThinkValue(value)
    raise BadRequest(f"think must be a boolean or string {_THINK_CHOICES}")


def created_at(now_ns: int | None = None) -> str:
    """UTC RFC 3339 with nanoseconds, trailing zeros trimmed: ``2024-07-22T20:47:51.147561Z``."""
    ns = time.time_ns() if now_ns is None else now_ns
    seconds, fraction = divmod(ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    digits = f"{fraction:09d}".rstrip("0")
    return f"{base}.{digits}Z" if digits else f"{base}Z"


def local_time(timestamp: float) -> str:
    """Local time with offset, as Ollama writes modified_at / expires_at."""
    if math.isinf(timestamp):
        timestamp = time.time() + 292 * 365.25 * 24 * 3600
    return datetime.fromtimestamp(timestamp).astimezone().isoformat()
