"""Doctor: every known pitfall as a check that gives a finding (ok, warn, fail or skip) and a fix.

    registry.py      Check, the @check decorator, run_checks(); checks_*.py register by area
    finding.py       Finding and Fix, the data every check returns
    probe.py         Probe: the facts checks share, read lazily and once (unit, env, HTTP, GPUs)
    fixes.py         the safe fixes --fix applies through ctx.runner
    render.py        the coloured table and summary line

Exit code: 3 (errors.EXIT_CHECK_FAILED) when any check fails; warnings do not fail.
"""

from __future__ import annotations

from ollamactl.doctor.finding import FAIL, OK, SKIP, WARN, Finding, Fix, exit_code_for, summarize
from ollamactl.doctor.probe import Probe
from ollamactl.doctor.registry import CHECKS, Check, all_checks, run_checks

__all__ = ["CHECKS", "FAIL", "OK", "SKIP", "WARN", "Check", "Finding", "Fix", "Probe",
           "all_checks", "exit_code_for", "run_checks", "summarize"]
