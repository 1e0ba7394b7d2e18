"""What a doctor check returns: a Finding (status, one-line summary, detail, fix)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ollamactl.errors import EXIT_CHECK_FAILED, EXIT_OK

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
STATUSES = (OK, WARN, FAIL, SKIP)


@dataclass(frozen=True)
class Fix:
    """What to do about a finding: words, and the commands that do it.

    ``safe`` fixes may be applied by ``doctor --fix`` (after confirmation) through the command
    runner; ``ollamactl ...`` commands run this same ollamactl.
    """

    summary: str
    commands: tuple[tuple[str, ...], ...] = ()
    safe: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"summary": self.summary, "commands": [list(c) for c in self.commands],
                "safe": self.safe}

    def display(self) -> str:
        shown = "; ".join(" ".join(c) for c in self.commands)
        return f"{self.summary}: {shown}" if shown else self.summary


@dataclass(frozen=True)
class Finding:
    """One check's answer. ``skip`` findings say why in ``summary``."""

    id: str
    status: str
    summary: str
    detail: str = ""
    fix: Fix | None = None
    title: str = ""
    area: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "area": self.area, "title": self.title, "status": self.status,
                "summary": self.summary, "detail": self.detail,
                "fix": self.fix.as_dict() if self.fix else None, "data": self.data}


def ok(summary: str, detail: str = "", **data: Any) -> Finding:
    return Finding("", OK, summary, detail, data=data)


def warn(summary: str, detail: str = "", fix: Fix | None = None, **data: Any) -> Finding:
    return Finding("", WARN, summary, detail, fix, data=data)


def fail(summary: str, detail: str = "", fix: Fix | None = None, **data: Any) -> Finding:
    return Finding("", FAIL, summary, detail, fix, data=data)


def skip(reason: str) -> Finding:
    return Finding("", SKIP, reason)


def summarize(findings: Iterable[Finding]) -> dict[str, int]:
    counts = Counter(f.status for f in findings)
    return {status: counts.get(status, 0) for status in STATUSES}


def exit_code_for(findings: Iterable[Finding]) -> int:
    """3 when any check failed; warnings and skips do not fail."""
    return EXIT_CHECK_FAILED if any(f.status == FAIL for f in findings) else EXIT_OK
