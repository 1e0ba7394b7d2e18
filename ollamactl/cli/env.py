"""`ollamactl env list|get|set|unset`: the server's settings and where each comes from."""

from __future__ import annotations

import sys

import typer

from ollamactl import settings
from ollamactl.cli.common import JsonOption, emit, environ, make_context
from ollamactl.context import Context
from ollamactl.errors import UnsupportedPlatform, UsageError
from ollamactl.install import models_dir
from ollamactl.output import Result, table
from ollamactl.service.base import Platform
from ollamactl.service.env import SOURCE_UNSET, EnvStore, resolve, resolve_all
from ollamactl.service.platforms import for_host, get_env_store

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
                                         help="Do not restart the service."),
         yes: bool = typer.Option(False, "--yes", "-y", help="Apply offered fixes unasked.")
         ) -> None:
    """Validate and persist a setting for the service, then restart it."""
    settings.lookup(name).validate(value)
    context = make_context(ctx)
    platform = for_host(context)
    store = _require_store(platform)
    store.check(name, value)
    if name == "OLLAMA_MODELS":
        _prepare_models_dir(context, platform, value, assume_yes=yes or context.assume_yes)
    changed = store.set(name, value)
    for note in store.notes(name):
        typer.echo(f"note: {note}", err=True)
    _apply(context, platform, changed=changed, restart=not no_restart,
           line=f"{name}={value} saved in {store.location}" if changed
           else f"{name} already is {value}")


@app.command("unset")
def unset(ctx: typer.Context, name: str = typer.Argument(...),
          no_restart: bool = typer.Option(False, "--no-restart")) -> None:
    """Remove a persisted setting, then restart the service."""
    settings.lookup(name)
    context = make_context(ctx)
    platform = for_host(context)
    store = _require_store(platform)
    previous = store.read().get(name)
    changed = store.unset(name)
    if changed and name == "OLLAMA_MODELS" and previous:
        platform.revoke_models_dir(previous)
    _apply(context, platform, changed=changed, restart=not no_restart,
           line=f"{name} removed from {store.location}" if changed else f"{name} was not set")


def _require_store(platform: Platform) -> EnvStore:
    store = platform.env_store()
    if store is None:
        raise UnsupportedPlatform(
            "no installed service to persist settings for",
            hint="install it first with `ollamactl install`; for this shell only, export the "
                 "variable instead",
        )
    return store


def _prepare_models_dir(context: Context, platform: Platform, directory: str, *,
                        assume_yes: bool) -> None:
    """Check that the service user can use ``directory`` (where the platform can tell who
    that is); offer the fixes; let the service's sandbox write it. Refuses (nothing written)
    when a problem stays unfixed."""
    account = platform.service_account()
    if account is not None:
        problems = models_dir.check(context, directory, account)
        if problems:
            for problem in problems:
                typer.echo(f"problem: {problem.message}; fix: {problem.fix}", err=True)
            if not (assume_yes or context.dry_run) and not (sys.stdin.isatty() and typer.confirm(
                    "Apply these fixes?", default=False, err=True)):
                raise UsageError(f"OLLAMA_MODELS={directory} is not usable by {account.name}; "
                                 "nothing was changed",
                                 hint="apply the fixes above (or pass --yes), or pick another "
                                      "directory")
            for problem in problems:
                problem.apply()
    platform.grant_models_dir(directory)


def _apply(context: Context, platform: Platform, *, changed: bool, restart: bool,
           line: str) -> None:
    """Make the change take effect as the platform does (systemd: daemon-reload, then
    try-restart; elsewhere: restart a running service)."""
    lines = [line, *platform.apply_setting_change(changed=changed, restart=restart)]
    if context.dry_run:
        lines += ["plan (nothing was changed):", context.runner.render_plan()]
    emit(Result(lines=lines), as_json=False)
