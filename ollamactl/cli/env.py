"""`ollamactl env list|get|set|unset`: the server's settings and where each comes from."""

from __future__ import annotations

import typer

from ollamactl import settings
from ollamactl.cli.common import JsonOption, emit, environ, make_context
from ollamactl.errors import UnsupportedPlatform
from ollamactl.output import Result, table
from ollamactl.service import get_env_store
from ollamactl.service.env import SOURCE_UNSET, resolve, resolve_all

app = typer.Typer(help="Show and change the server's OLLAMA_* settings.", no_args_is_help=True)


@app.command("list")
def list_(ctx: typer.Context, show_all: bool = typer.Option(False, "--all", "-a",
          help="Also list settings that are unset."), as_json: bool = JsonOption) -> None:
    """List settings: effective value, and where it came from."""
    context = make_context(ctx, as_json=as_json)
    rows = resolve_all(environ=environ(), store=get_env_store(context), host=context.host)
    shown = [r for r in rows if show_all or r.source != SOURCE_UNSET]
    lines = table([(r.name, r.value, r.source) for r in shown], ("NAME", "VALUE", "SOURCE"))
    emit(Result(data=[r.as_dict() for r in shown], lines=lines), as_json=as_json)


@app.command("get")
def get(ctx: typer.Context, name: str = typer.Argument(..., help="Setting name, e.g. OLLAMA_HOST"),
        as_json: bool = JsonOption) -> None:
    """Print one setting's effective value and its source."""
    context = make_context(ctx, as_json=as_json)
    store = get_env_store(context)
    r = resolve(name, environ=environ(), store=store, host=context.host)
    lines = [f"{r.name}={r.value}", f"source: {r.source}"]
    if store is not None and r.persisted is not None and r.source != store.location:
        lines.append(f"persisted: {r.persisted} (shadowed by the {r.source})")
    emit(Result(data=r.as_dict(), lines=lines), as_json=as_json)


@app.command("set")
def set_(ctx: typer.Context, name: str = typer.Argument(...), value: str = typer.Argument(...),
         no_restart: bool = typer.Option(False, "--no-restart",
                                         help="Do not restart the service.")) -> None:
    """Validate and persist a setting for the service, then restart it."""
    settings.lookup(name).validate(value)
    _require_store(ctx)


@app.command("unset")
def unset(ctx: typer.Context, name: str = typer.Argument(...),
          no_restart: bool = typer.Option(False, "--no-restart")) -> None:
    """Remove a persisted setting, then restart the service."""
    settings.lookup(name)
    _require_store(ctx)


def _require_store(ctx: typer.Context) -> None:
    context = make_context(ctx)
    if get_env_store(context) is None:
        raise UnsupportedPlatform(
            "no installed service to persist settings for",
            hint="install it first with `ollamactl install`; for this shell only, export the "
                 "variable instead",
        )
