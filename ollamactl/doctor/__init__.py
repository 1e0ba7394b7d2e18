"""Doctor: every known pitfall as a check that gives a finding (ok, warn, fail or skip) and a fix.

    finding.py       Finding and Fix, the data every check returns
    registry.py      Check and the @check decorator (a leaf: platform units register theirs)
    suite.py         all_checks(), run_checks(): the generic checks_*.py, then each platform's
    probe.py         Probe: the facts checks share, read lazily and once (the platform, the
                     service, HTTP, GPUs, logs, models)
    checks_*.py      the checks every platform runs, by area; a platform's own checks live in
                     its unit under ollamactl.service
    fixes.py         the safe fixes --fix applies through ctx.runner
    render.py        the coloured table and summary line

Exit code: 3 (errors.EXIT_CHECK_FAILED) when any check fails; warnings do not fail. This file
imports nothing, so a platform unit can import the registry without running doctor's modules.
"""
