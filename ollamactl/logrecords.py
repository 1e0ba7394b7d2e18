"""The server's log records: how they are written, and which of them doctor may believe.

A record is one line, ``time=... level=... request=<id> source=<logger> msg=<text>``. Request
text reaches ``msg`` (a path, an option name), so the writer keeps every record on one line
(control characters and line separators escaped) and percent-encodes request-derived fields,
which then hold no space, ``=`` or quote: ``%0alevel=ERROR msg=CUDA error`` can neither start a
line nor read as a field. Records about requests come from the :data:`REQUEST_LOGGER`.

The reader, :func:`self_written`, keeps what the server and the runner wrote about themselves:
records of known self-describing loggers (ours, or Ollama's ``source=file.go:N``), the runner's
plain output, and the server-set head of a GIN access line. Stdlib only: doctor imports it.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from typing import TextIO
from urllib.parse import quote

#: The logger of records about a request (access lines, error answers): never believed.
REQUEST_LOGGER = "ollamactl.request"
FORMAT = "time=%(asctime)s level=%(levelname)s request=%(request_id)s source=%(name)s " \
         "msg=%(message)s"
LOG_FILE_MODE = 0o640

#: Loggers that write about the server and its runners only (names come from validated model
#: names, pids, paths of our own): their records may drive a doctor finding.
SELF_SOURCES = ("ollamactl.server", "ollamactl.runtime.runner_client",
                "ollamactl.runtime.scheduler", "ollamactl.runtime.memory",
                "ollamactl.runtime.builds", "uvicorn.error", "winservice")

# C0, DEL, C1 (NEL), line/paragraph separators, and bidi controls that reorder a terminal line.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_FIELD_SAFE = "/:@!$&'()*+,;[]"
_WATCHDOG_STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\S+ ")
_RECORD = re.compile(r"^time=\S+(?: \d[\d:,.]*)? level=\S+ (?P<ours>request=\S+ )?"
                     r"source=(?P<source>\S+) msg=(?P<msg>.*)$")
_GO_SOURCE = re.compile(r"^[\w.-]+\.go:\d+$")
_QUOTED = re.compile(r'^"((?:[^"\\]|\\.)*)"')


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100
                                else f"\\u{ord(char):04x}")


def one_line(text: str) -> str:
    """``text`` with control characters and line separators escaped (``\\n``, ``\\u2028``)."""
    return _UNSAFE.sub(_escape, text)


def request_field(text: str) -> str:
    """Request text for a record: percent-encoded beyond a plain URL set, so it is one field
    (no space, ``=``, quote, ``%``, control or non-ASCII character) and looks like no other."""
    return quote(text, safe=_FIELD_SAFE, errors="backslashreplace")


class RecordFormatter(logging.Formatter):
    """:data:`FORMAT`, one line per record whatever the message or traceback holds."""

    def __init__(self) -> None:
        super().__init__(FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return one_line(super().format(record))


def private_opener(path: str, flags: int) -> int:
    """``open(..., opener=)`` for log files: created 0640 (they hold request paths and client
    addresses), never through a link at the file's own name, an older wider file narrowed."""
    fd = os.open(path, flags | getattr(os, "O_NOFOLLOW", 0), LOG_FILE_MODE)
    keep_private(fd)
    return fd


def keep_private(fd: int) -> None:
    """Narrow the regular file ``fd`` to at most 0640 (a log that launchd or a shell created
    with its umask); anything else is left alone."""
    if os.name != "posix":
        return
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISREG(mode) and stat.S_IMODE(mode) & ~LOG_FILE_MODE:
            os.fchmod(fd, stat.S_IMODE(mode) & LOG_FILE_MODE)
    except OSError:
        return


def keep_stream_private(stream: TextIO) -> None:
    """:func:`keep_private` for the file behind ``stream`` (the server's stderr), if any."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError):
        return
    keep_private(fd)


def self_written(line: str) -> str | None:
    """What the server or runner wrote about itself in ``line``, or None for a record about a
    request (or one of a logger that may quote requests).

    A line of ours that is not a record cannot come from request text (records are one line),
    so it is the runner's own output; an Ollama GIN access line is trusted up to its path.
    """
    line = _WATCHDOG_STAMP.sub("", line, count=1)
    if line.startswith("[GIN] "):
        return line.split('"', 1)[0]
    record = _RECORD.match(line)
    if record is None:
        return None if line.startswith("time=") else line
    source, msg = record["source"], record["msg"]
    ours = any(source == name or source.startswith(name + ".") for name in SELF_SOURCES)
    if not ours and not _GO_SOURCE.match(source):
        return None
    quoted = _QUOTED.match(msg)
    if quoted:
        return quoted.group(1)
    return msg if record["ours"] else msg.split(" ", 1)[0]
