"""``doctor --fix``: the safe fixes of failing and warning findings, applied through the runner."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass

from ollamactl.context import Context
from ollamactl.doctor.finding import FAIL, WARN, Finding, Fix
from ollamactl.errors import CommandFailed
from ollamactl.system import Cmd


@dataclass(frozen=True)
class Applied:
    finding_id: str
    command: tuple[str, ...]
    ok: bool
    error: str = ""


def safe_fixes(findings: Iterable[Finding]) -> list[tuple[Finding, Fix]]:
    """Findings that warn or fail and carry a fix marked safe, with commands to run."""
    return [(f, f.fix) for f in findings
            if f.status in (FAIL, WARN) and f.fix is not None and f.fix.safe and f.fix.commands]


def argv_for(command: tuple[str, ...]) -> tuple[str, ...]:
    """``ollamactl ...`` runs this very ollamactl (its interpreter), not whatever is on PATH."""
    if command and command[0] == "ollamactl":
        return (sys.executable, "-m", "ollamactl", *command[1:])
    return command


def apply_fixes(ctx: Context, fixes: list[tuple[Finding, Fix]]) -> list[Applied]:
    """Run each fix's commands in order; a failing command stops that fix, not the others."""
    applied = []
    for finding, fix in fixes:
        for command in fix.commands:
            try:
                ctx.runner.run(Cmd(argv_for(command), why=f"doctor fix for {finding.id}"))
            except CommandFailed as exc:
                applied.append(Applied(finding.id, command, False, exc.message))
                break
            applied.append(Applied(finding.id, command, True))
    return applied
