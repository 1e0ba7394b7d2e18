"""`ollamactl doctor [--json] [--fix] [--only ID]`: every known pitfall as a check with a fix."""

from __future__ import annotations

import sys

import typer

from ollamactl.cli.common import JsonOption, emit, environ, make_context
from ollamactl.output import Result


def doctor(
    ctx: typer.Context,
    as_json: bool = JsonOption,
    fix: bool = typer.Option(False, "--fix", help="Apply the safe fixes, after confirmation."),
    only: list[str] = typer.Option([], "--only", metavar="ID",
                                   help="Run only this check or area (repeatable)."),
) -> None:
    """Check the service, settings, storage, machine and GPUs; exit 3 when a check fails."""
    from ollamactl.doctor.finding import exit_code_for, summarize
    from ollamactl.doctor.fixes import apply_fixes, safe_fixes
    from ollamactl.doctor.probe import Probe
    from ollamactl.doctor.render import render_findings, use_colour
    from ollamactl.doctor.suite import run_checks

    context = make_context(ctx, as_json=as_json)
    env = environ()
    findings = run_checks(Probe(context, environ=env), only)
    data: dict[str, object] = {"findings": [f.as_dict() for f in findings],
                               "summary": summarize(findings)}
    lines = render_findings(findings, colour=use_colour(isatty=sys.stdout.isatty(), environ=env))
    if fix:
        todo = safe_fixes(findings)
        if not todo:
            lines.append("no safe fix to apply")
        else:
            shown = [f"  {f.id}: {' '.join(c)}" for f, x in todo for c in x.commands]
            typer.echo("\n".join([*lines, "safe fixes:", *shown]), err=as_json)
            lines = []
            if context.assume_yes or context.dry_run or typer.confirm("apply them?",
                                                                      err=as_json):
                applied = apply_fixes(context, todo)
                data["applied"] = [a.__dict__ for a in applied]
                lines += [f"{'done' if a.ok else 'FAILED'}: {' '.join(a.command)}"
                          + (f" ({a.error})" if a.error else "") for a in applied]
                if context.dry_run:
                    lines = [context.runner.render_plan()]
                lines.append("run `ollamactl doctor` again to see the result")
    emit(Result(data=data, lines=lines, exit_code=exit_code_for(findings)), as_json=as_json)
