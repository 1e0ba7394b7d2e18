"""Doctor's human output: a compact table (coloured on a terminal, NO_COLOR respected) with the
detail and fix under each warning or failure, then one summary line."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ollamactl.doctor.finding import FAIL, OK, SKIP, WARN, Finding, summarize

LABELS = {OK: "ok", WARN: "warn", FAIL: "FAIL", SKIP: "skip"}
COLOURS = {OK: "32", WARN: "33", FAIL: "31;1", SKIP: "2"}


def use_colour(*, isatty: bool, environ: Mapping[str, str]) -> bool:
    """Colour only on a terminal and never when NO_COLOR is set (https://no-color.org)."""
    return isatty and "NO_COLOR" not in environ and environ.get("TERM") != "dumb"


def render_findings(findings: Sequence[Finding], *, colour: bool,
                    show_skipped_reasons: bool = True) -> list[str]:
    width = max((len(f.id) for f in findings), default=10)
    lines = []
    for f in findings:
        label = LABELS[f.status].ljust(4)
        if colour:
            label = f"\x1b[{COLOURS[f.status]}m{label}\x1b[0m"
        summary = f.summary if f.status != SKIP or show_skipped_reasons else ""
        lines.append(f"{label}  {f.id.ljust(width)}  {summary}".rstrip())
        if f.status in (WARN, FAIL):
            lines += [f"      {line}" for line in f.detail.splitlines() if line.strip()]
            if f.fix is not None:
                marker = " (auto with --fix)" if f.fix.safe and f.fix.commands else ""
                lines.append(f"      fix{marker}: {f.fix.display()}")
    lines.append(summary_line(findings))
    return lines


def summary_line(findings: Sequence[Finding]) -> str:
    counts = summarize(findings)
    return (f"{len(findings)} checks: {counts[OK]} ok, {counts[WARN]} warning(s), "
            f"{counts[FAIL]} failed, {counts[SKIP]} skipped")
