"""A model's answer as the API returns it: ``thinking``, ``content`` and ``tool_calls``.

The output is split in Ollama's order, piece by piece as the runner sends it: the thinking
parser (:mod:`thinking`) takes the reasoning off the front, then the tool-call parser
(:mod:`tools`) finds the calls in what remains. Either may be absent (no thinking asked for, or
no tools offered), and then its part passes through.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ollamactl.runtime.prompting.thinking import ThinkingParser
from ollamactl.runtime.prompting.tools import ToolCall, ToolCallParser


@dataclass
class Piece:
    """What one piece of output (or the end of it) adds to each part of the answer."""

    thinking: str = ""
    content: str = ""
    calls: list[ToolCall] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.thinking or self.content or self.calls)


class ReplySplitter:
    """``feed`` each piece of output, then ``finish`` once for what was held back."""

    def __init__(self, thinking: ThinkingParser | None, tools: ToolCallParser | None) -> None:
        self.thinking = thinking
        self.tools = tools

    def feed(self, text: str) -> Piece:
        thought, content = self.thinking.feed(text) if self.thinking else ("", text)
        return self._content(thought, content, final=False)

    def finish(self) -> Piece:
        thought, content = self.thinking.finish() if self.thinking else ("", "")
        return self._content(thought, content, final=True)

    def _content(self, thought: str, content: str, *, final: bool) -> Piece:
        if self.tools is None:
            return Piece(thought, content)
        content, calls = self.tools.feed(content)
        if final:
            tail, more = self.tools.finish()
            content, calls = content + tail, calls + more
        return Piece(thought, content, calls)
