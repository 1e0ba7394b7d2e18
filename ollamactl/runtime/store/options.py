"""Runtime options (the ``options`` map and Modelfile PARAMETER): names, types, defaults, checks.

Precedence is defaults < the model's params layer < the request's options. Request options with
an unknown name are logged and ignored (``strict=False``, Ollama's HTTP behaviour); in a
Modelfile or /api/create they are an error (``strict=True``). A wrong type is always an error
that names the option, as Ollama words it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ollamactl.errors import UsageError
from ollamactl.logrecords import request_field

# a stable source= for log readers, whatever the module's path (see ollamactl.runtime)
log = logging.getLogger("ollamactl.runtime.options")

# Without a GPU, Ollama 0.33's default (the seed's 2048 was v0.6.6's); the server takes a larger
# tier from its GPUs' VRAM (scheduling.gpus.context_tier) unless OLLAMA_CONTEXT_LENGTH is set.
DEFAULT_NUM_CTX = 4096
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_NUM_CTX = 1 << 24  # far above any model's trained context; stops absurd allocations
MAX_STOP_SEQUENCES = 64
MAX_STOP_LENGTH = 1024


class InvalidOption(UsageError):
    """An option with the wrong type or an out-of-range value; keeps the option's name."""

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        super().__init__(message)


@dataclass(frozen=True)
class OptionSpec:
    """One option: its JSON type (int, float, bool, stop), default and allowed range."""

    name: str
    kind: str
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    doc: str = ""


def _o(name: str, kind: str, default: Any, minimum: float | None = None,
       maximum: float | None = None, doc: str = "") -> OptionSpec:
    return OptionSpec(name, kind, default, minimum, maximum, doc)


OPTIONS: dict[str, OptionSpec] = {spec.name: spec for spec in (
    _o("num_ctx", "int", DEFAULT_NUM_CTX, 1, MAX_NUM_CTX, "context window in tokens"),
    _o("num_batch", "int", 512, 1, 1 << 20, "prompt tokens processed per batch"),
    _o("num_gpu", "int", -1, -1, 1 << 20, "layers offloaded to the GPU; -1 auto, 0 CPU only"),
    _o("main_gpu", "int", 0, 0, 1 << 10, "GPU that holds small tensors"),
    _o("use_mmap", "bool", None, doc="map the weights instead of reading them"),
    _o("num_thread", "int", 0, 0, 1 << 12, "CPU threads; 0 lets the runtime decide"),
    _o("draft_num_predict", "int", 4, 0, 1 << 10, "speculative draft tokens"),
    _o("num_keep", "int", 4, -1, INT64_MAX, "tokens kept when the context shifts"),
    _o("seed", "int", -1, INT64_MIN, INT64_MAX, "random seed; -1 random"),
    _o("num_predict", "int", -1, -2, INT64_MAX, "tokens to generate; -1 unlimited"),
    _o("top_k", "int", 40, 0, INT64_MAX, "sample from the k likeliest tokens"),
    _o("top_p", "float", 0.9, 0.0, 1.0, "nucleus sampling"),
    _o("min_p", "float", 0.0, 0.0, 1.0, "minimum probability relative to the top token"),
    _o("typical_p", "float", 1.0, 0.0, 1.0, "locally typical sampling"),
    _o("repeat_last_n", "int", 64, -1, INT64_MAX, "look-back for repetition penalties"),
    _o("temperature", "float", 0.8, 0.0, None, "sampling temperature"),
    # 1.1 in the seed's Ollama generation (1.0 from v0.32.10).
    # 1.0 (off) from Ollama v0.32.10 on; the seed's 1.1 is what older versions used
    _o("repeat_penalty", "float", 1.0, 0.0, None, "penalty for repeated tokens"),
    _o("presence_penalty", "float", 0.0, None, None, "penalty for tokens already present"),
    _o("frequency_penalty", "float", 0.0, None, None, "penalty by token frequency"),
    _o("stop", "stop", None, doc="stop sequences (PARAMETER stop may repeat)"),
)}

# Options that older Ollama releases accepted and current ones ignore: never an error.
REMOVED_OPTIONS = frozenset({
    "mirostat", "mirostat_tau", "mirostat_eta", "tfs_z", "penalize_newline", "numa",
    "low_vram", "f16_kv", "logits_all", "vocab_only", "use_mlock",
})

# A change in any of these needs a new runner (the model is reloaded).
RUNNER_OPTIONS = frozenset({
    "num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "num_thread", "draft_num_predict",
})

_TYPE_WORDS = {"int": "integer", "float": "float32", "bool": "boolean"}


def _check_one(spec: OptionSpec, value: Any) -> Any:
    """Coerce one JSON value the way Ollama's ``FromMap`` does, then check the range."""
    name = spec.name
    if spec.kind == "stop":
        if not isinstance(value, list):
            raise InvalidOption(name, f'option "{name}" must be of type array')
        if not all(isinstance(item, str) for item in value):
            raise InvalidOption(name, f'option "{name}" must be of an array of strings')
        if len(value) > MAX_STOP_SEQUENCES or any(len(s) > MAX_STOP_LENGTH for s in value):
            raise InvalidOption(name, f'option "{name}" allows at most {MAX_STOP_SEQUENCES} '
                                      f"sequences of {MAX_STOP_LENGTH} characters")
        return list(value)
    if spec.kind == "bool":
        if not isinstance(value, bool):
            raise InvalidOption(name, f'option "{name}" must be of type boolean')
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidOption(name, f'option "{name}" must be of type {_TYPE_WORDS[spec.kind]}')
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidOption(name, f'option "{name}" must be a finite number')
    number: int | float = int(value) if spec.kind == "int" else float(value)
    if spec.minimum is not None and number < spec.minimum:
        raise InvalidOption(name, f'option "{name}" must be at least {_show(spec.minimum)}')
    if spec.maximum is not None and number > spec.maximum:
        raise InvalidOption(name, f'option "{name}" must be at most {_show(spec.maximum)}')
    return number


def _show(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def validate_options(options: Mapping[str, Any] | None, *, strict: bool) -> dict[str, Any]:
    """Check and coerce an options map; returns only the known options, typed.

    ``strict=False`` (HTTP requests): unknown names are logged (``invalid option provided``)
    and dropped. ``strict=True`` (Modelfile, /api/create): unknown names are an error.
    Options removed from Ollama (mirostat...) are dropped with a log line either way.
    ``None`` values mean "not set" and are dropped.

    Raises:
        InvalidOption: wrong type or range (``option "top_k" must be of type integer``), or an
            unknown name when ``strict`` (``unknown parameter 'x'``).
    """
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise InvalidOption("options", "options must be an object")
    result: dict[str, Any] = {}
    for name, value in options.items():
        spec = OPTIONS.get(name)
        if spec is None:
            if name in REMOVED_OPTIONS:
                log.warning("option %r is no longer supported and is ignored", name)
            elif strict:
                raise InvalidOption(name, f"unknown parameter '{name}'")
            else:
                log.warning("invalid option provided: %s", request_field(str(name)))
            continue
        if value is None:
            continue
        result[name] = _check_one(spec, value)
    return result


def parse_parameter(name: str, text: str) -> Any:
    """Turn one Modelfile ``PARAMETER name value`` into its typed value (Go's strconv rules).

    Raises:
        InvalidOption: unknown parameter or a value that is not of the option's type.
    """
    key = name.lower()
    spec = OPTIONS.get(key)
    if spec is None:
        if key in REMOVED_OPTIONS:
            return None
        raise InvalidOption(name, f"unknown parameter '{name}'")
    raw = text.strip()
    value: Any
    if spec.kind == "stop":
        return raw
    if spec.kind == "bool":
        lowered = raw.lower()
        if lowered in ("1", "t", "true"):
            value = True
        elif lowered in ("0", "f", "false"):
            value = False
        else:
            raise InvalidOption(spec.name, f'option "{spec.name}" must be of type boolean')
        return _check_one(spec, value)
    try:
        value = int(raw) if spec.kind == "int" else float(raw)
    except ValueError:
        raise InvalidOption(spec.name, f'option "{spec.name}" must be of type '
                                       f"{_TYPE_WORDS[spec.kind]}") from None
    return _check_one(spec, value)


def defaults(default_num_ctx: int = DEFAULT_NUM_CTX) -> dict[str, Any]:
    """Every option's default, ``num_ctx`` from the server setting (OLLAMA_CONTEXT_LENGTH)."""
    values = {name: spec.default for name, spec in OPTIONS.items()}
    values["num_ctx"] = default_num_ctx
    return values


def merge_options(model_params: Mapping[str, Any] | None, request_options: Mapping[str, Any] | None,
                  default_num_ctx: int = DEFAULT_NUM_CTX, *,
                  max_num_ctx: int | None = None) -> dict[str, Any]:
    """defaults < model params layer < request options; all names present in the result.

    ``max_num_ctx`` (the model's trained context) caps num_ctx as Ollama does. Request options
    are validated leniently (unknown names dropped), the stored params layer too.

    Raises:
        InvalidOption: a request option of the wrong type or range.
    """
    merged = defaults(default_num_ctx)
    merged.update(validate_options(model_params, strict=False))
    merged.update(validate_options(request_options, strict=False))
    if max_num_ctx is not None and max_num_ctx > 0 and merged["num_ctx"] > max_num_ctx:
        merged["num_ctx"] = max_num_ctx
    return merged


def runner_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The subset that identifies a runner: when it differs, the model must be reloaded."""
    return {name: options.get(name) for name in sorted(RUNNER_OPTIONS)}
