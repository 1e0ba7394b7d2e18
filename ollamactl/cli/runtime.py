"""`ollamactl runtime show|selftest`: the llama.cpp runtime's CPU libraries, which one serves
and why, and the self-test that proves them on this machine.

Both act on the runtime the installed service runs (which may be the copy under /opt), else on
this environment's.
"""

from __future__ import annotations

import subprocess
from typing import Any

import typer

from ollamactl.cli.common import JsonOption, emit, make_context
from ollamactl.cli.gpu import server_environ
from ollamactl.context import Context
from ollamactl.errors import OllamactlError
from ollamactl.install.runtime import runtime_report, service_python
from ollamactl.output import Result, table
from ollamactl.service.platforms import for_host

app = typer.Typer(help="Show the runtime's CPU libraries and self-test them on this machine.",
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
