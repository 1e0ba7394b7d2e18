"""Results of commands and their rendering, as text for people or JSON for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from ollamactl.errors import EXIT_OK


@dataclass
class Result:
    """What a command produced: data for ``--json``, lines for people, and an exit code."""

    data: Any = None
    lines: list[str] = field(default_factory=list)
    exit_code: int = EXIT_OK


def render(result: Result, *, as_json: bool, stream: TextIO | None = None) -> int:
    """Print ``result`` and return its exit code."""
    out = stream or sys.stdout
    if as_json:
        json.dump(result.data, out, indent=2, sort_keys=False, default=str)
        out.write("\n")
    elif result.lines:
        out.write("\n".join(result.lines) + "\n")
    return result.exit_code


def table(rows: Sequence[Sequence[str]], headers: Sequence[str], *, gap: int = 4) -> list[str]:
    """Left-aligned columns without borders, padded like `ollama ps` (4 spaces)."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    pad = " " * gap

    def line(cells: Sequence[str]) -> str:
        return pad.join(c.ljust(widths[i]) for i, c in enumerate(cells)).rstrip()

    return [line(headers), *(line(r) for r in rows)]
