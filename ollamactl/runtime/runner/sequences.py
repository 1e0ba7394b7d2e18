"""What serving a sequence needs on both paths of the runner (batched generation and embedding):
the sampling defaults, stop-sequence matching, the too-long error and the ``err`` frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

SAMPLING_DEFAULTS: dict[str, Any] = {
    "num_predict": -1, "temperature": 0.8, "top_k": 40, "top_p": 0.9, "min_p": 0.0,
    "typical_p": 1.0, "repeat_penalty": 1.0, "repeat_last_n": 64, "presence_penalty": 0.0,
    "frequency_penalty": 0.0, "seed": -1, "stop": [], "num_keep": 4,
}


INPUT_TOO_LONG = "the input length exceeds the context length"


class Refused(ValueError):
    """A sequence the runner cannot serve as the request asks: the server answers 400."""


class InputTooLong(Refused):
    """A prompt longer than the context with ``truncate`` false (Ollama answers 400)."""


def error_frame(seq_id: int, exc: Exception) -> dict[str, Any]:
    """The ``err`` frame for a sequence that failed; status 400 when the request itself
    cannot be served as asked (the server answers it as Ollama does)."""
    from ollamactl.runtime.prompting.grammar import GrammarError

    if isinstance(exc, Refused | GrammarError):
        return {"t": "err", "id": seq_id, "msg": str(exc), "status": 400}
    return {"t": "err", "id": seq_id, "msg": f"{type(exc).__name__}: {exc}"}


class StopMatcher:
    """Holds back text that could be the start of a stop sequence; reports a full match."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """Text safe to emit now, and whether a stop sequence was hit (text before it only)."""
        if not self.stops:
            return text, False
        self.pending += text
        for stop in self.stops:
            at = self.pending.find(stop)
            if at >= 0:
                out, self.pending = self.pending[:at], ""
                return out, True
        keep = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(self.pending)), 0, -1):
                if self.pending.endswith(stop[:n]):
                    keep = max(keep, n)
                    break
        cut = len(self.pending) - keep
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out, False

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out
