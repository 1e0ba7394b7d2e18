"""Wall time of `ollamactl --help` and `ollamactl env list` against `python -c pass`.

Runs each command N times alternately in one run and prints min / median / mean in ms, plus
ollamactl's cost over a bare interpreter start. Target: `--help` under 150 ms on the project's
2-core machine. Prints numbers only; nothing here asserts a time.

    .venv/bin/python bench/bench_cli.py [--runs 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

from cmdtime import alternate

BIN = Path(sys.executable).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    script = str(BIN / "ollamactl")
    cases = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "ollamactl --help": [script, "--help"],
        "ollamactl env list": [script, "env", "list"],
        "ollamactl env get OLLAMA_HOST": [script, "env", "get", "OLLAMA_HOST"],
    }
    samples = alternate(cases, args.runs, warm=True)
    base = statistics.median(samples["python -c pass"])
    print(f"{'command':<32}{'min ms':>9}{'median':>9}{'mean':>9}{'over python':>13}")
    for name, values in samples.items():
        med = statistics.median(values)
        print(f"{name:<32}{min(values):>9.1f}{med:>9.1f}{statistics.fmean(values):>9.1f}"
              f"{med - base:>13.1f}")
    print(f"runs={args.runs} cpus={os.cpu_count()} python={sys.version.split()[0]}")


if __name__ == "__main__":
    main()
