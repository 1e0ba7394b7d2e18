"""Byte counts and durations as text for people: the one set of formatters.

A leaf (standard library only) so the CLI, doctor, install and the server can all use it. The
variants differ on purpose, and each caller picks the one whose output it has always shown:

    bytes_si(98_400_000)              98 MB      Ollama's CLI (list, ps, pull): format.HumanBytes
    bytes_si_one_decimal(98_400_000)  98.4 MB    install/uninstall plans: SI, always one decimal
    gib(8 * 2**30)                    8.0 GiB    GPU memory, doctor findings: always GiB
    mib(512 * 2**20)                  512 MiB    limits: whole MiB, rounded down
    bytes_iec(3 * 2**29)              1.5 GiB    server messages: GiB from 1 GiB on, else MiB
    duration_words(270)               4 minutes  ollama ps's UNTIL, list's MODIFIED
    relative_time(moment)             4 minutes from now / 2 days ago
    duration_hms(3723)                1h02m03s   service uptime
    go_duration(5400)                 1h30m0s    Go's time.Duration text, as Ollama logs keep_alive
    go_duration_ns(1_234_567_891)     1.234567891s   exact Go Duration.String(): run --verbose
    processor_text(100, 52)           48%/52% CPU/GPU   ollama ps's PROCESSOR (also ollamactl top)
    until_text(expires_at)            4 minutes from now, Forever, Stopping...   ps's UNTIL
"""

from __future__ import annotations

import math
import time
from datetime import datetime

MIB = 1 << 20
GIB = 1 << 30
FOREVER_AFTER_S = 20 * 365 * 24 * 3600  # in seconds; a keep_alive past this reads as Forever

_SI_UNITS = (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3))


# -- bytes ----------------------------------------------------------------------------------------

def bytes_si(size: int) -> str:
    """Decimal units, one decimal under 10, whole above: ``42 GB``, ``9.5 GB``, ``1.0 GB``,
    ``270 MB``, ``12 B`` (as Ollama's CLI prints sizes)."""
    for unit, scale in _SI_UNITS:
        if size >= scale:
            value = size / scale
            return f"{value:.1f} {unit}" if value < 10 else f"{int(value)} {unit}"
    return f"{size} B"


def bytes_si_one_decimal(size: int) -> str:
    """Decimal units with one decimal, up to GB (never TB): ``12 B``, ``4.1 KB``, ``98.4 MB``,
    ``2000.0 GB``; install and uninstall plans show the models' size this way."""
    value = float(size)
    for unit in ("B", "KB", "MB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def gib(size: float, digits: int = 1) -> str:
    """Binary GiB with ``digits`` decimals, whatever the size: ``7.6 GiB``, ``0.5 GiB``."""
    return f"{size / GIB:.{digits}f} GiB"


def mib(size: int) -> str:
    """Whole binary MiB, rounded down: ``512 MiB``."""
    return f"{size // MIB} MiB"


def bytes_iec(size: int, *, digits: int = 1, whole_mib: bool = False) -> str:
    """GiB from 1 GiB on, MiB below, ``digits`` decimals: ``1.5 GiB``, ``512.0 MiB``; with
    ``whole_mib`` the MiB are whole and rounded down (``512 MiB``)."""
    if size >= GIB:
        return gib(size, digits)
    return mib(size) if whole_mib else f"{size / MIB:.{digits}f} MiB"


# -- durations ------------------------------------------------------------------------------------

def duration_words(seconds: float) -> str:
    """Rough words as Ollama's format.HumanDuration: ``Less than a second``, ``About a minute``,
    ``4 minutes``, ``3 hours``, ``5 days``, ``2 weeks``, ``3 months``, ``2 years``."""
    whole = int(seconds)
    if whole < 1:
        return "Less than a second"
    if whole == 1:
        return "1 second"
    if whole < 60:
        return f"{whole} seconds"
    minutes = whole // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(seconds / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // (24 * 7)} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // (24 * 30)} months"
    return f"{hours // (24 * 365)} years"


def relative_time(moment: datetime, now: float | None = None) -> str:
    """``4 minutes from now`` or ``2 days ago`` (:func:`duration_words`), seen from ``now``
    (a Unix time; the clock when None)."""
    delta = moment.timestamp() - (time.time() if now is None else now)
    if delta >= 0:
        return f"{duration_words(delta)} from now"
    return f"{duration_words(-delta)} ago"


def duration_hms(seconds: float) -> str:
    """Whole seconds as ``1h02m03s``, or ``2m03s`` under an hour; negative counts as 0."""
    whole = int(max(seconds, 0))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def go_duration(seconds: float) -> str:
    """Go's ``time.Duration`` text, as Ollama logs keep_alive: ``5m0s``, ``1h30m0s``, ``0.5s``;
    forever (infinite or negative) is ``-1``, the value that means it in OLLAMA_KEEP_ALIVE."""
    if math.isinf(seconds) or seconds < 0:
        return "-1"
    whole = int(seconds)
    frac = seconds - whole
    hours, rem = divmod(whole, 3600)
    minutes, secs = divmod(rem, 60)
    sec_text = f"{secs + frac:g}s"
    if hours:
        return f"{hours}h{minutes}m{sec_text}"
    if minutes:
        return f"{minutes}m{sec_text}"
    return sec_text


def go_duration_ns(nanoseconds: int) -> str:
    """Go's ``time.Duration.String()`` of a count of nanoseconds, exactly: ``0s``, ``812ns``,
    ``1.5µs``, ``34.567ms``, ``2.05s``, ``1m3.2s``, ``1h0m0s`` (``ollama run --verbose``'s
    timings print so)."""
    sign = "-" if nanoseconds < 0 else ""
    whole = abs(nanoseconds)
    if whole == 0:
        return "0s"
    if whole < 1_000:
        return f"{sign}{whole}ns"
    if whole < 1_000_000:
        return f"{sign}{_decimal(whole, 3)}µs"
    if whole < 1_000_000_000:
        return f"{sign}{_decimal(whole, 6)}ms"
    seconds = whole // 1_000_000_000
    hours, minutes = seconds // 3600, seconds // 60 % 60
    text = f"{_decimal(whole % 60_000_000_000, 9)}s"
    if hours or minutes:
        text = f"{minutes}m{text}"
    if hours:
        text = f"{hours}h{text}"
    return sign + text


def _decimal(value: int, places: int) -> str:
    """``value / 10**places`` with the trailing zeros of its fraction dropped (Go's fmtFrac)."""
    units, fraction = divmod(value, 10 ** places)
    digits = f"{fraction:0{places}d}".rstrip("0")
    return f"{units}.{digits}" if digits else str(units)


# -- loaded models, as `ollama ps` shows them ------------------------------------------------------

def processor_text(size: int, size_vram: int) -> str:
    """Where a loaded model sits, from its size and the part of it in VRAM (bytes):
    ``100% CPU``, ``100% GPU``, ``48%/52% CPU/GPU``, or ``Unknown`` when they disagree."""
    if size_vram == 0:
        return "100% CPU"
    if size_vram == size:
        return "100% GPU"
    if size_vram > size or size == 0:
        return "Unknown"
    cpu = round((size - size_vram) / size * 100)
    return f"{cpu}%/{100 - cpu}% CPU/GPU"


def until_text(expires_at: str, now: float | None = None) -> str:
    """When a loaded model unloads, from ``/api/ps``'s ``expires_at`` (ISO 8601), seen from
    ``now`` (a Unix time; the clock when None): ``4 minutes from now``, ``Forever``,
    ``Stopping...``.

    Raises:
        ValueError: ``expires_at`` is not an ISO 8601 time.
    """
    moment = datetime.fromisoformat(expires_at)
    delta = moment.timestamp() - (time.time() if now is None else now)
    if delta > FOREVER_AFTER_S:
        return "Forever"
    if delta <= 0:
        return "Stopping..."
    return relative_time(moment, now)
