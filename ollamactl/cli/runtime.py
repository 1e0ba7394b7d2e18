"""`ollamactl runtime show|selftest|list|build|remove`: the llama.cpp runtime's CPU libraries,
which one serves and why, the self-test that proves them on this machine, and its GPU runtimes.

``show`` and ``selftest`` act on the runtime the installed service runs (which may be the copy
under /opt), else on this environment's. ``list``, ``build`` and ``remove`` act on the GPU
runtime cache and this environment's runtime (an install or update copies them to /opt).
"""

from __future__ import annotations

import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import typer

from ollamactl.cli.common import JsonOption, emit, make_context
from ollamactl.cli.gpu import server_environ
from ollamactl.context import Context
from ollamactl.errors import OllamactlError, UsageError
from ollamactl.humanize import bytes_iec
from ollamactl.install.runtime import runtime_report, service_python
from ollamactl.output import Result, table
from ollamactl.runtime.builds import gpu_backends, gpu_plan, recipe
from ollamactl.runtime.builds.toolchains import discover
from ollamactl.service.platforms import for_host

app = typer.Typer(help="Show the runtime's CPU libraries, self-test them; build GPU runtimes.",
                  no_args_is_help=True)


def installed_python(context: Context) -> str:
    """The interpreter the installed service runs, else this one (an unreadable install
    record counts as none)."""
    try:
        record = for_host(context).load_manifest()
    except (OllamactlError, OSError):
        record = None
    return service_python(context, record)


def render(data: dict[str, Any]) -> list[str]:
    """The report of :func:`runtime_report` as lines."""
    cpu = data.get("cpu") or {}
    build = data.get("build") or {}
    lines = [f"runtime: {data.get('prefix')}",
             f"CPU: {cpu.get('model') or 'unknown'} ({cpu.get('arch')})",
             "build: " + (f"llama-cpp-python {build.get('llama_cpp_python')}, portable "
                          f"(recipe {build.get('key')})" if build else
                          "not built by ollamactl (its CPU flags are unknown)")]
    rows = []
    for variant in data.get("variants") or []:
        outcome = variant.get("selftest")
        tested = "not run" if outcome is None else "pass" if outcome.get("ok") else \
            f"FAIL: {outcome.get('detail')}"
        runs = "yes" if variant["runs_here"] else "no (" + ", ".join(variant["missing"]) + ")"
        rows.append((variant["name"], variant["tag"], runs, tested))
    if rows:
        lines += ["", *table(rows, ("LIBRARY", "GGML VARIANT", "CPU RUNS IT", "SELF-TEST"))]
    lines.append("")
    gpu = data.get("gpu_runtimes") or []
    lines.append("GPU runtimes: " + (", ".join(
        f"{r['backend']} ({', '.join(r['targets']) or 'any device'})" for r in gpu)
        if gpu else "none (`ollamactl runtime build` builds those this machine's GPUs want)"))
    if "serving" in data:
        lines.append(f"serves: {data['serving']['describe']}")
    else:
        lines.append(f"serves: nothing: {data.get('error')}")
    return lines


@app.command("show")
def show(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """Which CPU library serves and why; each library, whether this CPU runs it, its test."""
    context = make_context(ctx, as_json=as_json)
    requested = server_environ(context).get("OLLAMA_LLM_LIBRARY", "")
    data = runtime_report(context, installed_python(context), requested)
    emit(Result(data=data, lines=render(data)), as_json=as_json)


@app.command("selftest")
def selftest(
    ctx: typer.Context,
    force: bool = typer.Option(False, "--force", help="Test again what passed or failed."),
    variant: str | None = typer.Option(None, "--variant",
                                       help="Test one CPU library (cpu_avx2, haswell...)."),
) -> None:
    """Decode the bundled model with each CPU library, best first, until one passes."""
    context = make_context(ctx)
    argv = [installed_python(context), "-I", "-m", "ollamactl.runtime.builds.selftest"]
    argv += ["--force"] if force else []
    argv += ["--variant", variant] if variant else []
    if subprocess.run(argv, check=False).returncode != 0:
        raise OllamactlError("no CPU library of the runtime passed its self-test here",
                             hint="`bash scripts/setup.sh` rebuilds a portable runtime")


def gpu_runtime_rows(cache: Path, lib_dir: Path | None) -> list[dict[str, Any]]:
    """Every cached GPU runtime and every installed one (an installed build whose cache entry
    is gone is listed too), with whether this environment has it installed."""
    installed = {r.record.get("key"): r for r in gpu_backends.installed_gpu_runtimes(lib_dir)}
    rows = []
    for entry in gpu_backends.cached_entries(cache):
        key = entry.record.get("key")
        rows.append(_row(entry.record, entry.library, installed=key in installed, cached=True))
    cached_keys = {row["key"] for row in rows}
    rows += [_row(r.record, r.library, installed=True, cached=False)
             for key, r in installed.items() if key not in cached_keys]
    return rows


def _row(record: Any, library: Path, *, installed: bool, cached: bool) -> dict[str, Any]:
    try:
        size: int | None = library.stat().st_size
    except OSError:
        size = None
    return {"backend": record.get("backend"), "key": record.get("key"),
            "targets": list(record.get("targets") or []),
            "llama_cpp_python": record.get("llama_cpp_python"), "toolkit": record.get("toolkit"),
            "size_bytes": size, "installed": installed, "cached": cached,
            "built_at": record.get("built_at"), "build_seconds": record.get("build_seconds"),
            "library": str(library)}


@app.command("list")
def list_(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """The GPU runtimes built here (cache) and installed in this environment."""
    make_context(ctx, as_json=as_json)
    rows = gpu_runtime_rows(recipe.cache_root(), recipe.library_dir())
    shown = [(str(r["backend"]), ",".join(r["targets"]) or "any", str(r["llama_cpp_python"]),
              bytes_iec(r["size_bytes"]) if r["size_bytes"] is not None else "?",
              "yes" if r["installed"] else "no", _date(r["built_at"]), str(r["key"]))
             for r in rows]
    lines = table(shown, ("BACKEND", "TARGETS", "LLAMA-CPP-PYTHON", "SIZE", "INSTALLED", "BUILT",
                          "KEY")) if shown else \
        ["no GPU runtime built: `ollamactl runtime build` builds those this machine's GPUs want"]
    emit(Result(data={"runtimes": rows}, lines=lines), as_json=as_json)


@app.command("build")
def build(
    ctx: typer.Context,
    backends: list[str] | None = typer.Argument(
        None, metavar="[BACKEND]...",
        help="cuda, hip, vulkan (default: what this machine's GPUs want)."),
    force: bool = typer.Option(False, "--force", help="Rebuild even when the cache has it."),
) -> None:
    """Build the GPU runtimes this machine wants (or BACKEND...) and install them here."""
    context = make_context(ctx)
    wanted = gpu_plan.forced_backends(",".join(backends)) if backends else None
    if wanted == ():
        typer.echo("nothing to build: none asked for")
        return
    lib_dir = recipe.library_dir()
    if lib_dir is None:
        raise OllamactlError("llama_cpp is not installed in this environment",
                             hint="`bash scripts/setup.sh` installs the runtime")
    tools = discover(context.runner)
    plan = gpu_plan.machine_plan(context.runner, tools, backends=wanted)
    for line in plan.lines():
        typer.echo(line)
    if context.dry_run:
        for planned in plan.to_build:
            typer.echo(f"would build and install the {planned.backend} runtime for "
                       f"{', '.join(planned.targets) or 'any device'}")
        return
    if not plan.to_build:
        if backends:
            raise OllamactlError(f"nothing to build for {', '.join(backends)}")
        typer.echo("no GPU runtime to build: no usable GPU here")
        return
    gpu_backends.ensure(plan, tools, runner=context.runner, lib_dir=lib_dir, force=force)


@app.command("remove")
def remove(ctx: typer.Context,
           name: str = typer.Argument(..., metavar="BACKEND|KEY",
                                      help="cuda, hip, vulkan, or a key from `runtime list`.")
           ) -> None:
    """Remove a GPU runtime from the cache and from this environment."""
    make_context(ctx)
    if not name.strip():
        raise UsageError("name a GPU runtime: a backend or a key from `ollamactl runtime list`")
    for path in gpu_backends.remove(name.strip(), cache=recipe.cache_root(),
                                    lib_dir=recipe.library_dir()):
        typer.echo(f"removed {path}")


def _date(value: object) -> str:
    try:
        return datetime.fromisoformat(str(value)).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return "?"
