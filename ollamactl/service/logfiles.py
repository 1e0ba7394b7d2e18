"""The one reader of the server's log files: ollamactl's watchdog log and the files that launchd
and the Windows task or service write (``ollamactl logs``: ``-n``, ``--since``, ``-f``).

Older copies are ``server-1.log``, ``server-2.log`` ... (Ollama's app rotates that way) or
``server.log.1``, ``ollama.log.1`` ... (logrotate style, the watchdog's); both are read, oldest
first. ``--since`` understands the stamps the watchdog and the servers write: a bare ISO prefix
(the watchdog's, before every line), ``time=2025-01-31 12:00:00,123`` (ollamactl serve),
``time=2025-01-31T12:00:00.123+01:00`` (Ollama's slog) and ``[GIN] 2025/01/31 - 12:00:00``.
A line without a stamp belongs to the last stamped one.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

from ollamactl.service.base import LogQuery, LogSource

_ISO = re.compile(r"^(?:time=)?(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?"
                  r"(?:Z|[+-]\d{2}:?\d{2})?)(?:\s|$)")
_GIN = re.compile(r"^\[GIN\] (\d{4})/(\d{2})/(\d{2}) - (\d{2}):(\d{2}):(\d{2})")
_ROTATED = re.compile(r"^(?P<stem>.+?)(?:-(?P<dash>\d+)(?P<ext>\.[^.]+)|(?P<ext2>\.[^.]+)\."
                      r"(?P<dot>\d+))$")


def line_time(line: str) -> float | None:
    """The unix time a log line starts with, or None when it has no stamp."""
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


def lines_since(lines: list[str], start: float,
                stamp_of: Callable[[str], float | None]) -> list[str]:
    """The lines stamped at or after ``start`` (unstamped lines follow their predecessor)."""
    kept: list[str] = []
    keep = False
    for line in lines:
        stamp = stamp_of(line)
        if stamp is not None:
            keep = stamp >= start
        if keep:
            kept.append(line)
    return kept


class LogFile(LogSource):
    """A log file and its rotated copies; ``follow`` polls for appended lines."""

    def __init__(self, path: Path, *, poll_s: float = 0.5) -> None:
        self.path = path
        self.location = str(path)
        self.poll_s = poll_s

    def files(self) -> list[Path]:
        """The log and its rotated copies, oldest first."""
        return rotated_logs(self.path)

    def read(self, query: LogQuery) -> Iterator[str]:
        start = _tail_position(self.path)  # before reading, so no line falls in between
        lines: list[str] = []
        for file in self.files():
            with contextlib.suppress(FileNotFoundError):
                lines.extend(file.read_text(errors="replace").splitlines())
        if query.since is not None:
            lines = lines_since(lines, query.since, line_time)
        if query.lines is not None:
            lines = lines[-query.lines:] if query.lines > 0 else []
        yield from lines
        if query.follow:
            yield from self._follow(*start)

    def _follow(self, position: int, inode: int) -> Iterator[str]:
        """New lines appended after ``position`` of the file ``inode``."""
        pending = b""
        while True:
            try:
                stat = self.path.stat()
            except FileNotFoundError:
                time.sleep(self.poll_s)
                continue
            if stat.st_ino != inode or stat.st_size < position:
                position, inode = 0, stat.st_ino  # rotated: the new file starts empty
            if stat.st_size > position:
                with self.path.open("rb") as src:
                    src.seek(position)
                    chunk = src.read()
                position += len(chunk)
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for raw in complete:
                    yield raw.decode(errors="replace")
            else:
                time.sleep(self.poll_s)


def _tail_position(path: Path) -> tuple[int, int]:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return 0, -1
    return stat.st_size, stat.st_ino
