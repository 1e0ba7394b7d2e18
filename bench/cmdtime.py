"""Wall time of whole commands, run alternately so that every case sees the same machine."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Mapping, Sequence


def measure(argv: Sequence[str], *, check: bool = True) -> float:
    """Milliseconds ``argv`` takes from spawn to exit, its output discarded."""
    start = time.perf_counter()
    subprocess.run(list(argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=check)
    return (time.perf_counter() - start) * 1000


def alternate(cases: Mapping[str, Sequence[str]], runs: int, *, check: bool = True,
              warm: bool = False) -> dict[str, list[float]]:
    """``runs`` samples per case, one case after the other in each round (after one warm-up
    round when ``warm``, to fill the page cache)."""
    if warm:
        for argv in cases.values():
            measure(argv, check=check)
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):
        for name, argv in cases.items():
            samples[name].append(measure(argv, check=check))
    return samples
