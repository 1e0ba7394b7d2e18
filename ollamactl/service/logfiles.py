"""The server's log as plain files written by the OS service manager (launchd, Task Scheduler).

launchd appends the server's output to ``StandardOutPath``; on Windows the task's launcher
redirects it to ``%LOCALAPPDATA%\\Ollama\\server.log``. Older copies are ``server-1.log``,
``server-2.log`` ... (Ollama's app rotates that way) or ``server.log.1`` ... (logrotate style);
both are read, oldest first. Lines carry no stamp of ours, so ``--since`` understands the
stamps the server and Ollama write: ``time=2025-01-31 12:00:00,123`` (ollamactl serve),
``time=2025-01-31T12:00:00.123+01:00`` (Ollama's slog), ``[GIN] 2025/01/31 - 12:00:00``, and
a bare ISO prefix (the watchdog's). A line without a stamp belongs to the last stamped one.
"""

from __future__ import annotations

import contextlib
import re
from datetime import datetime
from pathlib import Path

from ollamactl.service.watchdog import WatchdogLogSource

_ISO = re.compile(r"^(?:time=)?(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?"
                  r"(?:Z|[+-]\d{2}:?\d{2})?)(?:\s|$)")
_GIN = re.compile(r"^\[GIN\] (\d{4})/(\d{2})/(\d{2}) - (\d{2}):(\d{2}):(\d{2})")
_ROTATED = re.compile(r"^(?P<stem>.+?)(?:-(?P<dash>\d+)(?P<ext>\.[^.]+)|(?P<ext2>\.[^.]+)\."
                      r"(?P<dot>\d+))$")


def line_time(line: str) -> float | None:
    """The unix time a server log line starts with, or None when it has no stamp."""
    match = _ISO.match(line)
    if match:
        try:
            return datetime.fromisoformat(match.group(1).replace(",", ".")).timestamp()
        except ValueError:
            return None
    gin = _GIN.match(line)
    if gin:
        year, month, day, hour, minute, second = (int(g) for g in gin.groups())
        return datetime(year, month, day, hour, minute, second).timestamp()
    return None


def rotated_logs(path: Path) -> list[Path]:
    """``path`` and its rotated copies (``server-N.log``, ``server.log.N``), oldest first."""
    older: list[tuple[int, Path]] = []
    with contextlib.suppress(FileNotFoundError):
        for candidate in path.parent.iterdir():
            match = _ROTATED.match(candidate.name)
            if match is None:
                continue
            if match["dash"] and match["stem"] + match["ext"] == path.name:
                older.append((int(match["dash"]), candidate))
            elif match["dot"] and match["stem"] + match["ext2"] == path.name:
                older.append((int(match["dot"]), candidate))
    older.sort(key=lambda item: -item[0])
    return [p for _, p in older] + ([path] if path.exists() else [])


class ServerLogFile(WatchdogLogSource):
    """``ollamactl logs`` over a service manager's log file: ``-n``, ``--since``, ``-f``."""

    def files(self) -> list[Path]:
        return rotated_logs(self.path)

    @staticmethod
    def stamp(line: str) -> float | None:
        return line_time(line)
