"""The frozen Context every command receives: host facts, staging root, runner, output mode."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ollamactl.host import HostFacts
from ollamactl.system import Runner


@dataclass(frozen=True)
class Context:
    """What a command needs to know about how it was invoked and where it runs."""

    host: HostFacts
    runner: Runner
    root: Path = Path("/")
    dry_run: bool = False
    json: bool = False
    assume_yes: bool = False
    debug: bool = False

    def path(self, absolute: str | Path) -> Path:
        """``absolute`` (a path on the target system) under the staging root."""
        text = str(absolute)
        if not text.startswith("/"):
            raise ValueError(f"expected an absolute path, got {text!r}")
        return self.root / text.lstrip("/") if self.root != Path("/") else Path(text)
