"""Global options shared by every command, and how a command turns them into a Context."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import typer

from ollamactl import host as hostmod
from ollamactl.context import Context
from ollamactl.errors import UsageError
from ollamactl.output import Result, render
from ollamactl.system import PlanRunner, Runner, SystemRunner


@dataclass(frozen=True)
class GlobalOptions:
    debug: bool = False
    verbose: int = 0
    dry_run: bool = False
    root: Path = Path("/")
    yes: bool = False


JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON.")


def global_options(ctx: typer.Context) -> GlobalOptions:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, GlobalOptions) else GlobalOptions()


def make_context(ctx: typer.Context, *, as_json: bool = False,
                 runner: Runner | None = None) -> Context:
    """Build the frozen Context for one command invocation."""
    opts = global_options(ctx)
    if not opts.root.is_absolute():
        raise UsageError(f"--root must be an absolute path, got {opts.root}")
    if runner is None:
        runner = PlanRunner() if opts.dry_run else SystemRunner()
    return Context(host=hostmod.detect(), runner=runner, root=opts.root, dry_run=opts.dry_run,
                   json=as_json, assume_yes=opts.yes, debug=opts.debug)


def setup_logging(opts: GlobalOptions) -> None:
    level = logging.DEBUG if opts.debug or opts.verbose > 1 else (
        logging.INFO if opts.verbose else logging.WARNING)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def emit(result: Result, *, as_json: bool) -> int:
    code = render(result, as_json=as_json)
    if code:
        raise typer.Exit(code)
    return code


def environ() -> dict[str, str]:
    return dict(os.environ)
