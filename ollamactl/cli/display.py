"""How an answer appears while it streams, as Ollama's CLI shows it: a spinner until the first
piece, thinking between ``Thinking...`` and ``...done thinking.`` (grey on a terminal), words
wrapped at the terminal's width, and ``--verbose``'s timing summary on stderr.

Kept apart from the HTTP calls so the rendering is tested without a server.
"""

from __future__ import annotations

import itertools
import shutil
import sys
import threading
import unicodedata
from collections.abc import Mapping
from typing import Any, TextIO

from ollamactl.humanize import go_duration_ns

GREY = "\033[38;5;245m"
BOLD = "\033[1m"
DEFAULT = "\033[0m"
THINKING_OPEN = "Thinking...\n"
THINKING_CLOSE = "...done thinking.\n\n"
WRAP_MARGIN = 5        # columns Ollama leaves free at the right edge
MIN_WRAP_WIDTH = 10    # narrower terminals are not wrapped
FALLBACK_WIDTH = 80


class Spinner:
    """A braille spinner on stderr while the server works (only on a terminal); stops at
    :meth:`stop` or at the end of the ``with`` block, and clears itself."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._spin, daemon=True)

    def _spin(self) -> None:
        for frame in itertools.cycle("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"):
            if self.done.wait(0.1):
                break
            sys.stderr.write(f"\r{frame} ")
            sys.stderr.flush()
        sys.stderr.write("\r  \r")
        sys.stderr.flush()

    def __enter__(self) -> Spinner:
        if sys.stderr.isatty():
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.done.set()
        if self.thread.is_alive():
            self.thread.join()


def terminal_width(stream: TextIO) -> int:
    """Columns of the terminal behind ``stream``, 80 when it is none."""
    try:
        return shutil.get_terminal_size((FALLBACK_WIDTH, 24)).columns if stream.isatty() \
            else FALLBACK_WIDTH
    except (OSError, ValueError):
        return FALLBACK_WIDTH


def _char_width(ch: str) -> int:
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def _text_width(text: str) -> int:
    return sum(_char_width(ch) for ch in text)


class WordWrap:
    """Ollama's word wrap: text flows as it comes; when a line reaches ``width - 5`` columns
    the word being written moves to the next line (cursor back, clear to the end)."""

    def __init__(self, out: TextIO, *, width: int, enabled: bool) -> None:
        self.out = out
        self.width = width
        self.enabled = enabled and width >= MIN_WRAP_WIDTH
        self.line = 0
        self.word = ""

    def reset(self) -> None:
        self.line = 0
        self.word = ""

    def write(self, text: str) -> None:
        if not self.enabled:
            self.out.write(self.word + text)
            self.word = ""
            return
        for ch in text:
            width = _char_width(ch)
            if self.line + 1 > self.width - WRAP_MARGIN:
                if _text_width(self.word) > self.width - MIN_WRAP_WIDTH:  # a word too long
                    self.out.write(self.word + ch)
                    self.word, self.line = "", 0
                    continue
                back = _text_width(self.word)
                self.out.write((f"\x1b[{back}D" if back else "") + "\x1b[K\n" + self.word + ch)
                self.line = back + width
                self.word = "" if ch.isspace() else self.word + ch
                continue
            self.out.write(ch)
            self.line += width
            if ch in "\n\r":
                self.line = 0
            self.word = "" if width >= 2 or ch.isspace() else self.word + ch


class AnswerWriter:
    """Writes the pieces of one streamed answer: thinking (unless hidden) framed as Ollama
    frames it, then the content; keeps both texts for the session's history."""

    def __init__(self, out: TextIO, *, wrap: bool, hide_thinking: bool, color: bool,
                 width: int | None = None) -> None:
        self.out = out
        self.hide_thinking = hide_thinking
        self.color = color
        self.wrap = WordWrap(out, width=terminal_width(out) if width is None else width,
                             enabled=wrap)
        self.thinking: list[str] = []
        self.content: list[str] = []
        self.in_thinking = False

    def shows(self, content: str) -> bool:
        """Whether the spinner stops at a piece with ``content``: at any piece, or only at
        content when thinking is hidden (as Ollama decides)."""
        return bool(content) or not self.hide_thinking

    def feed(self, thinking: str, content: str) -> None:
        if thinking and not self.hide_thinking:
            if not self.in_thinking:
                self.out.write(self._styled(THINKING_OPEN, opening=True))
                self.in_thinking = True
            self.thinking.append(thinking)
            self.wrap.write(thinking)
        if self.in_thinking and content:
            if not "".join(self.thinking).endswith("\n"):
                self.out.write("\n")
            self.out.write(self._styled(THINKING_CLOSE, opening=False))
            self.in_thinking = False
            self.wrap.reset()
        if content:
            self.content.append(content)
            self.wrap.write(content)
        self.out.flush()

    def _styled(self, text: str, *, opening: bool) -> str:
        if not self.color:
            return text
        return GREY + BOLD + text + DEFAULT + (GREY if opening else "")


def summary_lines(stats: Mapping[str, Any]) -> list[str]:
    """``--verbose``'s timings from the last (``done``) piece, as Ollama's Metrics.Summary
    prints them: only the figures the server gave, durations as Go prints them."""
    def number(key: str) -> int:
        value = stats.get(key)
        return int(value) if isinstance(value, int | float) and not isinstance(value, bool) \
            else 0

    lines = []
    total, load = number("total_duration"), number("load_duration")
    prompt_count, prompt_ns = number("prompt_eval_count"), number("prompt_eval_duration")
    eval_count, eval_ns = number("eval_count"), number("eval_duration")
    if total > 0:
        lines.append(f"total duration:       {go_duration_ns(total)}")
    if load > 0:
        lines.append(f"load duration:        {go_duration_ns(load)}")
    if prompt_count > 0:
        lines.append(f"prompt eval count:    {prompt_count} token(s)")
    if prompt_ns > 0:
        lines.append(f"prompt eval duration: {go_duration_ns(prompt_ns)}")
        lines.append(f"prompt eval rate:     {prompt_count / (prompt_ns / 1e9):.2f} tokens/s")
    if eval_count > 0:
        lines.append(f"eval count:           {eval_count} token(s)")
    if eval_ns > 0:
        lines.append(f"eval duration:        {go_duration_ns(eval_ns)}")
        lines.append(f"eval rate:            {eval_count / (eval_ns / 1e9):.2f} tokens/s")
    return lines
