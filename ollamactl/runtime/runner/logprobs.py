"""Log probabilities of a sampled token, from the logits row it was sampled from (runner only).

Ollama (0.30 on, through llama-server's ``n_probs``) reports the model's own distribution: the
log-softmax of the raw logits, before temperature and the other samplers shape it, so a
token's logprob does not change with the sampling options. The engine calls this only for
sequences that asked for logprobs; the others never pay for a pass over the vocabulary.
A logprob travels with its token's text (:class:`HeldLogprobs`), so a streamed chunk
carries the logprobs of the text it carries.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np


def log_softmax(logits: Any) -> Any:
    """``log(softmax(logits))`` in float64, stable for large logits (max subtracted first)."""
    shifted = np.asarray(logits, dtype=np.float64) - np.max(logits)
    return shifted - np.log(np.exp(shifted).sum())


def token_logprobs(logits: Any, token: int, top_n: int) -> tuple[float, list[tuple[int, float]]]:
    """The logprob of ``token`` and the ``top_n`` most likely tokens as ``(id, logprob)``,
    most likely first (ties by lower id, as a stable sort of the vocabulary gives them)."""
    logprobs = log_softmax(logits)
    top: list[tuple[int, float]] = []
    if top_n > 0:
        n = min(top_n, logprobs.size)
        candidates = np.argpartition(-logprobs, n - 1)[:n]
        order = candidates[np.lexsort((candidates, -logprobs[candidates]))]
        top = [(int(i), float(logprobs[i])) for i in order]
    return float(logprobs[token]), top


def token_entry(piece: bytes, logprob: float) -> dict[str, Any]:
    """One token as Ollama's api.TokenLogprob: its text, logprob and raw bytes (a token may
    hold part of a UTF-8 character, which only ``bytes`` keeps exactly)."""
    entry: dict[str, Any] = {"token": piece.decode("utf-8", "replace"), "logprob": logprob}
    if piece:
        entry["bytes"] = list(piece)
    return entry


class HeldLogprobs:
    """A sequence's logprobs that wait for their token's text, which a stop matcher may hold
    back: a logprob goes out once all of its token's text has, and when a stop sequence cuts
    the text, only if some of its token's text came before the stop (Ollama drops the
    tokens of a stop sequence and keeps one the cut went through)."""

    def __init__(self) -> None:
        self.pending: deque[tuple[int, int, dict[str, Any]]] = deque()  # start, end, entry
        self.fed = 0        # characters of text given to the stop matcher
        self.emitted = 0    # characters it let out

    def add(self, entry: dict[str, Any], fed: str, emitted: str, *, stopped: bool
            ) -> list[dict[str, Any]]:
        """Take a token's logprob, the text it added and what the matcher let out on it
        (``stopped``: the matcher hit a stop); returns the logprobs that go out now."""
        start, self.fed = self.fed, self.fed + len(fed)
        self.pending.append((start, self.fed, entry))
        self.emitted += len(emitted)
        if stopped:
            kept = [entry for start, _, entry in self.pending if start < self.emitted]
            self.pending.clear()
            return kept
        out = []
        while self.pending and self.pending[0][1] <= self.emitted:
            out.append(self.pending.popleft()[2])
        return out

    def flush(self) -> list[dict[str, Any]]:
        """What is still held, once the matcher gave back the text it held (the end)."""
        out = [entry for _, _, entry in self.pending]
        self.pending.clear()
        return out
