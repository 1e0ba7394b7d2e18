"""Modelfiles: parse one into a :class:`ModelfileSpec` for /api/create, and write one for show.

Grammar (Ollama's parser): one ``INSTRUCTION arguments`` per line, instructions in any case and
order, ``#`` comment lines, values single-line, ``"quoted"`` or ``\"\"\"multi-line\"\"\"``.
Instructions: FROM (required), PARAMETER (repeatable; ``stop`` accumulates), TEMPLATE, SYSTEM,
MESSAGE role text, LICENSE (repeatable), REQUIRES, ADAPTER (a LoRA GGUF file beside it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ollamactl.errors import UsageError
from ollamactl.runtime.store.models import MEDIA_PROJECTOR
from ollamactl.runtime.store.names import InvalidModelName, ModelName
from ollamactl.runtime.store.options import InvalidOption, parse_parameter

if TYPE_CHECKING:
    from ollamactl.runtime.store.models import LocalModel

INSTRUCTIONS = ("from", "parameter", "template", "system", "adapter", "license", "message",
                "requires")
MESSAGE_ROLES = ("system", "user", "assistant")
MAX_MODELFILE_BYTES = 16 << 20


class ModelfileError(UsageError):
    """A Modelfile that does not parse; the message starts with the line number."""

    def __init__(self, line: int | None, message: str, *, hint: str | None = None) -> None:
        self.line = line
        where = f"Modelfile line {line}: " if line is not None else "Modelfile: "
        super().__init__(where + message, hint=hint)


@dataclass(frozen=True)
class ModelfileSpec:
    """What a Modelfile asks for. Exactly one of ``from_path`` / ``from_model`` is set;
    ``more_files`` are the files of later FROM lines (a vision projector beside its model),
    which go into ``files`` with ``from_path``, as Ollama merges every FROM file there."""

    from_text: str
    from_path: Path | None
    from_model: str | None
    more_files: tuple[Path, ...] = ()
    adapters: tuple[Path, ...] = ()   # ADAPTER files: uploaded, then /api/create's ``adapters``
    parameters: dict[str, Any] = field(default_factory=dict)
    template: str | None = None
    system: str | None = None
    messages: list[dict[str, str]] = field(default_factory=list)
    license: list[str] = field(default_factory=list)
    requires: str | None = None

    def create_fields(self) -> dict[str, Any]:
        """The /api/create body fields besides ``model``, ``from`` and ``files``."""
        fields: dict[str, Any] = {}
        if self.parameters:
            fields["parameters"] = dict(self.parameters)
        if self.template is not None:
            fields["template"] = self.template
        if self.system is not None:
            fields["system"] = self.system
        if self.messages:
            fields["messages"] = [dict(m) for m in self.messages]
        if self.license:
            fields["license"] = list(self.license)
        if self.requires is not None:
            fields["requires"] = self.requires
        return fields


def _value(line_no: int, text: str, lines: list[str], index: int) -> tuple[str, int]:
    """Read a value starting at ``text`` (rest of line ``index``); returns it and the index of
    the last line used, following a triple-quoted value over several lines."""
    if text.startswith('"""'):
        body = text[3:]
        end = body.find('"""')
        collected: list[str] = []
        current = index
        while end < 0:
            collected.append(body)
            current += 1
            if current >= len(lines):
                raise ModelfileError(line_no, 'unterminated """ quoted value')
            body = lines[current]
            end = body.find('"""')
        collected.append(body[:end])
        if body[end + 3:].strip():
            raise ModelfileError(current + 1, 'unexpected text after closing """')
        return "\n".join(collected), current
    if text.startswith('"'):
        stripped = text.rstrip()
        if len(stripped) < 2 or not stripped.endswith('"'):
            raise ModelfileError(line_no, "unterminated quoted value")
        return stripped[1:-1], index
    return text.strip(), index


def _resolve_from(line_no: int, value: str, base_dir: Path) -> tuple[Path | None, str | None]:
    """A FROM value names an existing file/folder (relative to base_dir, ~ expanded) or a model."""
    expanded = Path(value).expanduser()
    candidate = expanded if expanded.is_absolute() else base_dir / expanded
    if candidate.exists():
        if candidate.is_dir():
            raise ModelfileError(line_no, f"{candidate} is a folder; converting safetensors "
                                          "is not supported, use a GGUF file")
        if not candidate.is_file():  # /dev/random, /dev/zero, a FIFO: would be read forever
            raise ModelfileError(line_no, f"{candidate} is not a regular file")
        return candidate.resolve(), None
    looks_like_path = (value.startswith(("/", "./", "../", "~", ".\\"))
                       or value.lower().endswith(".gguf") or "\\" in value)
    if looks_like_path:
        raise ModelfileError(line_no, f"no such file: {candidate}")
    try:
        ModelName.parse(value)
    except InvalidModelName:
        raise ModelfileError(line_no, f"FROM {value!r} is neither a file nor a valid model "
                                      "name") from None
    return None, value


def parse_modelfile(text: str, base_dir: Path) -> ModelfileSpec:
    """Parse Modelfile ``text``; relative FROM paths are resolved against ``base_dir``.

    Raises:
        ModelfileError: unknown instruction, bad quoting, unknown or mistyped PARAMETER
            (``unknown parameter 'x'``), bad MESSAGE role, ADAPTER, missing FROM.
    """
    if len(text) > MAX_MODELFILE_BYTES:
        raise ModelfileError(None, "file is too large")
    lines = text.replace("\r\n", "\n").split("\n")
    from_text: str | None = None
    from_path: Path | None = None
    from_model: str | None = None
    more_files: list[Path] = []
    adapters: list[Path] = []
    parameters: dict[str, Any] = {}
    template = system = requires = None
    messages: list[dict[str, str]] = []
    licenses: list[str] = []
    index = 0
    key = ""
    while index < len(lines):
        line_no = index + 1
        line = lines[index].strip()
        if not line or line.startswith("#"):
            index += 1
            continue
        instruction, _, rest = line.partition(" ")
        if "\t" in instruction:
            instruction, _, tail = instruction.partition("\t")
            rest = tail + " " + rest
        command = instruction.lower()
        rest = rest.strip()
        if command not in INSTRUCTIONS:
            raise ModelfileError(line_no, f"unknown instruction {instruction!r}",
                                 hint="valid instructions: " + ", ".join(
                                     i.upper() for i in INSTRUCTIONS))
        if command in ("parameter", "message"):
            key, _, rest = rest.partition(" ")
            rest = rest.strip()
            if not key or not rest:
                raise ModelfileError(line_no, f"{command.upper()} needs a name and a value")
        elif not rest:
            raise ModelfileError(line_no, f"{command.upper()} needs a value")
        value, index = _value(line_no, rest, lines, index)
        if command == "adapter":
            path, _ = _resolve_from(line_no, value, base_dir)
            if path is None:
                raise ModelfileError(line_no, f"ADAPTER {value!r} is not a file: name a LoRA "
                                              "GGUF file (a path relative to the Modelfile)")
            adapters.append(path)
        elif command == "from":
            path, model = _resolve_from(line_no, value, base_dir)
            if path is not None and from_path is not None:
                more_files.append(path)
            else:
                from_text, from_path, from_model = value, path, model
        elif command == "parameter":
            try:
                typed = parse_parameter(key, value)
            except InvalidOption as exc:
                raise ModelfileError(line_no, exc.message) from None
            name = key.lower()
            if typed is None:
                pass
            elif name == "stop":
                parameters.setdefault("stop", []).append(typed)
            else:
                parameters[name] = typed
        elif command == "template":
            template = value
        elif command == "system":
            system = value
        elif command == "license":
            licenses.append(value)
        elif command == "requires":
            requires = value
        else:
            role = key.lower()
            if role not in MESSAGE_ROLES:
                raise ModelfileError(line_no, 'message role must be one of "system", "user", '
                                              'or "assistant"')
            messages.append({"role": role, "content": value})
        index += 1
    if from_text is None:
        raise ModelfileError(None, "no FROM line")
    return ModelfileSpec(from_text=from_text, from_path=from_path, from_model=from_model,
                         more_files=tuple(more_files), adapters=tuple(adapters),
                         parameters=parameters,
                         template=template, system=system, messages=messages,
                         license=licenses, requires=requires)


def _go_quote(value: Any) -> str:
    """Go's ``%#v`` for the values a params layer holds."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def format_parameters(params: dict[str, Any]) -> str:
    """The ``parameters`` text of /api/show: ``name<padded to 30> value`` per line, sorted."""
    lines: list[str] = []
    for name in sorted(params):
        values = params[name] if isinstance(params[name], list) else [params[name]]
        lines.extend(f"{name:<30} {_go_quote(v)}" for v in values)
    return "\n".join(lines)


def format_modelfile(model: LocalModel) -> str:
    """The ``modelfile`` text of /api/show and ``ollamactl show --modelfile``."""
    out = [
        '# Modelfile generated by "ollama show"',
        "# To build a new Modelfile based on this, replace FROM with:",
        f"# FROM {model.name.display}",
        "",
        f"FROM {model.model_path}",
    ]
    # a projector is one more FROM, as Ollama writes it (blobs sit side by side)
    out.extend(f"FROM {model.model_path.with_name(layer.digest.replace(':', '-', 1))}"
               for layer in model.layers if layer.media_type == MEDIA_PROJECTOR)
    if model.template:
        out.append(f'TEMPLATE """{model.template}"""')
    if model.system:
        out.append(f'SYSTEM """{model.system}"""')
    for name in sorted(model.params):
        values = model.params[name] if isinstance(model.params[name], list) else \
            [model.params[name]]
        out.extend(f"PARAMETER {name} {_plain(v)}" for v in values)
    for message in model.messages:
        out.append(f'MESSAGE {message.get("role")} """{message.get("content", "")}"""')
    for text in model.license:
        out.append(f'LICENSE """{text}"""')
    return "\n".join(out) + "\n"


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
