"""How `ollamactl top` lays out a :class:`~ollamactl.top.model.View`: styled lines for the
terminal (painted by ``screen``) and plain lines for a pipe; no curses here.

The screen, htop/nvitop style: a title line, then per host a header line (status, version,
queue waiting/limit, tokens/s, requests/s, memory) and a table of its loaded models (a frame
read back from a pseudo-terminal, its title padded to the width)::

  ollamactl top   06:26:14   every 1s   2 hosts, 1 up                                    q: quit
  127.0.0.1:45465  up  ollamactl 0.1.0 (API 0.33.0)  queue 0/512  tok/s 24.1  req/s 1.0  mem 277 MB
    NAME          PROCESSOR  MEMORY  TOK/S  TTFT   UNTIL
    smollm2:135m  100% CPU   277 MB  24.1   83 ms  9 minutes from now
  127.0.0.1:38989  unreachable (connection refused)

Plain lines (stdout not a terminal) are ``vmstat``-like: a header, then per refresh one line
per model stamped with the time, columns two spaces apart or more.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from ollamactl import fleet
from ollamactl.humanize import bytes_si
from ollamactl.top.model import HostView, ModelRow, View

# Styles a segment can have; the screen maps each to a curses attribute.
PLAIN, TITLE, HEADING, HOST, GOOD, BAD, WARN, DIM = (
    "plain", "title", "heading", "host", "good", "bad", "warn", "dim")

COLUMNS = ("NAME", "PROCESSOR", "MEMORY", "TOK/S", "TTFT", "UNTIL")
PLAIN_COLUMNS = ("TIME", "HOST", *COLUMNS[:5], "QUEUE", "UNTIL")
GAP = "  "
INDENT = "  "


@dataclass(frozen=True)
class Segment:
    text: str
    style: str = PLAIN


Line = tuple[Segment, ...]


def rate_text(value: float | None) -> str:
    """Tokens or requests per second: ``42.1``, ``0.0``; ``-`` when unknown."""
    return "-" if value is None else f"{value:.1f}"


def seconds_text(value: float | None) -> str:
    """A latency: ``85 ms`` under a second, ``1.23 s`` above; ``-`` when unknown."""
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def queue_text(host: HostView) -> str:
    """``waiting/limit``, ``waiting`` without a limit, ``-`` when the host does not say."""
    if host.queue_depth is None:
        return "-"
    return f"{host.queue_depth}/{host.queue_limit}" if host.queue_limit is not None \
        else str(host.queue_depth)


def model_cells(row: ModelRow) -> tuple[str, ...]:
    return (row.name, row.processor, bytes_si(row.memory_bytes), rate_text(row.tokens_per_s),
            seconds_text(row.ttft_s), row.until)


def status_text(host: HostView) -> str:
    return f"{host.status} ({host.error})" if host.error else host.status


def _status_style(host: HostView) -> str:
    return GOOD if host.is_up else BAD if host.status == fleet.UNREACHABLE else WARN


def _interval_text(seconds: float) -> str:
    return f"{seconds:g}s"


def screen_lines(view: View | None, *, interval_s: float, width: int) -> list[Line]:
    """The whole screen, top to bottom; lines are cut to ``width`` by the painter."""
    up = sum(h.is_up for h in view.hosts) if view else 0
    count = len(view.hosts) if view else 0
    clock = time.strftime("%H:%M:%S", time.localtime(view.taken_at)) if view else "--:--:--"
    left = f"ollamactl top   {clock}   every {_interval_text(interval_s)}   "
    hosts = f"{count} host{'s' if count != 1 else ''}, {up} up" if view else "connecting..."
    title_text = left + hosts
    help_text = "q: quit"
    pad = max(2, width - len(title_text) - len(help_text))
    lines: list[Line] = [(Segment(title_text + " " * pad + help_text, TITLE),)]
    if view is None:
        return lines
    widths = _widths([model_cells(r) for h in view.hosts for r in h.models])
    for host in view.hosts:
        lines.append(_host_line(host))
        if not host.is_up:
            continue
        if not host.models:
            lines.append((Segment(INDENT + "no model loaded", DIM),))
            continue
        lines.append((Segment(INDENT + _join(COLUMNS, widths), HEADING),))
        for row in host.models:
            cells = model_cells(row)
            lines.append(tuple(_row_segments(cells, widths)))
    return lines


def _host_line(host: HostView) -> Line:
    segments = [Segment(host.host, HOST), Segment(GAP), Segment(status_text(host),
                                                                _status_style(host))]
    if not host.is_up:
        return tuple(segments)
    facts = [f"{host.version} {host.variant}" if host.variant else host.version,
             f"queue {queue_text(host)}", f"tok/s {rate_text(host.tokens_per_s)}",
             f"req/s {rate_text(host.requests_per_s)}", f"mem {bytes_si(host.memory_bytes)}"]
    segments.append(Segment(GAP + GAP.join(facts)))
    if host.crashes:
        segments.append(Segment(f"{GAP}crashes {host.crashes}", BAD))
    if host.note:
        segments.append(Segment(f"{GAP}{host.note}", DIM))
    return tuple(segments)


def _row_segments(cells: Sequence[str], widths: Sequence[int]) -> list[Segment]:
    segments = [Segment(INDENT)]
    for i, cell in enumerate(cells):
        text = cell if i == len(cells) - 1 else cell.ljust(widths[i]) + GAP
        segments.append(Segment(text, DIM if cell == "-" else PLAIN))
    return segments


def _widths(rows: Sequence[Sequence[str]], headers: Sequence[str] = COLUMNS) -> list[int]:
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    return widths


def _join(cells: Sequence[str], widths: Sequence[int]) -> str:
    return GAP.join(c.ljust(widths[i]) for i, c in enumerate(cells)).rstrip()


# -- plain lines for a pipe -----------------------------------------------------------------------

PLAIN_WIDTHS = (19, 21, 20, 15, 8, 7, 8, 9)
"""Minimum widths of the plain columns but the last, so refreshes line up as ``vmstat``'s."""


def plain_header() -> str:
    return _join(PLAIN_COLUMNS, (*PLAIN_WIDTHS, 0))


def plain_lines(view: View) -> list[str]:
    """One line per loaded model (and one per host without any), each stamped with the time of
    the refresh; columns are two spaces apart or more, so ``100% CPU`` stays one field."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(view.taken_at))
    lines = []
    for host in view.hosts:
        if not host.is_up:
            lines.append(_join((stamp, host.host, status_text(host)), PLAIN_WIDTHS))
            continue
        queue = queue_text(host)
        if not host.models:
            cells: tuple[str, ...] = (stamp, host.host, "-", "-", "-",
                                      rate_text(host.tokens_per_s), "-", queue, "-")
            lines.append(_join(cells, (*PLAIN_WIDTHS, 0)))
        for row in host.models:
            name, processor, memory, tokens, ttft, until = model_cells(row)
            cells = (stamp, host.host, name, processor, memory, tokens, ttft, queue, until)
            lines.append(_join(cells, (*PLAIN_WIDTHS, 0)))
    return lines
