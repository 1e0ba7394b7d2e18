"""`ollamactl gpu list|check|reload-uvm`: the GPU inventory, per-device verdicts, the UVM reload."""

from __future__ import annotations

from collections.abc import Mapping

import typer

from ollamactl.cli.common import JsonOption, emit, environ, make_context
from ollamactl.context import Context
from ollamactl.errors import EXIT_CHECK_FAILED, EXIT_OK
from ollamactl.gpu import NA, GpuInventory, NaType, scan_gpus, worst_level
from ollamactl.humanize import gib
from ollamactl.output import Result, table

app = typer.Typer(help="List GPUs, check their compatibility, reload nvidia_uvm.",
                  no_args_is_help=True)


def server_environ(context: Context) -> dict[str, str]:
    """The settings the server runs with, as doctor judges them: the service's persisted ones,
    else this process's (a server started by hand inherits them)."""
    from ollamactl.service.platforms import service_environ

    service = service_environ(context)
    return service if service is not None else environ()


def scan(context: Context, env: Mapping[str, str] | None = None) -> GpuInventory:
    return scan_gpus(host=context.host, environ=server_environ(context) if env is None else env,
                     root=context.root, runner=context.runner)


@app.command("list")
def list_(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """List GPUs: name, compute capability or gfx target, VRAM, driver, UUID."""
    context = make_context(ctx, as_json=as_json)
    inventory = scan(context)
    rows = [(f"{g.vendor}:{g.index}", g.name, g.compute, _vram(g.vram_total_bytes),
             _vram(g.vram_free_bytes), str(g.driver_version), str(g.uuid),
             "yes" if g.visible else "no") for g in inventory.gpus]
    lines = table(rows, ("GPU", "NAME", "COMPUTE", "VRAM", "FREE", "DRIVER", "UUID", "VISIBLE")) \
        if rows else ["no GPU found: the server will run on the CPU"]
    lines += _trailer(inventory)
    emit(Result(data=inventory.as_dict(), lines=lines), as_json=as_json)


@app.command("check")
def check(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """Say for each GPU whether the server can use it, why, and what to do (exit 3 on failure)."""
    context = make_context(ctx, as_json=as_json)
    inventory = scan(context)
    rows = [(f"{g.vendor}:{g.index}", g.name, g.compute,
             g.verdict.code if g.visible else "hidden", g.verdict.reason)
            for g in inventory.gpus]
    lines = table(rows, ("GPU", "NAME", "COMPUTE", "VERDICT", "REASON")) if rows \
        else ["no GPU found: the server will run on the CPU"]
    lines += [f"  {g.vendor}:{g.index}: {g.verdict.advice}" for g in inventory.gpus
              if g.visible and g.verdict.advice]
    lines += _trailer(inventory)
    failed = worst_level(inventory.gpus) == "fail" or any(p.hardware for p in inventory.problems)
    code = EXIT_CHECK_FAILED if failed else EXIT_OK
    emit(Result(data=inventory.as_dict(), lines=lines, exit_code=code), as_json=as_json)


@app.command("reload-uvm")
def reload_uvm(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """After suspend/resume: stop the service, reload nvidia_uvm, start it, confirm the GPU."""
    from ollamactl.gpu.uvm import reload_uvm as do_reload
    from ollamactl.service.platforms import get_service_manager

    context = make_context(ctx, as_json=as_json)
    report = do_reload(context, manager=get_service_manager(context))
    lines = [f"done: {step}" if not context.dry_run else f"would: {step}" for step in report.steps]
    if context.dry_run:
        lines = [context.runner.render_plan()]
    emit(Result(data=report.as_dict(), lines=lines), as_json=as_json)


def _trailer(inventory: GpuInventory) -> list[str]:
    lines = [f"{p.vendor}: {p.message}; {p.hint}" for p in inventory.problems]
    lines += [f"note: {n}" for n in inventory.notes]
    if inventory.amd_overrides:
        lines.append("suggested: " + " ".join(f"{k}={v}" for k, v in
                                              inventory.amd_overrides.items()))
    return lines


def _vram(value: int | NaType) -> str:
    return "N/A" if value is NA or not isinstance(value, int) else gib(value)
