"""`ollamactl fleet status HOST...`: version, health, loaded models and queue of each server."""

from __future__ import annotations

import typer

from ollamactl import fleet
from ollamactl.cli.common import JsonOption, emit
from ollamactl.errors import EXIT_ERROR, EXIT_OK
from ollamactl.output import Result, table

app = typer.Typer(help="Look at several servers at once (through their API).",
                  no_args_is_help=True)


@app.command("status")
def status(
    hosts: list[str] = typer.Argument(..., metavar="HOST[:PORT]...",
                                      help="Servers or fronts (default port 11434)."),
    timeout: float = typer.Option(3.0, "--timeout", metavar="SECONDS",
                                  help="Per-request timeout for each host."),
    token: str | None = typer.Option(None, "--token", envvar="OLLAMACTL_FLEET_TOKEN",
                                     help="Bearer token for hosts behind an nginx front."),
    as_json: bool = JsonOption,
) -> None:
    """One line per host; exit 1 when any host is not up."""
    statuses = fleet.fleet_status(fleet.parse_hosts(hosts), timeout_s=timeout, token=token)
    code = EXIT_OK if all(s.status == fleet.UP for s in statuses) else EXIT_ERROR
    emit(Result(data=[s.as_dict() for s in statuses],
                lines=table(fleet.table_rows(statuses), fleet.HEADERS), exit_code=code),
         as_json=as_json)
