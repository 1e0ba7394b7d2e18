"""Wall time of `ollamactl doctor` (and `gpu list`) on this machine, against `python -c pass`.

Target: `ollamactl doctor` under 1 s end to end on the project's 2-core machine (no GPU, no
systemd). Also prints the in-process time of every check, slowest first, so a regression points
at its check. Prints numbers only; nothing here asserts a time.

    .venv/bin/python bench/bench_doctor.py [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from cmdtime import alternate

BIN = Path(sys.executable).parent


def per_check_ms() -> list[tuple[float, str, str]]:
    from ollamactl.context import Context
    from ollamactl.doctor.probe import Probe
    from ollamactl.doctor.suite import all_checks, run_checks
    from ollamactl.host import detect
    from ollamactl.system import SystemRunner

    probe = Probe(Context(host=detect(), runner=SystemRunner()), environ=dict(os.environ))
    timings = []
    for check in all_checks():
        start = time.perf_counter()
        (finding,) = run_checks(probe, [check.id])
        timings.append(((time.perf_counter() - start) * 1000, check.id, finding.status))
    return sorted(timings, reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    script = str(BIN / "ollamactl")
    cases = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "ollamactl doctor": [script, "doctor"],
        "ollamactl doctor --json": [script, "doctor", "--json"],
        "ollamactl gpu list": [script, "gpu", "list"],
    }
    samples = alternate(cases, args.runs, check=False)  # doctor exits 3 when a check fails
    print(f"{'command':<26}{'min ms':>9}{'median ms':>11}{'max ms':>9}")
    for name, values in samples.items():
        print(f"{name:<26}{min(values):>9.0f}{statistics.median(values):>11.0f}"
              f"{max(values):>9.0f}")
    print("\nin-process time per check (first run: includes the shared probes it triggers)")
    timings = per_check_ms()
    for ms, check_id, status in timings[:10]:
        print(f"  {check_id:<28}{ms:>8.1f} ms  {status}")
    print(f"  ... {len(timings)} checks, total {sum(t[0] for t in timings):.0f} ms")


if __name__ == "__main__":
    main()
