"""The root typer app: global options and the command groups."""

from __future__ import annotations

from pathlib import Path

import typer

import ollamactl.cli.doctor as doctor_cmd
import ollamactl.cli.env as env_cmds
import ollamactl.cli.expose as expose_cmds
import ollamactl.cli.fleet as fleet_cmds
import ollamactl.cli.gpu as gpu_cmds
import ollamactl.cli.models as model_cmds
import ollamactl.cli.pending as pending
import ollamactl.cli.run as run_cmd
import ollamactl.cli.runtime as runtime_cmds
import ollamactl.cli.serve as serve_cmd
import ollamactl.cli.service_cmds as service_cmds
import ollamactl.cli.top as top_cmd
from ollamactl import __version__
from ollamactl.cli.common import GlobalOptions, setup_logging

app = typer.Typer(
    name="ollamactl",
    help="Install, configure, diagnose and run a local LLM service that speaks the Ollama API.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=True,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"ollamactl version {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logs."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log output."),
    dry_run: bool = typer.Option(False, "--dry-run",
                                 help="Print the commands and writes; change nothing."),
    root: Path = typer.Option(Path("/"), "--root", help="Stage every system path under DIR.",
                              metavar="DIR"),
    yes: bool = typer.Option(False, "--yes", "-y", help="Assume yes at every confirmation."),
) -> None:
    opts = GlobalOptions(debug=debug, verbose=verbose, dry_run=dry_run, root=root, yes=yes)
    ctx.obj = opts
    setup_logging(opts)


app.add_typer(env_cmds.app, name="env")
app.add_typer(gpu_cmds.app, name="gpu")
app.add_typer(expose_cmds.app, name="expose")
app.add_typer(fleet_cmds.app, name="fleet")
app.add_typer(runtime_cmds.app, name="runtime")
app.command("doctor")(doctor_cmd.doctor)
app.command("serve")(serve_cmd.serve)
app.command("run", cls=run_cmd.RunCommand)(run_cmd.run)
app.command("top")(top_cmd.top)
model_cmds.register(app)
service_cmds.register(app)
pending.register(app)
