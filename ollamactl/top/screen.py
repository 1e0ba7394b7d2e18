"""`ollamactl top`'s two loops: the curses screen for a terminal, plain lines for a pipe.

The screen redraws every ``interval_s`` with what :meth:`Top.refresh` returns; the scrapes run
in a worker thread, so ``q`` quits, and a resize (or Ctrl-L) redraws, at once even while a
slow host is being asked. Ctrl-C leaves either loop cleanly (exit 0).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import sys
import time
from typing import TYPE_CHECKING, TextIO

from ollamactl.top import render
from ollamactl.top.model import Top, View

if TYPE_CHECKING:
    import curses

KEY_POLL_MS = 100   # in milliseconds: how long each wait for a key lasts
CTRL_L = 12
QUIT_KEYS = (ord("q"), ord("Q"))


def can_draw(stdout: TextIO, stdin: TextIO, environ: dict[str, str]) -> bool:
    """Whether the screen can run: both ends are a terminal, TERM names a real one, and this
    Python has curses (Windows' has none: plain lines there)."""
    if not (stdout.isatty() and stdin.isatty() and environ.get("TERM", "") not in ("", "dumb")):
        return False
    try:
        import curses  # noqa: F401
    except ImportError:
        return False
    return True


def run_screen(top: Top, *, interval_s: float, use_color: bool = True) -> int:
    """The curses view until ``q`` or Ctrl-C; returns the exit code (0)."""
    import curses

    with contextlib.suppress(KeyboardInterrupt):
        curses.wrapper(_loop, top, interval_s, use_color)
    return 0


def _loop(stdscr: curses.window, top: Top, interval_s: float, use_color: bool) -> None:
    import curses

    with contextlib.suppress(curses.error):  # a terminal that cannot hide the cursor
        curses.curs_set(0)
    stdscr.timeout(KEY_POLL_MS)
    styles = _styles(use_color)
    view: View | None = None
    dirty = True
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="top-refresh") as pool:
        started = time.monotonic()
        pending: concurrent.futures.Future[View] | None = pool.submit(top.refresh)
        try:
            while True:
                if dirty:
                    _paint(stdscr, render.screen_lines(
                        view, interval_s=interval_s, width=stdscr.getmaxyx()[1]), styles)
                    dirty = False
                key = stdscr.getch()
                if key in QUIT_KEYS:
                    return
                if key == curses.KEY_RESIZE:
                    curses.update_lines_cols()
                    dirty = True
                elif key == CTRL_L:
                    stdscr.clear()
                    dirty = True
                if pending is not None and pending.done():
                    view, pending, dirty = pending.result(), None, True
                if pending is None and time.monotonic() >= started + interval_s:
                    started = time.monotonic()
                    pending = pool.submit(top.refresh)
        finally:
            if pending is not None:
                pending.cancel()


def _styles(use_color: bool) -> dict[str, int]:
    import curses

    styles = {render.PLAIN: curses.A_NORMAL, render.TITLE: curses.A_BOLD,
              render.HEADING: curses.A_REVERSE, render.HOST: curses.A_BOLD,
              render.GOOD: curses.A_NORMAL, render.BAD: curses.A_BOLD,
              render.WARN: curses.A_BOLD, render.DIM: curses.A_DIM}
    if use_color and curses.has_colors():
        try:
            curses.start_color()
            curses.use_default_colors()
            for number, color in enumerate((curses.COLOR_GREEN, curses.COLOR_RED,
                                            curses.COLOR_YELLOW, curses.COLOR_CYAN), start=1):
                curses.init_pair(number, color, -1)
            styles[render.GOOD] = curses.color_pair(1)
            styles[render.BAD] = curses.color_pair(2) | curses.A_BOLD
            styles[render.WARN] = curses.color_pair(3) | curses.A_BOLD
            styles[render.HOST] = curses.color_pair(4) | curses.A_BOLD
        except curses.error:  # a terminal without default colours keeps the plain styles
            pass
    return styles


def _paint(stdscr: curses.window, lines: list[render.Line], styles: dict[str, int]) -> None:
    """Draw ``lines`` from the top, cut to the window; the last visible line says how many
    did not fit."""
    import curses

    height, width = stdscr.getmaxyx()
    stdscr.erase()
    if len(lines) > height > 1:
        hidden = len(lines) - height + 1
        lines = [*lines[:height - 1],
                 (render.Segment(f"... {hidden} more line(s): enlarge the window",
                                 render.DIM),)]
    for y, line in enumerate(lines[:height]):
        x = 0
        for segment in line:
            room = width - x - (1 if y == height - 1 else 0)  # the last cell scrolls
            if room <= 0:
                break
            try:
                stdscr.addnstr(y, x, segment.text, room, styles.get(segment.style, 0))
            except curses.error:
                break
            x += min(len(segment.text), room)
    stdscr.refresh()


def run_plain(top: Top, *, interval_s: float, count: int | None,
              out: TextIO | None = None) -> int:
    """Plain lines every ``interval_s`` (a header first), ``count`` refreshes or until Ctrl-C.

    A first scrape is a baseline: every line printed covers the interval before it, so even
    ``--count 1`` shows real rates. Returns 0, or 1 when ``count`` ran out and a host was not up
    at the last refresh (as ``fleet status``); a closed pipe (``| head``) ends it with 0.
    """
    stream = out or sys.stdout
    view: View | None = None
    try:
        stream.write(render.plain_header() + "\n")
        stream.flush()
        next_at = time.monotonic() + interval_s
        top.refresh()
        printed = 0
        while count is None or printed < count:
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at = max(next_at + interval_s, time.monotonic())  # a slow host: no bursts
            view = top.refresh()
            stream.write("".join(line + "\n" for line in render.plain_lines(view)))
            stream.flush()
            printed += 1
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        # Python flushes stdout again at exit; point it at /dev/null so that does not fail.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        return 0
    return 0 if view is None or view.all_up else 1
