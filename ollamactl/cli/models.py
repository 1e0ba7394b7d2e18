"""Model commands that talk to a running server: list, ps, show, pull, create, rm, cp, stop MODEL.

Each command is thin: build the request, call :class:`ollamactl.client.Client`, render
a table like Ollama's CLI (``NAME ID SIZE PROCESSOR UNTIL`` for ``ps``).
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
from ollamactl.errors import OllamactlError, UsageError
from ollamactl.humanize import bytes_si, processor_text, relative_time, until_text
from ollamactl.output import Result, table

if TYPE_CHECKING:
    from ollamactl.client import Client


def make_client() -> Client:
    """A client for the server at OLLAMA_HOST, with the CLI's long read timeout."""
    from ollamactl.client import Client

    return Client()


# -- ps columns like Ollama's ---------------------------------------------------------------------

def ps_lines(models: list[dict[str, Any]], now: float | None = None) -> list[str]:
    rows = [[m["name"], str(m.get("digest", ""))[:12], bytes_si(int(m.get("size", 0))),
             processor_text(int(m.get("size", 0)), int(m.get("size_vram", 0))),
             until_text(m["expires_at"], now)] for m in models]
    return table(rows, ["NAME", "ID", "SIZE", "PROCESSOR", "UNTIL"], gap=2)


# -- commands -------------------------------------------------------------------------------------

def ps(as_json: bool = JsonOption) -> None:
    """List loaded models (NAME ID SIZE PROCESSOR UNTIL)."""
    data = make_client().ps()
    emit(Result(data=data, lines=ps_lines(data.get("models") or [])), as_json=as_json)


def list_models(as_json: bool = JsonOption) -> None:
    """List local models."""
    data = make_client().tags()
    rows = [[m["name"], m["digest"][:12], bytes_si(int(m["size"])),
             relative_time(datetime.fromisoformat(m["modified_at"]))]
            for m in data.get("models") or []]
    emit(Result(data=data, lines=table(rows, ["NAME", "ID", "SIZE", "MODIFIED"], gap=4)),
         as_json=as_json)


def show(model: str = typer.Argument(..., help="Model name."),
         modelfile: bool = typer.Option(False, "--modelfile", help="Show the Modelfile."),
         parameters: bool = typer.Option(False, "--parameters", help="Show parameters."),
         template: bool = typer.Option(False, "--template", help="Show the template."),
         system: bool = typer.Option(False, "--system", help="Show the system message."),
         license_: bool = typer.Option(False, "--license", help="Show the license."),
         as_json: bool = JsonOption) -> None:
    """Show a model's details."""
    data = make_client().show(model)
    for flag, key in ((modelfile, "modelfile"), (parameters, "parameters"),
                      (template, "template"), (system, "system"), (license_, "license")):
        if flag:
            emit(Result(data={key: data.get(key, "")}, lines=[str(data.get(key, ""))]),
                 as_json=as_json)
            return
    emit(Result(data=data, lines=show_lines(data)), as_json=as_json)


def show_lines(data: dict[str, Any]) -> list[str]:
    details = data.get("details") or {}
    info = data.get("model_info") or {}
    arch = info.get("general.architecture", details.get("family", ""))
    model_rows = [["architecture", str(arch)],
                  ["parameters", str(details.get("parameter_size", ""))],
                  ["context length", str(info.get(f"{arch}.context_length",
                                                  details.get("context_length", "")))],
                  ["embedding length", str(info.get(f"{arch}.embedding_length", ""))],
                  ["quantization", str(details.get("quantization_level", ""))]]
    lines = ["  Model"] + ["    " + line for line in
                           table([r for r in model_rows if r[1]], ["", ""], gap=4)[1:]]
    if data.get("capabilities"):
        lines += ["", "  Capabilities"] + [f"    {c}" for c in data["capabilities"]]
    if data.get("parameters"):
        lines += ["", "  Parameters"] + [f"    {p}" for p in data["parameters"].splitlines()]
    if data.get("system"):
        lines += ["", "  System"] + [f"    {s}" for s in data["system"].splitlines()]
    if data.get("license"):
        lines += ["", "  License"] + [f"    {s}" for s in data["license"].splitlines()[:2]]
    return lines


def pull(model: str = typer.Argument(..., help="Model name, e.g. smollm2:135m."),
         insecure: bool = typer.Option(False, "--insecure",
                                       help="Use plain http to reach the registry.")) -> None:
    """Pull a model (bundled models are imported offline, others from their registry)."""
    client = make_client()
    progress = _Progress()
    for item in client.pull(model, insecure=insecure):
        progress.update(item)
    progress.close()


class _Progress:
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
                                     help="Modelfile to read.")) -> None:
    """Create a model from a Modelfile (FROM a GGUF file or an existing model)."""
    from ollamactl.runtime.store.modelfile import parse_modelfile

    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {file}: {(exc.strerror or str(exc)).lower()}") from exc
    spec = parse_modelfile(text, file.resolve().parent)
    client = make_client()
    if spec.from_path is not None:
        digest = upload_blob(client, spec.from_path)
        steps = client.create(model, **spec.create_fields(),
                              files={spec.from_path.name: digest})
    else:
        steps = client.create(model, **spec.create_fields(), from_model=spec.from_model)
    progress = _Progress()
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
    app.command("show")(show)
    app.command("pull")(pull)
    app.command("create")(create)
    app.command("rm")(rm)
    app.command("cp")(cp)
