"""Splitting a thinking model's output into ``thinking`` and ``content``, as pieces arrive.

Ollama's generic parser (its ``thinking`` package), for models whose template shows their
reasoning between two tags (``<think>`` and ``</think>`` for Qwen3, DeepSeek-R1, SmolLM3 and
most others; the tags come from the template, see :meth:`GoTemplate.thinking_tags`):
leading whitespace is skipped; output that opens with the opening tag is thinking up to the
closing tag, whitespace after either tag is dropped, and the rest is content. Output that does
not open with the tag is all content. A tag split across pieces is held back until it is whole,
so the stream carries the same text as the whole answer, however the runner cuts it.

Unlike Ollama's, :meth:`ThinkingParser.finish` hands back what was still held at the end
(a half tag) instead of dropping it.
"""

from __future__ import annotations

from enum import Enum


class _State(Enum):
    LOOKING = "looking for the opening tag"
    OPENED = "after the opening tag, skipping whitespace"
    THINKING = "thinking"
    CLOSED = "after the closing tag, skipping whitespace"
    DONE = "content"


def _overlap(text: str, tag: str) -> int:
    """The length of the longest end of ``text`` that starts ``tag``."""
    for size in range(min(len(tag), len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


class ThinkingParser:
    """``feed`` returns the ``(thinking, content)`` a piece makes certain; ``finish`` the rest.

    Feed the opening tag first when the prompt itself ends with it (the template opened the
    thinking block for the model), as Ollama does.
    """

    def __init__(self, opening: str, closing: str) -> None:
        self.opening = opening
        self.closing = closing
        self.state = _State.LOOKING
        self.pending = ""

    def feed(self, text: str) -> tuple[str, str]:
        self.pending += text
        thinking: list[str] = []
        content: list[str] = []
        while self._step(thinking, content):
            pass
        return "".join(thinking), "".join(content)

    def finish(self) -> tuple[str, str]:
        """What is still held back: a half closing tag is thinking, anything else content."""
        held, self.pending = self.pending, ""
        if self.state is _State.THINKING:
            return held, ""
        if self.state in (_State.OPENED, _State.CLOSED):
            return "", ""
        return "", held

    def _step(self, thinking: list[str], content: list[str]) -> bool:
        """One transition; True while another may follow on the text held."""
        text = self.pending
        if self.state is _State.LOOKING:
            trimmed = text.lstrip()
            if trimmed.startswith(self.opening):
                self.pending = trimmed[len(self.opening):].lstrip()
                self.state = _State.THINKING if self.pending else _State.OPENED
                return True
            if self.opening.startswith(trimmed):  # whitespace, or a part of the tag
                return False
            self.state = _State.DONE
            self.pending = ""
            content.append(text)  # untrimmed: whitespace is the content's own
            return False
        if self.state is _State.OPENED:
            self.pending = text.lstrip()
            if not self.pending:
                return False
            self.state = _State.THINKING
            return True
        if self.state is _State.THINKING:
            thought, found, rest = text.partition(self.closing)
            if found:
                rest = rest.lstrip()
                self.state = _State.DONE if rest else _State.CLOSED
                self.pending = ""
                thinking.append(thought)
                content.append(rest)
                return False
            keep = _overlap(text, self.closing)
            thinking.append(text[:len(text) - keep])
            self.pending = text[len(text) - keep:]
            return False
        if self.state is _State.CLOSED:
            self.pending = ""
            rest = text.lstrip()
            if rest:
                self.state = _State.DONE
                content.append(rest)
            return False
        self.pending = ""
        content.append(text)
        return False
