"""`ollamactl install | update | uninstall | start | restart | status | logs` (and stop_service,
which `ollamactl stop` without a model calls)."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from datetime import datetime
from pathlib import Path

import typer

from ollamactl import settings
from ollamactl.cli.common import JsonOption, emit, global_options, make_context
from ollamactl.client import Client, bind_address, client_url
from ollamactl.context import Context
from ollamactl.errors import OllamactlError, UsageError
from ollamactl.humanize import duration_hms
from ollamactl.output import Result
from ollamactl.service.base import LogQuery, ServiceState
from ollamactl.service.platforms import for_host, get_service_manager

RootOption = typer.Option(None, "--root", metavar="DIR",
                          help="Stage everything under DIR (same as the global --root).")
DryRunOption = typer.Option(False, "--dry-run", help="Print the plan; change nothing.")
YesOption = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation.")


def _context(ctx: typer.Context, root: Path | None, dry_run: bool, yes: bool,
             *, as_json: bool = False) -> Context:
    """The Context, with this command's --root/--dry-run/--yes added to the global ones."""
    opts = global_options(ctx)
    merged = dataclasses.replace(opts, root=root or opts.root, dry_run=dry_run or opts.dry_run,
                                 yes=yes or opts.yes)
    ctx.find_root().obj = merged
    return make_context(ctx, as_json=as_json)


def _install(ctx: typer.Context, root: Path | None, dry_run: bool, yes: bool, force: bool,
             self_contained: bool, as_json: bool, system: bool | None = False) -> None:
    from ollamactl.install import InstallOptions
    from ollamactl.service.platforms import install

    context = _context(ctx, root, dry_run, yes, as_json=as_json)
    report = install(context, InstallOptions(force=force, self_contained=self_contained,
                                              system=system))
    verb = "update" if report.update else "install"
    lines = [*(f"note: {n}" for n in report.notes)]
    if context.dry_run:
        lines += [f"plan ({verb}, {report.backend}; nothing was changed):", *report.done]
    else:
        lines += report.done or [f"nothing to change: the {verb} is already in place"]
        if report.url:
            lines.append(f"The Ollama API is now available at {report.url} "
                         f"({report.version or 'version unknown'}).")
        lines += ["next: `ollamactl status`, `ollamactl logs -f`, "
                  "`ollamactl env set OLLAMA_HOST 0.0.0.0` to listen on the network"]
    data = {**dataclasses.asdict(report), "dry_run": context.dry_run}
    emit(Result(data=data, lines=lines), as_json=as_json)


def install(ctx: typer.Context, root: Path | None = RootOption, dry_run: bool = DryRunOption,
            yes: bool = YesOption,
            force: bool = typer.Option(False, "--force",
                                       help="Replace a real Ollama's unit (kept for uninstall)."),
            self_contained: bool = typer.Option(
                False, "--self-contained", help="Always build the runtime in /opt/ollamactl."),
            system: bool = typer.Option(
                False, "--system", help="macOS: a LaunchDaemon run as _ollama (headless Macs); "
                                       "Windows: a service (Administrator)."),
            as_json: bool = JsonOption) -> None:
    """Install the service (user, runtime, models dir, unit or watchdog) and start it."""
    _install(ctx, root, dry_run, yes, force, self_contained, as_json, system)


def update(ctx: typer.Context, root: Path | None = RootOption, dry_run: bool = DryRunOption,
           yes: bool = YesOption, as_json: bool = JsonOption) -> None:
    """Update the installed service: stop, replace what changed, start, confirm the version."""
    context = _context(ctx, root, dry_run, yes, as_json=as_json)
    if for_host(context).load_manifest() is None:
        raise UsageError("nothing to update: ollamactl is not installed here",
                         hint="run `ollamactl install`")
    _install(ctx, root, dry_run, yes, False, False, as_json, system=None)


def uninstall(ctx: typer.Context, root: Path | None = RootOption, dry_run: bool = DryRunOption,
              yes: bool = YesOption,
              purge: bool = typer.Option(False, "--purge", help="Also delete the models."),
              as_json: bool = JsonOption) -> None:
    """Remove exactly what install created; models are kept unless --purge."""
    from ollamactl.service.platforms import plan_uninstall
    from ollamactl.service.platforms import uninstall as run_uninstall

    context = _context(ctx, root, dry_run, yes, as_json=as_json)
    plan = plan_uninstall(context, purge=purge)
    if not as_json:
        typer.echo("uninstall will:")
        for step in plan.steps:
            typer.echo(f"  - {step}")
    if not context.dry_run and not context.assume_yes and not sys.stdin.isatty():
        raise UsageError("uninstall needs a confirmation", hint="pass --yes to confirm "
                         "without a terminal")
    if not context.dry_run and not context.assume_yes \
            and not typer.confirm("Go ahead?", default=False):
        emit(Result(data={"cancelled": True}, lines=["cancelled; nothing was changed"],
                    exit_code=1), as_json=as_json)
        return
    done = run_uninstall(context, plan)
    emit(Result(data={"steps": plan.steps, "done": done, "dry_run": context.dry_run},
                lines=done or ["nothing to remove"]), as_json=as_json)


def start(ctx: typer.Context, wait: float = typer.Option(60.0, "--wait", metavar="SECONDS",
          help="How long to wait for the server to answer (0: do not wait)."),
          as_json: bool = JsonOption) -> None:
    """Start the service (under systemd, or ollamactl's watchdog where no init system runs)."""
    context = make_context(ctx, as_json=as_json)
    manager = get_service_manager(context)
    manager.start()
    url = client_url(manager.env_store().read())
    if wait > 0 and not context.dry_run:
        with Client(url) as client:
            client.wait_until_up(wait)
    emit(Result(data={"backend": manager.name, "url": url},
                lines=[f"started ({manager.name}); serving at {url}"]), as_json=as_json)


def stop_service(ctx: Context | None = None) -> str:
    """Stop the service and its runners, and say so; `ollamactl stop` without a model calls
    this. Without ``ctx``, a plain one for this host is used."""
    if ctx is None:
        from ollamactl import host as hostmod
        from ollamactl.system import SystemRunner

        ctx = Context(host=hostmod.detect(), runner=SystemRunner())
    manager = get_service_manager(ctx)
    manager.stop()
    summary = f"stopped ({manager.name})"
    typer.echo(summary)
    return summary


def restart(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """Restart the service (picks up changed settings)."""
    context = make_context(ctx, as_json=as_json)
    manager = get_service_manager(context)
    manager.restart()
    emit(Result(data={"backend": manager.name}, lines=[f"restarted ({manager.name})"]),
         as_json=as_json)


def status(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """Show state, pid, uptime, bind address, version and loaded models."""
    context = make_context(ctx, as_json=as_json)
    manager = get_service_manager(context)
    state = manager.status()
    env = manager.env_store().read()
    url = client_url(env)
    version = models = None
    if not context.dry_run and state.active in ("active", "unknown"):
        with Client(url, connect_timeout_s=2.0, read_timeout_s=2.0) as client, \
                contextlib.suppress(OllamactlError):  # no answer: version and models stay None
            version = client.version()
            models = [str(m.get("name")) for m in client.ps().get("models") or []
                      if isinstance(m, dict)]
    data = {**dataclasses.asdict(state), "bind": bind_address(env), "url": url,
            "version": version.api if version else None,
            "ollamactl_version": version.ollamactl if version else None,
            "server": str(version) if version else None, "models": models}
    emit(Result(data=data, lines=_status_lines(state, data)), as_json=as_json)


def _status_lines(state: ServiceState, data: dict[str, object]) -> list[str]:
    uptime = f"{duration_hms(time.time() - state.started_at)}" if state.started_at else "-"
    lines = [f"backend:  {state.backend} ({state.definition or '-'})",
             f"state:    {state.active}" + (f" ({state.detail})" if state.detail else ""),
             f"pid:      {state.pid or '-'}", f"uptime:   {uptime}",
             f"bind:     {data['bind']}", f"version:  {data['server'] or '-'}"]
    models = data["models"]
    if isinstance(models, list):
        lines.append(f"loaded:   {', '.join(models) if models else 'no models loaded'}")
    if state.enabled is not None:
        lines.append(f"enabled:  {'yes' if state.enabled else 'no'}")
    lines += [f"{k + ':':<9} {v}" for k, v in state.extra.items() if v]
    return lines


def parse_since(text: str, *, now: float | None = None) -> float:
    """--since: an ISO date/time (``2025-01-31 12:00``), ``@UNIXTIME``, ``today``,
    ``yesterday``, or a duration ago (``10m``, ``1h30m``, ``-2h``).

    Raises:
        UsageError: none of those.
    """
    current = time.time() if now is None else now
    value = text.strip()
    midnight = datetime.fromtimestamp(current).replace(hour=0, minute=0, second=0,
                                                       microsecond=0).timestamp()
    if value == "today":
        return midnight
    if value == "yesterday":
        return midnight - 86400
    if value == "now":
        return current
    if value.startswith("@"):
        try:
            return float(value[1:])
        except ValueError:
            pass
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        pass
    try:
        seconds = settings.parse_go_duration(value.removeprefix("-").removesuffix(" ago"))
    except settings.Invalid:
        raise UsageError(f"cannot read --since {text!r}",
                         hint="use e.g. '2025-01-31 12:00', '10m', '1h30m', 'today' or "
                              "'@1700000000'") from None
    return current - abs(seconds)


def logs(ctx: typer.Context,
         follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines."),
         lines: int | None = typer.Option(None, "--lines", "-n", min=0,
                                          help="Show the last N lines."),
         since: str | None = typer.Option(None, "--since",
                                          help="Only lines since TIME ('10m', '2025-01-31 12:00',"
                                               " 'today')."),
         ) -> None:
    """Show the service's log (journalctl under systemd, the watchdog's log file otherwise)."""
    context = make_context(ctx)
    query = LogQuery(lines=lines, since=parse_since(since) if since else None, follow=follow)
    source = for_host(context).log_source()
    try:
        for line in source.read(query):
            typer.echo(line)
    except KeyboardInterrupt:
        return


def register(app: typer.Typer) -> None:
    """Add these commands to the root app."""
    for name, command in (("install", install), ("update", update), ("uninstall", uninstall),
                          ("start", start), ("restart", restart), ("status", status),
                          ("logs", logs)):
        app.command(name)(command)

