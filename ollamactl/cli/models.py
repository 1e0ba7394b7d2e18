"""Model commands that talk to a running server: list, ps, show, pull, push, create, rm, cp,
stop MODEL.

Each command is thin: build the request, call :class:`ollamactl.client.Client`, render
a table like Ollama's CLI (``NAME ID SIZE PROCESSOR CONTEXT UNTIL`` for ``ps``).
"""

from __future__ import annotations

import hashlib
import importlib
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ollamactl.cli.common import JsonOption, emit
from ollamactl.cli.gofmt import go_json_value, go_value
from ollamactl.errors import OllamactlError, UsageError
from ollamactl.humanize import bytes_si, processor_text, relative_time, until_text
from ollamactl.output import Result, table

if TYPE_CHECKING:
    from ollamactl.client import Client


def make_client() -> Client:
    """A client for the server at OLLAMA_HOST, with the CLI's long read timeout."""
    from ollamactl.client import Client

    return Client()


# -- tables like Ollama's -------------------------------------------------------------------------

COLUMN_GAP = 4  # Ollama's tablewriter pads columns with four spaces
METADATA_ARRAY_WIDTH = 10  # `show -v` shows array items up to this many columns
HEAD_LINES = 2  # `show` prints this many lines of the system message and license


def ps_lines(models: list[dict[str, Any]], now: float | None = None) -> list[str]:
    """``ollama ps``'s table: NAME ID SIZE PROCESSOR CONTEXT UNTIL."""
    rows = [[m["name"], str(m.get("digest", ""))[:12], bytes_si(int(m.get("size", 0))),
             processor_text(int(m.get("size", 0)), int(m.get("size_vram", 0))),
             str(int(m.get("context_length") or 0)), until_text(m["expires_at"], now)]
            for m in models]
    return table(rows, ["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"], gap=COLUMN_GAP)


def list_lines(data: dict[str, Any], prefix: str = "") -> list[str]:
    """``ollama list [PREFIX]``'s table: the models whose name starts with ``prefix`` (any
    case)."""
    rows = [[m["name"], m["digest"][:12], bytes_si(int(m["size"])),
             relative_time(datetime.fromisoformat(m["modified_at"]))]
            for m in data.get("models") or []
            if str(m["name"]).lower().startswith(prefix.lower())]
    return table(rows, ["NAME", "ID", "SIZE", "MODIFIED"], gap=COLUMN_GAP)


def _columns(rows: list[list[str]]) -> list[str]:
    """Rows without a header, ragged ones padded, in Ollama's four-space columns."""
    if not rows:
        return []
    width = max(len(row) for row in rows)
    padded = [row + [""] * (width - len(row)) for row in rows]
    return table(padded[1:], padded[0], gap=COLUMN_GAP)


def _head(text: str, count: int) -> list[list[str]]:
    """The first ``count`` non-blank lines, and ``...`` when there are more."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    rows = [["", line] for line in lines[:count]]
    return [*rows, ["", "..."]] if len(lines) > count else rows


def _metadata_value(value: Any) -> str:
    """A model_info value as ``show -v`` prints it; a long array shows its first items and
    ``...+N more``."""
    if not isinstance(value, list):
        return go_json_value(value)
    shown, total = 0, 1
    for index, item in enumerate(value):
        width = len(go_json_value(item)) + (2 if index else 0)
        if index and total + width > METADATA_ARRAY_WIDTH:
            break
        total += width
        shown += 1
    if shown == len(value):
        return go_json_value(value)
    return go_json_value(value[:shown])[:-1] + f" ...+{len(value) - shown} more]"


def _number(value: Any) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def show_lines(data: dict[str, Any], *, verbose: bool = False) -> list[str]:
    """``ollama show``'s sections: Model, Capabilities, Parameters, (with ``verbose``) Metadata
    and Tensors, then the head of System and License."""
    details = data.get("details") or {}
    info = data.get("model_info")
    lines: list[str] = []

    def section(title: str, rows: list[list[str]]) -> None:
        lines.extend([f"  {title}", *_columns(rows), ""])

    model: list[list[str]] = []
    if isinstance(info, dict):
        arch = str(info.get("general.architecture") or "")
        if arch:
            model.append(["", "architecture", arch])
        if details.get("parameter_size"):
            model.append(["", "parameters", str(details["parameter_size"])])
        for key, label in (("context_length", "context length"),
                           ("embedding_length", "embedding length")):
            value = info.get(f"{arch}.{key}")
            if isinstance(value, int | float) and not isinstance(value, bool):
                model.append(["", label, _number(value)])
    else:
        model += [["", "architecture", str(details.get("family", ""))],
                  ["", "parameters", str(details.get("parameter_size", ""))]]
    model.append(["", "quantization", str(details.get("quantization_level", ""))])
    if data.get("requires"):
        model.append(["", "requires", str(data["requires"])])
    section("Model", model)
    if data.get("capabilities"):
        section("Capabilities", [["", str(c)] for c in data["capabilities"]])
    if data.get("parameters"):
        section("Parameters", [["", *line.split()] for line in
                               str(data["parameters"]).splitlines() if line.strip()])
    if verbose and isinstance(info, dict):
        section("Metadata", [["", key, _metadata_value(info[key])] for key in sorted(info)])
    if verbose and data.get("tensors"):
        section("Tensors", [["", str(t.get("name", "")), str(t.get("type", "")),
                             go_value(t.get("shape") or [])] for t in data["tensors"]])
    if data.get("system"):
        section("System", _head(str(data["system"]), HEAD_LINES))
    if data.get("license"):
        section("License", _head(str(data["license"]), HEAD_LINES))
    return lines


# -- commands -------------------------------------------------------------------------------------

def ps(as_json: bool = JsonOption) -> None:
    """List running models."""
    data = make_client().ps()
    emit(Result(data=data, lines=ps_lines(data.get("models") or [])), as_json=as_json)


def list_models(prefix: str = typer.Argument("", help="Only the models whose name starts so."),
                as_json: bool = JsonOption) -> None:
    """List models."""
    data = make_client().tags()
    emit(Result(data=data, lines=list_lines(data, prefix)), as_json=as_json)


SHOW_ONE_OF = ("only one of '--license', '--modelfile', '--parameters', '--system', or "
               "'--template' can be specified")


def show(model: str = typer.Argument(..., help="Model name."),
         license_: bool = typer.Option(False, "--license", help="Show license of a model."),
         modelfile: bool = typer.Option(False, "--modelfile",
                                        help="Show Modelfile of a model."),
         parameters: bool = typer.Option(False, "--parameters",
                                         help="Show parameters of a model."),
         template: bool = typer.Option(False, "--template", help="Show template of a model."),
         system: bool = typer.Option(False, "--system",
                                     help="Show system message of a model."),
         verbose: bool = typer.Option(False, "--verbose", "-v",
                                      help="Show detailed model information."),
         as_json: bool = JsonOption) -> None:
    """Show information for a model."""
    chosen = [key for flag, key in ((license_, "license"), (modelfile, "modelfile"),
                                    (parameters, "parameters"), (system, "system"),
                                    (template, "template")) if flag]
    if len(chosen) > 1:
        raise UsageError(SHOW_ONE_OF)
    client = make_client()
    data = client.show(model, verbose=verbose)
    if chosen:
        key = chosen[0]
        text = str(data.get(key, ""))
        if as_json:
            emit(Result(data={key: text}), as_json=True)
        else:  # Ollama prints the system message and template without a final newline
            sys.stdout.write(text if key in ("system", "template") else text + "\n")
        return
    emit(Result(data=data, lines=show_lines(data, verbose=verbose)), as_json=as_json)


def pull(model: str = typer.Argument(..., help="Model name, e.g. smollm2:135m."),
         insecure: bool = typer.Option(False, "--insecure",
                                       help="Use plain http to reach the registry.")) -> None:
    """Pull a model (bundled models are imported offline, others from their registry)."""
    client = make_client()
    progress = Progress()
    for item in client.pull(model, insecure=insecure):
        progress.update(item)
    progress.close()


def push(model: str = typer.Argument(..., help="Model name, e.g. host:5000/me/model:tag."),
         insecure: bool = typer.Option(False, "--insecure",
                                       help="Use plain http to reach the registry.")) -> None:
    """Push a model to its registry."""
    client = make_client()
    progress = Progress()
    for item in client.push(model, insecure=insecure):
        progress.update(item)
    progress.close()


class Progress:
    """One status line per step on stderr; a percentage bar for steps with a total."""

    def __init__(self) -> None:
        self.status = ""
        self.tty = sys.stderr.isatty()

    def update(self, item: dict[str, Any]) -> None:
        status = str(item.get("status", ""))
        total, completed = item.get("total"), item.get("completed", 0)
        if total and self.tty:
            width = 30
            filled = int(width * completed / total)
            sys.stderr.write(f"\r{status} {'█' * filled}{' ' * (width - filled)} "
                             f"{completed * 100 // total:3d}% {bytes_si(int(total))}")
            self.status = status
            return
        if status != self.status:
            if self.tty and self.status:
                sys.stderr.write("\n")
            if not self.tty or not total:
                sys.stderr.write(f"{status}\n" if not self.tty else status)
            self.status = status

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


def create(model: str = typer.Argument(..., help="Name of the new model."),
           file: Path = typer.Option(Path("Modelfile"), "--file", "-f",
                                     help="Modelfile to read."),
           quantize: str | None = typer.Option(
               None, "--quantize", "-q",
               help="Quantize F16/F32 weights to this type (q4_K_M, q4_K_S, q8_0).")) -> None:
    """Create a model from a Modelfile (FROM a GGUF file or an existing model)."""
    from ollamactl.runtime.store.modelfile import parse_modelfile

    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {file}: {(exc.strerror or str(exc)).lower()}") from exc
    spec = parse_modelfile(text, file.resolve().parent)
    client = make_client()
    fields = spec.create_fields() | ({"quantize": quantize} if quantize else {})
    if spec.adapters:
        fields["adapters"] = {path.name: upload_blob(client, path) for path in spec.adapters}
    if spec.from_path is not None:
        files = {path.name: upload_blob(client, path)
                 for path in (spec.from_path, *spec.more_files)}
        steps = client.create(model, **fields, files=files)
    else:
        steps = client.create(model, **fields, from_model=spec.from_model)
    progress = Progress()
    for item in steps:
        progress.update(item)
    progress.close()


def upload_blob(client: Client, path: Path) -> str:
    """Hash ``path`` and upload it unless the server has it; returns ``sha256:<hex>``."""
    hasher = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                hasher.update(chunk)
        digest = f"sha256:{hasher.hexdigest()}"
        if not client.has_blob(digest):
            with path.open("rb") as handle:
                client.create_blob(digest, handle)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {(exc.strerror or str(exc)).lower()}") from exc
    return digest


def rm(models: list[str] = typer.Argument(..., help="Models to remove.")) -> None:
    """Remove models (unloading them first)."""
    client = make_client()
    for name in models:
        client.unload(name)
        client.delete(name)
        typer.echo(f"deleted '{name}'")


def cp(source: str = typer.Argument(...), destination: str = typer.Argument(...)) -> None:
    """Copy a model."""
    make_client().copy(source, destination)
    typer.echo(f"copied '{source}' to '{destination}'")


def stop(model: str | None = typer.Argument(None, help="Model to unload; none = the service.")
         ) -> None:
    """Stop the service, or unload a model: stop MODEL."""
    if model is None:
        try:
            service_cmds = importlib.import_module("ollamactl.cli.service_cmds")
        except ImportError:
            raise OllamactlError("`ollamactl stop` without a model (stopping the service) is "
                                 "not available in this version yet",
                                 hint="unload a model with `ollamactl stop MODEL`") from None
        service_cmds.stop_service()
        return
    make_client().unload(model)


def register(app: typer.Typer) -> None:
    """Add the model commands to the root app (after `serve` and `run`, which cli.app adds:
    `run` uses this module, so this one does not import it back)."""
    app.command("stop")(stop)
    app.command("ps")(ps)
    app.command("list")(list_models)
    app.command("ls", hidden=True)(list_models)  # Ollama's alias
    app.command("show")(show)
    app.command("pull")(pull)
    app.command("push")(push)
    app.command("create")(create)
    app.command("rm")(rm)
    app.command("cp")(cp)
